//! Incident memory as its users meet it: the eval suite remembered as resolved incidents, each
//! kind finding its sibling; memory kept in the incident store across restarts; a resolved
//! incident of the server found by the next one after a restart; the OpenAI-compatible
//! embeddings endpoint (a local test double, since no embeddings service runs here) with its
//! failures reported.

mod common;

use common::server::{start, wait_for};
use oncall::config::Config;
use oncall::eval::recall;
use oncall::memory::{Memory, MemoryError};
use oncall::policy::Role;
use oncall::registry::Registry;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn suite() -> (
    Config,
    Registry,
    Vec<(std::path::PathBuf, oncall::eval::case::Case)>,
) {
    let config = Config::default();
    let live = oncall::app::builtin_registry(Arc::new(config.clone()));
    let cases = oncall::eval::case::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/cases"),
        &live.specs(),
    )
    .expect("cases load");
    (config, live, cases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_incident_finds_its_sibling_in_the_eval_suite() {
    let (config, live, cases) = suite();
    let emb = oncall::memory::embedder(&config).expect("hashed embedder");
    let r = recall::recall(&cases, &config, &live, emb, 3)
        .await
        .expect("recall runs");
    println!("{}", recall::markdown(std::slice::from_ref(&r)));
    assert!(r.scored >= 15, "cases with a sibling: {}", r.scored);
    // Measured 14/17 at 3 and 13/17 at 1; these floors catch a real regression.
    assert!(r.recall_at_k >= 0.75, "recall@3 = {:.2}", r.recall_at_k);
    assert!(r.recall_at_1 >= 0.65, "recall@1 = {:.2}", r.recall_at_1);
    for (case, _) in [
        ("host-cpu-hog-02", "host-cpu-hog-01"),
        ("pg-lock-chain-01", "derived-gocardless-lock-queue"),
        ("traces-slow-downstream-02", "traces-slow-downstream-01"),
        (
            "traces-failing-downstream-01",
            "traces-failing-downstream-02",
        ),
    ] {
        let c = r.cases.iter().find(|c| c.case == case).expect("scored");
        assert_eq!(c.rank, Some(1), "{case}: {c:?}");
        assert!(
            !c.query.is_empty(),
            "the reasoner searched with what it knew"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_kept_in_the_incident_store_across_restarts() {
    let (config, live, cases) = suite();
    let docs = recall::remembered(&cases, &config, &live)
        .await
        .expect("docs");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("oncall.db").display());
    let (probe, _) = docs
        .iter()
        .find(|(d, _)| d.incident == "pg-lock-chain-01")
        .cloned()
        .expect("probe");
    {
        let store = oncall::incidents::open(&url).await.expect("store");
        let m = Memory::open(&config, store).await.expect("memory");
        for (d, _) in docs.iter().filter(|(d, _)| d.incident != probe.incident) {
            m.remember(d.clone()).await.expect("remember");
        }
        assert_eq!(m.len().await.unwrap(), docs.len() - 1);
    }
    // A new process: the same store, nothing in memory but what the store kept.
    let store = oncall::incidents::open(&url).await.expect("store again");
    let m = Memory::open(&config, store.clone()).await.expect("memory");
    assert_eq!(m.len().await.unwrap(), docs.len() - 1);
    let query = format!("{}\n{}", probe.report, probe.evidence.join("\n"));
    let hits = m.similar(&query, 3).await.expect("search");
    // Its siblings: the other lock contentions of the suite, the closest first.
    assert!(
        hits.iter()
            .all(|h| h.category.as_deref() == Some("db.lock_contention")),
        "{hits:?}"
    );
    assert!(
        hits.iter()
            .any(|h| h.incident == "derived-gocardless-lock-queue"),
        "{hits:?}"
    );
    // Another embedder: the stored documents are embedded again, and still found.
    let mut small = config.clone();
    small.memory.hashed_dims = 1024;
    let m2 = Memory::open(&small, store.clone())
        .await
        .expect("re-embeds");
    assert_eq!(m2.len().await.unwrap(), docs.len() - 1);
    let hits = m2.similar(&query, 1).await.expect("search");
    assert_eq!(hits[0].category.as_deref(), Some("db.lock_contention"));
    let rows = store.memory_rows().await.expect("rows");
    assert_eq!(rows.len(), 2 * (docs.len() - 1), "one row per embedder");
}

fn finished(events: &[Value]) -> Option<&Value> {
    events
        .iter()
        .rev()
        .find(|e| e["kind"] == "investigation_finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_incident_is_found_by_the_next_one_after_a_restart() {
    let data = tempfile::tempdir().expect("data dir");
    let report = "nightly-export job queue backs up and the billing workers stall";
    let first = {
        let mut cfg = Config::default();
        cfg.server.data_dir = data.path().to_path_buf();
        cfg.policy.audit_file = Some(data.path().join("audit-1.jsonl"));
        let srv = start(cfg).await;
        let t = srv.token("re", Role::Responder).await;
        let id = srv.open_incident(&t, report).await;
        wait_for(&srv, &t, &id, Duration::from_secs(90), "the round", |e| {
            finished(e).is_some()
        })
        .await;
        let (s, v) = srv
            .post(
                &t,
                &format!("/api/v1/incidents/{id}/status"),
                json!({"status": "resolved"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let events = wait_for(&srv, &t, &id, Duration::from_secs(30), "remembered", |e| {
            e.iter().any(|x| x["kind"] == "remembered")
        })
        .await;
        let r = events.iter().find(|x| x["kind"] == "remembered").unwrap();
        assert!(r["data"]["error"].is_null(), "{r}");
        assert!(
            r["data"]["memory"].as_str().unwrap().contains("hashed"),
            "{r}"
        );
        id
    };
    // A second server process over the same store (its own audit log).
    let mut cfg = Config::default();
    cfg.server.data_dir = data.path().to_path_buf();
    cfg.policy.audit_file = Some(data.path().join("audit-2.jsonl"));
    let srv = start(cfg).await;
    let t = srv.token("re2", Role::Responder).await;
    let id = srv
        .open_incident(
            &t,
            "billing workers stall again; the nightly export queue is backed up",
        )
        .await;
    assert_ne!(id, first);
    let events = wait_for(&srv, &t, &id, Duration::from_secs(90), "the round", |e| {
        finished(e).is_some()
    })
    .await;
    let done = finished(&events).unwrap();
    let steps = done["data"]["next_steps"].to_string();
    assert!(
        steps.contains(&format!("A similar past incident, {first}")),
        "the first incident is offered as a lead: {steps}"
    );
    // The lead is not evidence: no hypothesis cites memory.similar.
    let hyps = done["data"]["hypotheses"].as_array().unwrap();
    assert!(
        hyps.iter()
            .flat_map(|h| h["evidence"].as_array().unwrap())
            .all(|e| e["tool"] != "memory.similar"),
        "{hyps:?}"
    );
}

/// A local stand-in for an OpenAI-compatible embeddings service (a test double: no such
/// service runs on this machine). It embeds by a fixed vocabulary and can be told to fail.
async fn embeddings_double(mode: &'static str) -> String {
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/v1/embeddings",
        post(move |Json(body): Json<Value>| async move {
            match mode {
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                "500" => {
                    return (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "model overloaded".to_string(),
                    );
                }
                "garbage" => return (axum::http::StatusCode::OK, "{\"data\": 7}".into()),
                _ => {}
            }
            let words = ["lock", "cpu", "disk", "checkout", "payments", "full"];
            let data: Vec<Value> = body["input"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let t = t.as_str().unwrap().to_lowercase();
                    let v: Vec<f32> = words
                        .iter()
                        .map(|w| t.matches(w).count() as f32)
                        .chain([0.1])
                        .collect();
                    json!({"object": "embedding", "index": i, "embedding": v})
                })
                .collect();
            (
                axum::http::StatusCode::OK,
                json!({"object": "list", "data": data, "model": body["model"]}).to_string(),
            )
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}/v1")
}

fn openai_config(base: &str) -> Config {
    let mut c = Config::default();
    c.memory.embedder = oncall::config::EmbedderKind::Openai;
    c.memory.base_url = base.into();
    c.memory.model = "test-embed".into();
    c.memory.timeout_s = 1;
    c
}

fn doc(id: &str, cause: &str) -> oncall::memory::Doc {
    oncall::memory::Doc {
        incident: id.into(),
        title: id.into(),
        report: cause.into(),
        category: None,
        component: None,
        cause: cause.into(),
        evidence: vec![],
        remediation: vec!["ran host.signal_process".into()],
        resolved_at: chrono::Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embeddings_endpoint_works_and_its_failures_are_reported() {
    let base = embeddings_double("ok").await;
    let cfg = openai_config(&base);
    let m = Memory::in_process(oncall::memory::embedder(&cfg).expect("embedder"), 0.0);
    m.remember(doc("A", "checkout hangs on a lock"))
        .await
        .unwrap();
    m.remember(doc("B", "the disk is full")).await.unwrap();
    let hits = m.similar("payments wait on a row lock", 2).await.unwrap();
    assert_eq!(hits[0].incident, "A", "{hits:?}");
    assert_eq!(
        hits[0].fixed_by,
        vec!["ran host.signal_process".to_string()]
    );

    for (mode, expect) in [
        ("500", "500 Internal Server Error: model overloaded"),
        ("garbage", "malformed embeddings reply"),
        ("slow", "did not answer in time"),
    ] {
        let base = embeddings_double(mode).await;
        let e = oncall::memory::embedder(&openai_config(&base)).unwrap();
        let m = Memory::in_process(e, 0.0);
        match m.remember(doc("A", "x")).await {
            Err(MemoryError::Embed(msg)) => assert!(msg.contains(expect), "{mode}: {msg}"),
            other => panic!("{mode}: {other:?}"),
        }
    }
    // The tool turns the failure into an answer the model can read; nothing panics.
    let base = embeddings_double("500").await;
    let e = oncall::memory::embedder(&openai_config(&base)).unwrap();
    let reg = oncall::app::with_memory(
        Registry::from_tools(vec![]),
        Arc::new(Memory::in_process(e, 0.0)),
    );
    let err = reg
        .call("memory.similar", json!({"text": "cpu"}), None)
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("model overloaded"), "{err}");
    let err = reg
        .call("memory.similar", json!({"text": " "}), None)
        .await
        .expect_err("empty text");
    assert!(err.to_string().contains("`text` is empty"), "{err}");
    // No base URL at all: a configuration error naming the setting.
    let mut c = Config::default();
    c.memory.embedder = oncall::config::EmbedderKind::Openai;
    c.llm.base_url = String::new();
    let e = oncall::memory::embedder(&c).err().expect("misconfigured");
    assert!(e.to_string().contains("[memory] base_url"), "{e}");
}
