//! A seeded-secrets corpus (`tests/fixtures/secrets.jsonl`: over a hundred secrets in the
//! carriers they really turn up in: SQL text as `pg_stat_activity` and `pg_stat_statements` show
//! it, span attributes, process command lines, env-like strings, log lines, JSON and YAML
//! configuration) through every path that shows text to someone:
//!
//! - the redactor itself, secret by secret, and what must survive it (ids, hashes, ordinary SQL,
//!   every recorded eval case);
//! - every request to a model (a TEST DOUBLE that captures them: in-process, and an
//!   OpenAI-compatible test double behind a real server, since a paid model cannot run here);
//! - a real `oncall serve` on loopback: incident events (API and event stream), the incident
//!   list, approval lists, the triage and record answers, the post-mortem draft;
//! - Slack (a TEST DOUBLE of Slack's Web API: Slack's cloud cannot run here);
//! - the CLI's answer and log.
//!
//! Not one seeded secret may be seen in any of them.

mod common;

use async_trait::async_trait;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::server::{OPERATOR, Srv, start, stream_until, wait_for};
use oncall::agent::events::Silent;
use oncall::config::{Config, CustomRedaction, Provider};
use oncall::llm::{ChatModel, ChatReply, ChatRequest, LlmError, Role, ToolCallRequest};
use oncall::redact::{redact, redact_value, redacted};
use oncall::registry::Registry;
use oncall::tool::{DynTool, RiskClass, ToolError, ToolSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// One seeded secret: where it is carried, the kind its placeholder must name, the text that
/// carries it, and the secret part that must never be seen.
#[derive(Debug, Deserialize)]
struct Seeded {
    carrier: String,
    kind: String,
    text: String,
    secret: String,
}

static CORPUS: LazyLock<Vec<Seeded>> = LazyLock::new(|| {
    include_str!("fixtures/secrets.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("tests/fixtures/secrets.jsonl line {}: {e}", i + 1))
        })
        .collect()
});

/// What of a secret must never be seen: all of it, and every run of six or more letters and
/// digits in it that has a digit or a capital (so a secret cut in two, or escaped differently
/// in JSON, is still caught; plain words like `github` are not secrets).
fn pieces(secret: &str) -> Vec<&str> {
    let mut out = vec![secret];
    out.extend(
        secret
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| {
                p.len() >= 6
                    && p.bytes()
                        .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            }),
    );
    out
}

fn leaked(s: &Seeded, text: &str) -> bool {
    pieces(&s.secret).iter().any(|p| text.contains(p))
}

/// The seeded secrets seen in `text`, named by carrier and kind.
fn leaks(text: &str) -> Vec<String> {
    CORPUS
        .iter()
        .filter(|s| leaked(s, text))
        .map(|s| format!("{} {} ({})", s.carrier, s.kind, s.secret))
        .collect()
}

fn texts() -> Vec<&'static str> {
    CORPUS.iter().map(|s| s.text.as_str()).collect()
}

/// A report (or message) carrying every seeded secret: all the texts, one a line.
fn seeded_report() -> String {
    format!(
        "checkout is failing for customers since 10:00; everything we have:\n{}",
        texts().join("\n")
    )
}

fn kinds_shown(text: &str) -> BTreeSet<String> {
    CORPUS
        .iter()
        .map(|s| s.kind.clone())
        .filter(|k| text.contains(&format!("[REDACTED:{k}]")))
        .collect()
}

#[test]
fn every_seeded_secret_is_redacted_in_its_carrier_with_a_typed_placeholder() {
    let corpus = &*CORPUS;
    let carriers: BTreeSet<&str> = corpus.iter().map(|s| s.carrier.as_str()).collect();
    let kinds: BTreeSet<&str> = corpus.iter().map(|s| s.kind.as_str()).collect();
    assert!(corpus.len() >= 100, "{} seeded secrets", corpus.len());
    assert!(carriers.len() >= 6, "{carriers:?}");
    let mut failures = vec![];
    for s in corpus {
        assert!(
            leaked(s, &s.text),
            "the fixture's secret is in its text: {s:?}"
        );
        let r = redact(&s.text);
        if leaked(s, &r) {
            failures.push(format!("{} {}: leaked: {r}", s.carrier, s.kind));
        } else if !r.contains(&format!("[REDACTED:{}]", s.kind)) {
            failures.push(format!(
                "{} {}: redacted, but not as {}: {r}",
                s.carrier, s.kind, s.kind
            ));
        }
        // Configuration is redacted as a value too (the server redacts events that way).
        if let Ok(mut v) = serde_json::from_str::<Value>(&s.text)
            && v.is_object()
        {
            redact_value(&mut v);
            if leaked(s, &v.to_string()) {
                failures.push(format!(
                    "{} {} as a JSON value: leaked: {v}",
                    s.carrier, s.kind
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} seeded secrets of {} kinds in {} carriers ({}): every one redacted with its kind",
        corpus.len(),
        kinds.len(),
        carriers.len(),
        carriers.iter().copied().collect::<Vec<_>>().join(", ")
    );
}

/// Evidence that must reach the model and the responder unchanged.
const CLEAN: [&str; 24] = [
    // pg_stat_statements / pg_stat_activity, as the collectors show them.
    r#"{"queryid": -8817399209135316548, "calls": 1204, "mean_ms": 812.4, "query": "SELECT o.id, o.total FROM orders o WHERE o.customer_id = $1 AND o.created_at > $2 ORDER BY o.created_at DESC LIMIT $3"}"#,
    r#"{"pid": 48213, "state": "active", "wait_event_type": "Lock", "query": "UPDATE accounts SET balance = balance - $1 WHERE id = $2", "backend_start": "2026-03-01T09:58:11Z"}"#,
    "UPDATE users SET password = $1, password_changed_at = now() WHERE id = $2",
    "SELECT id FROM sessions WHERE token = $1 AND expires_at > now()",
    "SELECT u.id FROM users u JOIN api_keys k ON k.user_id = u.id WHERE k.token = t.token",
    "INSERT INTO audit (actor, action) VALUES (:actor, :action)",
    "ALTER ROLE app PASSWORD $1",
    "FATAL:  password authentication failed for user \"app\"",
    // Traces: ids and hashes in span ids.
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 parent=53995c3f42cd8ad8",
    r#"{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "GET /checkout", "status": {"code": 2, "message": "upstream timeout after 2000ms"}}"#,
    "request_id=123e4567-e89b-12d3-a456-426614174000 user=8f14e45f-ceea-467f-a9b0-3b3f6a7c2d10",
    // Processes and hosts.
    "pid=4242 ppid=1 comm=ledger-sync cmdline=/srv/ledger/ledger-sync --interval 30 --workers 8",
    "PWD=/srv/app OLDPWD=/root HOME=/home/app LANG=C.UTF-8",
    "docker run --password-stdin --token-file /run/secrets/token -p 8080:80 -u 1000:1000 api:2.5.0",
    "image=registry.internal/api@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "deployed storefront a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 (v2.5.0) at 2026-03-01T09:55:00Z",
    // Our own configuration and dry runs: references to secrets, not secrets.
    r#"{"api_key_env": "ONCALL_LLM_KEY", "bot_token_env": "SLACK_BOT_TOKEN", "signing_secret_env": "SLACK_SIGNING_SECRET"}"#,
    r#"{"method": "POST", "url": "${env:ONCALL_FLAGS_URL}/flags/new-checkout/disable", "headers": {"Authorization": "Bearer ${env:ONCALL_FLAGS_TOKEN}"}}"#,
    r#"{"prompt_tokens": 1200, "completion_tokens": 30, "max_tokens": 4096, "tokens": 1230}"#,
    "token=${env:SLACK_BOT_TOKEN} password=$DB_PASSWORD secret: null api_key: <your key>",
    // Prose.
    "Bearer authentication is required; basic troubleshooting says check the password's age",
    "p99 latency > 2s on /api/checkout since the 09:55 deploy; error ratio 0.31 (was 0.002)",
    "postgres://oncall@db.internal:5432/app is reachable; 97 of 100 connections in use",
    "memory.current=1.9GiB memory.max=2GiB oom_kill=3 throttled_usec=812345 nr_periods=1200",
];

#[test]
fn evidence_without_secrets_is_left_as_it_is() {
    for t in CLEAN {
        assert_eq!(redact(t), t, "changed by the redactor");
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            assert_eq!(redacted(&v), v, "changed by the redactor as a value");
        }
    }
    // Every recorded eval case holds real tool outputs (already redacted when recorded): the
    // redactor changes nothing in them.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/cases");
    let mut changed = vec![];
    let mut bytes = 0;
    for entry in std::fs::read_dir(&dir).expect("eval/cases") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        bytes += text.len();
        let v: Value = serde_json::from_str(&text).unwrap();
        let r = redacted(&v);
        if r != v {
            diff(&v, &r, &path.display().to_string(), &mut changed);
        }
    }
    assert!(bytes > 100_000, "the eval cases were read ({bytes} bytes)");
    assert!(changed.is_empty(), "{}", changed.join("\n"));
}

/// Where `a` and `b` differ, as `path: before -> after` lines.
fn diff(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                if let Some(w) = y.get(k) {
                    diff(v, w, &format!("{at}/{k}"), out);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, &format!("{at}/{i}"), out);
            }
        }
        (x, y) if x != y => out.push(format!("{at}: {x} -> {y}")),
        _ => {}
    }
}

#[test]
fn redaction_cost_per_kib() {
    // Recorded tool outputs (no secrets: the common case) and the seeded corpus (all secrets).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/cases");
    let mut clean = String::new();
    for entry in std::fs::read_dir(&dir).expect("eval/cases") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            clean.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    let dirty = texts().join("\n");
    let _ = redact("warm up");
    let per_kib = |text: &str, rounds: u32| {
        let t0 = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(redact(std::hint::black_box(text)));
        }
        t0.elapsed().as_secs_f64() * 1e6 / rounds as f64 / (text.len() as f64 / 1024.0)
    };
    let (c, d) = (per_kib(&clean, 3), per_kib(&dirty, 20));
    eprintln!(
        "redaction cost (this build's profile): {c:.1} µs/KiB over {} KiB of recorded tool outputs, {d:.1} µs/KiB over {} KiB of seeded secrets",
        clean.len() / 1024,
        dirty.len() / 1024
    );
    // A loose bound (debug builds, shared cores): a 64 KiB tool output in well under a second.
    assert!(c * 64.0 < 1e6 && d * 64.0 < 1e6, "{c} {d} µs/KiB");
}

// ---------------------------------------------------------------------------------------------
// Models

/// A read tool whose output carries every seeded secret: as lines, as parsed configuration, in
/// secret-named keys, and in a query.
struct Leaky(&'static str);

#[async_trait]
impl DynTool for Leaky {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.0,
            description: "a read tool whose output is full of secrets",
            risk: RiskClass::Read,
            parameters: json!({"type": "object"}),
            unavailable: false,
            version: 1,
        }
    }

    async fn call_json(&self, _args: Value) -> Result<Value, ToolError> {
        let configs: Vec<Value> = CORPUS
            .iter()
            .filter_map(|s| serde_json::from_str::<Value>(&s.text).ok())
            .filter(Value::is_object)
            .collect();
        Ok(json!({
            "lines": texts(),
            "configs": configs,
            "nested": {"env": {"api_key": PLAIN[0], "DB_PASSWORD": PLAIN[1]}},
            "query": format!("SELECT * FROM users WHERE note = '{}'", CORPUS[0].text),
            "ticket": CUSTOM,
        }))
    }
}

/// Values that are secrets only because of the key they are under.
const PLAIN: [&str; 2] = ["plainvalue-xyz-123", "plain-db-pw-456"];
/// A secret only the team's own pattern knows.
const CUSTOM: &str = "see ticket TCK-482910 for the credentials";

/// TEST DOUBLE of a model that captures every request: it calls every tool once, then concludes.
#[derive(Default)]
struct Capturing {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl ChatModel for Capturing {
    fn name(&self) -> String {
        "capturing-test-double".into()
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        self.seen
            .lock()
            .unwrap()
            .push(serde_json::to_string(&req.messages).unwrap());
        let asked = req
            .messages
            .iter()
            .any(|m| m.role == Role::Assistant && !m.tool_calls.is_empty());
        if asked || req.tools.is_empty() {
            return Ok(ChatReply {
                content: Some("done".into()),
                ..Default::default()
            });
        }
        Ok(ChatReply {
            tool_calls: req
                .tools
                .iter()
                .filter(|t| !t.name.starts_with("board."))
                .enumerate()
                .map(|(i, t)| ToolCallRequest {
                    id: format!("s{i}"),
                    name: t.name.clone(),
                    arguments: "{}".into(),
                })
                .collect(),
            ..Default::default()
        })
    }
}

/// Every seeded secret, the secret-named plain values and the custom-pattern ticket seen.
fn all_leaks(text: &str) -> Vec<String> {
    let mut out = leaks(text);
    out.extend(
        PLAIN
            .iter()
            .chain(["TCK-482910"].iter())
            .filter(|p| text.contains(*p))
            .map(|p| p.to_string()),
    );
    out
}

fn registry() -> Registry {
    Registry::from_tools(vec![
        Box::new(Leaky("host.use_snapshot")),
        Box::new(Leaky("postgres.activity")),
        Box::new(Leaky("traces.errors")),
    ])
}

fn report() -> String {
    format!("{}\n{CUSTOM}", seeded_report())
}

#[tokio::test]
async fn no_seeded_secret_reaches_the_model_from_outputs_report_or_a_recorded_case() {
    oncall::redact::configure(&[CustomRedaction {
        kind: "ticket".into(),
        pattern: r"TCK-[0-9]{6}".into(),
    }])
    .unwrap();
    let config = Config::default();
    // 1. Tool outputs and the report, live.
    let model = Capturing::default();
    let reg = registry();
    oncall::reasoner::investigate(&report(), &reg, &config, &model, &Silent)
        .await
        .unwrap();
    let seen = model.seen.lock().unwrap().join("\n");
    assert!(
        kinds_shown(&seen).len() >= 20,
        "the double saw the outputs, redacted: {:?}",
        kinds_shown(&seen)
    );
    assert_eq!(all_leaks(&seen), Vec::<String>::new(), "live prompts");
    // 2. A case recorded from the same tools, then replayed.
    let rec = Capturing::default();
    let case = oncall::eval::record::record("s-01", &report(), &config, &reg, &rec, |_| {})
        .await
        .unwrap();
    let written = serde_json::to_string(&case).unwrap();
    assert_eq!(
        all_leaks(&written),
        Vec::<String>::new(),
        "the recorded case"
    );
    let replayed = Capturing::default();
    let replay = oncall::eval::replay::registry(&case, &reg);
    oncall::reasoner::investigate(&case.report, &replay, &config, &replayed, &Silent)
        .await
        .unwrap();
    let seen = replayed.seen.lock().unwrap().join("\n");
    assert!(seen.contains("[REDACTED:"));
    assert_eq!(all_leaks(&seen), Vec::<String>::new(), "replayed prompts");
    eprintln!(
        "{} seeded secrets + {} secret-named keys + a custom pattern through outputs, the report and a recorded case: 0 reached the model",
        CORPUS.len(),
        PLAIN.len()
    );
}

#[test]
fn the_log_and_the_answer_carry_no_secret_from_the_report() {
    let (code, out, err) = {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_oncall"))
            .args(["triage", "--json", &report()])
            .env_remove("ONCALL_CONFIG")
            .env("ONCALL_LOG", "debug")
            .env("ONCALL_HOST__WINDOW_MS", "100")
            .output()
            .expect("run oncall");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{err}");
    assert!(!err.is_empty(), "debug logging produced lines");
    // Without the custom pattern configured in this process, the ticket id is ordinary text.
    assert_eq!(leaks(&(out + &err)), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// A real server

/// TEST DOUBLE of an OpenAI-compatible model endpoint (a paid model cannot run here). It
/// records every request; asked with tools, it reads the change log and the error spans (and
/// asks for a plan with a connection string as the database); after that, or without tools
/// (the post-mortem's prose), it answers in words.
struct LlmDouble {
    base_url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl LlmDouble {
    async fn start() -> LlmDouble {
        async fn chat(
            State(seen): State<Arc<Mutex<Vec<Value>>>>,
            Json(body): Json<Value>,
        ) -> Json<Value> {
            seen.lock().unwrap().push(body.clone());
            let answered = body["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
            let offered = body["tools"].as_array().is_some_and(|t| !t.is_empty());
            let message = if offered && !answered {
                let call = |i: usize, name: &str, args: Value| {
                    json!({"id": format!("call_{i}"), "type": "function",
                           "function": {"name": name.replace('.', "__"), "arguments": args.to_string()}})
                };
                json!({"role": "assistant", "content": null, "tool_calls": [
                    call(0, "changes.recent", json!({"since_minutes": 180})),
                    call(1, "traces.errors", json!({"limit": 50})),
                    call(2, "postgres.explain", json!({"database": dsn(), "queryid": 1})),
                ]})
            } else {
                json!({"role": "assistant", "content": "Read the change log and the error spans; no conclusion."})
            };
            let finish = if message["tool_calls"].is_array() {
                "tool_calls"
            } else {
                "stop"
            };
            Json(json!({
                "id": "x", "object": "chat.completion", "created": 1, "model": "double",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020}
            }))
        }
        let seen: Arc<Mutex<Vec<Value>>> = Default::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(seen.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        LlmDouble {
            base_url: format!("http://{addr}/v1"),
            seen,
        }
    }

    /// What oncall sent: every request, without the double's own turns echoed back in them
    /// (the double writes a seeded connection string into its tool call; a real model can only
    /// repeat what it was sent).
    fn requests(&self) -> String {
        let mut seen = self.seen.lock().unwrap().clone();
        for r in &mut seen {
            if let Some(m) = r["messages"].as_array_mut() {
                m.retain(|m| m["role"] != "assistant");
            }
        }
        serde_json::to_string(&seen).unwrap()
    }
}

/// A seeded connection string.
fn dsn() -> &'static str {
    &CORPUS
        .iter()
        .find(|s| s.text.starts_with("DATABASE_URL="))
        .expect("a seeded DATABASE_URL")
        .text["DATABASE_URL=".len()..]
}

/// A change log (what `changes.recent` reads) with one change per seeded text.
fn change_log(dir: &std::path::Path) -> std::path::PathBuf {
    let at = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let lines: Vec<String> = texts()
        .iter()
        .map(|t| json!({"at": at, "kind": "config", "what": t, "service": "checkout"}).to_string())
        .collect();
    let path = dir.join("changes.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// OTLP/JSON: one error span per seeded span attribute, the text as its status message and as
/// the attribute.
fn seeded_spans() -> Value {
    let now = oncall::collectors::traces::now_ns();
    let spans: Vec<Value> = CORPUS
        .iter()
        .filter(|s| s.carrier == "span")
        .enumerate()
        .map(|(i, s)| {
            let (key, value) = s.text.split_once('=').unwrap_or(("note", &s.text));
            json!({
                "traceId": format!("{:032x}", 0xabc000 + i),
                "spanId": format!("{:016x}", 0xdef000 + i),
                "name": format!("op-{i}"),
                "kind": 3,
                "startTimeUnixNano": (now - 30_000_000).to_string(),
                "endTimeUnixNano": now.to_string(),
                "attributes": [{"key": key, "value": {"stringValue": value}}],
                "status": {"code": 2, "message": s.text},
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"spans": spans}]
    }]})
}

fn sql_requests() -> Vec<Value> {
    CORPUS
        .iter()
        .filter(|s| s.carrier.starts_with("sql_") && !s.text.contains("*/"))
        // EXPLAIN ANALYZE only takes statements that read: the seeded statement rides along as
        // a comment of one, exactly as a model would paste it.
        .map(|s| json!({"tool": "postgres.explain_analyze", "args": {"sql": format!("SELECT 1 /* {} */", s.text)}, "why": format!("check the plan of {}", s.text)}))
        .collect()
}

async fn text_of(srv: &Srv, token: &str, path: &str) -> String {
    let r = srv
        .http
        .get(srv.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_no_seeded_secret_in_events_streams_approvals_triage_or_the_postmortem() {
    let llm = LlmDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.host.window_ms = 100;
    cfg.changes.file = Some(change_log(dir.path()));
    cfg.llm.provider = Provider::Openai;
    cfg.llm.base_url = llm.base_url.clone();
    cfg.llm.model = "double".into();
    cfg.llm.api_key_env = "ONCALL_TEST_NO_KEY".into();
    cfg.llm.timeout_s = 10;
    cfg.llm.max_attempts = 1;
    let srv = start(cfg).await;
    let t = srv.token("re", oncall::policy::Role::Responder).await;
    let viewer = srv.token("vi", oncall::policy::Role::Viewer).await;

    // Spans carrying secrets, then an incident whose report and follow-up carry all of them.
    let r = srv
        .http
        .post(srv.url("/v1/traces"))
        .bearer_auth(&t)
        .json(&seeded_spans())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "OTLP export: {}", r.status());
    let id = srv.open_incident(&t, &seeded_report()).await;
    wait_for(&srv, &t, &id, Duration::from_secs(60), "round 1", |e| {
        e.iter().any(|x| x["kind"] == "investigation_finished")
    })
    .await;
    let (s, v) = srv
        .post(
            &t,
            &format!("/api/v1/incidents/{id}/messages"),
            json!({"text": texts().join("\n")}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    wait_for(&srv, &t, &id, Duration::from_secs(60), "round 2", |e| {
        e.iter()
            .filter(|x| x["kind"] == "investigation_finished")
            .count()
            == 2
    })
    .await;
    // Requests whose arguments are the seeded SQL texts.
    let mut filed = String::new();
    for req in sql_requests() {
        let (s, v) = srv
            .post(&t, &format!("/api/v1/incidents/{id}/actions"), req)
            .await;
        assert_eq!(s, 202, "{v}");
        filed.push_str(&v.to_string());
    }

    let mut surfaces: Vec<(&str, String)> = vec![("request answers", filed)];
    surfaces.push((
        "the incident (events and approvals)",
        text_of(&srv, &viewer, &format!("/api/v1/incidents/{id}")).await,
    ));
    surfaces.push((
        "the incident list",
        text_of(&srv, &viewer, "/api/v1/incidents").await,
    ));
    surfaces.push((
        "the approval list",
        text_of(&srv, &viewer, "/api/v1/approvals").await,
    ));
    surfaces.push((
        "the incident's pending approvals",
        text_of(
            &srv,
            &viewer,
            &format!("/api/v1/approvals?incident={id}&state=pending"),
        )
        .await,
    ));
    let stream = stream_until(
        &srv.base,
        &viewer,
        &id,
        None,
        "action_requested",
        Duration::from_secs(20),
    )
    .await;
    assert!(stream.len() > 5, "the stream replayed the log");
    surfaces.push((
        "the event stream",
        json!(stream.iter().map(|e| &e.1).collect::<Vec<_>>()).to_string(),
    ));
    surfaces.push((
        "the post-mortem from the log",
        text_of(&srv, &viewer, &format!("/api/v1/incidents/{id}/postmortem")).await,
    ));
    let (s, v) = srv
        .post(&t, &format!("/api/v1/incidents/{id}/postmortem"), json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    surfaces.push(("the post-mortem draft answer", v.to_string()));
    surfaces.push((
        "the post-mortem draft",
        text_of(&srv, &viewer, &format!("/api/v1/incidents/{id}/postmortem")).await,
    ));
    let (s, v) = srv
        .post(&t, "/api/v1/triage", json!({"report": seeded_report()}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["tool_calls"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["tool"] == "changes.recent")),
        "the triage answer shows the tool calls: {v}"
    );
    surfaces.push(("the triage answer", v.to_string()));
    let (s, v) = srv
        .post(
            &t,
            "/api/v1/record",
            json!({"id": "seeded-01", "report": seeded_report()}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    surfaces.push(("the recorded case", v.to_string()));
    surfaces.push(("every model request", llm.requests()));

    let mut failures = vec![];
    for (what, text) in &surfaces {
        let l = leaks(text);
        if !l.is_empty() {
            failures.push(format!("{what}: {} leaked:\n  {}", l.len(), l.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The secrets did get there, redacted.
    let incident = &surfaces[1].1;
    assert!(
        kinds_shown(incident).len() >= 20,
        "{:?}",
        kinds_shown(incident)
    );
    assert!(kinds_shown(&surfaces[3].1).contains("password"));
    assert!(kinds_shown(&llm.requests()).len() >= 20);
    eprintln!(
        "{} seeded secrets through a real server: 0 in {} surfaces ({})",
        CORPUS.len(),
        surfaces.len(),
        surfaces.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// Slack and approvals

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// What the Slack test double received: (method, JSON body).
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// TEST DOUBLE of Slack's Web API (Slack's cloud cannot run here), as in tests/slack.rs: it
/// records `chat.postMessage` and `chat.update` and answers like Slack.
async fn slack_double() -> (String, Calls) {
    let calls: Calls = Default::default();
    async fn record(
        State((calls, method)): State<(Calls, &'static str)>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        let mut c = calls.lock().unwrap();
        c.push((method.to_string(), body.clone()));
        let ts = format!("1700000000.{:06}", c.len());
        Json(json!({"ok": true, "channel": body["channel"], "ts": ts}))
    }
    let app = Router::new()
        .route(
            "/chat.postMessage",
            post(record).with_state((calls.clone(), "chat.postMessage")),
        )
        .route(
            "/chat.update",
            post(record).with_state((calls.clone(), "chat.update")),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), calls)
}

/// A live action whose argument is a connection string (a test action: `true <url>`).
const CACHE_FLUSH: &str = r#"name = "cache.flush"
description = "Flush a cache, given its URL."
risk = "live_action"
[args.url]
description = "The cache's URL."
pattern = "redis://[^ ]+"
[command]
argv = ["true", "{url}"]
"#;

async fn slack_server(tag: &str, actions: &std::path::Path) -> (Srv, Calls) {
    let (api, calls) = slack_double().await;
    let secret_env = format!("ONCALL_TEST_SLACK_SECRET_{tag}");
    let bot_env = format!("ONCALL_TEST_SLACK_BOT_{tag}");
    // SAFETY: nextest runs each test in its own process, and this runs before any thread reads
    // the environment.
    unsafe {
        std::env::set_var(&secret_env, SLACK_SECRET);
        std::env::set_var(&bot_env, "xoxb-test-double");
    }
    let mut cfg = Config::default();
    cfg.host.window_ms = 100;
    cfg.slack.signing_secret_env = secret_env;
    cfg.slack.bot_token_env = bot_env;
    cfg.slack.api_base = api;
    cfg.slack.approvers = [("UANA".to_string(), "ana".to_string())].into();
    std::fs::write(actions.join("cache-flush.toml"), CACHE_FLUSH).unwrap();
    cfg.actions.dir = Some(actions.to_path_buf());
    (start(cfg).await, calls)
}

/// Sends `/oncall <text>` signed as Slack signs it; returns the incident id.
async fn slash_command(srv: &Srv, text: &str) -> String {
    let body = serde_urlencoded::to_string([
        ("team_id", "T1"),
        ("channel_id", "C1"),
        ("user_id", "UBO"),
        ("user_name", "bo"),
        ("command", "/oncall"),
        ("text", text),
        ("response_url", "https://hooks.invalid/x"),
        ("trigger_id", "1.2.3"),
    ])
    .unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = oncall::server::slack::sign(SLACK_SECRET, &ts, body.as_bytes()).unwrap();
    let r = srv
        .http
        .post(srv.url("/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ack: Value = r.json().await.unwrap();
    ack["text"]
        .as_str()
        .and_then(|t| t.split_whitespace().nth(1))
        .expect("the acknowledgement names the incident")
        .to_string()
}

async fn wait_calls(calls: &Calls, what: &str, pred: impl Fn(&[(String, Value)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if pred(&calls.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Slack never got {what}: {:#?}", calls.lock().unwrap());
}

fn slack_text(calls: &Calls) -> String {
    serde_json::to_string(&*calls.lock().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_no_seeded_secret_from_the_opener_results_approvals_or_the_postmortem() {
    let actions = tempfile::tempdir().unwrap();
    let (srv, calls) = slack_server("seeded", actions.path()).await;
    // A slash command's text has a limit (4 000 characters): the corpus goes in as several
    // commands, one incident each, one after another.
    let mut chunks: Vec<String> = vec![];
    for t in texts() {
        match chunks.last_mut() {
            Some(c) if c.chars().count() + t.chars().count() < 3_800 => {
                c.push('\n');
                c.push_str(t);
            }
            _ => chunks.push(format!(
                "checkout is failing for customers since 10:00:\n{t}"
            )),
        }
    }
    assert!(chunks.len() > 1);
    let mut ids = vec![];
    for chunk in &chunks {
        let id = slash_command(&srv, chunk).await;
        wait_for(
            &srv,
            OPERATOR,
            &id,
            Duration::from_secs(60),
            "the round",
            |e| e.iter().any(|x| x["kind"] == "investigation_finished"),
        )
        .await;
        ids.push(id);
    }
    let id = ids[0].clone();
    wait_calls(&calls, "the opener and the result", |c| c.len() >= 2).await;
    // Requests with the seeded SQL as their arguments: one approval message each.
    let mut requests = vec![];
    for req in sql_requests() {
        let (s, v) = srv
            .post(OPERATOR, &format!("/api/v1/incidents/{id}/actions"), req)
            .await;
        assert_eq!(s, 202, "{v}");
        requests.push(v["request"].as_str().unwrap().to_string());
    }
    let n = requests.len();
    wait_calls(&calls, "every approval message", |c| {
        c.iter()
            .filter(|(_, b)| b["blocks"].to_string().contains("Approval needed"))
            .count()
            >= n
    })
    .await;
    // Decided from the web: the approval messages are replaced.
    let ana = srv.token("ana", oncall::policy::Role::Approver).await;
    for r in &requests {
        let (s, v) = srv
            .post(
                &ana,
                &format!("/api/v1/approvals/{r}/decision"),
                json!({"approve": false, "reason": format!("not now: {}", CORPUS[0].text)}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    wait_calls(&calls, "every decided message", |c| {
        c.iter().filter(|(m, _)| m == "chat.update").count() >= n
    })
    .await;
    let (s, v) = srv
        .post(
            OPERATOR,
            &format!("/api/v1/incidents/{id}/postmortem"),
            json!({}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    wait_calls(&calls, "the draft in the thread", |c| {
        c.iter().any(|(_, b)| {
            b["text"]
                .as_str()
                .is_some_and(|t| t.contains("Post-mortem draft for"))
        })
    })
    .await;
    let sent = slack_text(&calls);
    assert_eq!(leaks(&sent), Vec::<String>::new(), "Slack messages");
    assert!(
        kinds_shown(&sent).len() >= 10,
        "the secrets reached Slack redacted: {:?}",
        kinds_shown(&sent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_lists_the_page_and_slack_show_redacted_arguments_while_the_desk_runs_the_exact_ones()
 {
    let actions = tempfile::tempdir().unwrap();
    let (srv, calls) = slack_server("approvals", actions.path()).await;
    let id = slash_command(&srv, "the checkout cache returns stale prices").await;
    wait_for(
        &srv,
        OPERATOR,
        &id,
        Duration::from_secs(60),
        "the round",
        |e| e.iter().any(|x| x["kind"] == "investigation_finished"),
    )
    .await;
    let pw = "Rq7-vL2x#Kp9-Wd4";
    let sql = format!(
        "SELECT usename FROM pg_user WHERE usename = 'app' /* ALTER ROLE app PASSWORD '{pw}' */"
    );
    let url_pw = "Zc5-Hy8m!Tn3-Qa6";
    let url = format!("redis://:{url_pw}@cache.internal:6379/0");
    let bo = srv.token("bo", oncall::policy::Role::Responder).await;
    let mut filed = vec![];
    for (tool, args) in [
        ("postgres.explain_analyze", json!({"sql": sql})),
        ("cache.flush", json!({"url": url})),
    ] {
        let (s, v) = srv
            .post(
                &bo,
                &format!("/api/v1/incidents/{id}/actions"),
                json!({"tool": tool, "args": args, "why": "stale prices"}),
            )
            .await;
        assert_eq!(s, 202, "{v}");
        let shown = v.to_string();
        assert!(
            !shown.contains(pw) && !shown.contains(url_pw),
            "the request answer: {shown}"
        );
        filed.push((v["request"].as_str().unwrap().to_string(), args));
    }
    let secret = |t: &str| t.contains(pw) || t.contains(url_pw);
    for path in [
        "/api/v1/approvals".to_string(),
        "/api/v1/approvals?state=pending".to_string(),
        format!("/api/v1/approvals?incident={id}&state=pending"),
        format!("/api/v1/incidents/{id}"),
    ] {
        let text = text_of(&srv, OPERATOR, &path).await;
        assert!(!secret(&text), "{path}: {text}");
        assert!(text.contains("[REDACTED:password]"), "{path}: {text}");
    }
    // The page's approval list is drawn from that same list (the page holds no data itself).
    let page = text_of(&srv, OPERATOR, "/").await;
    assert!(
        page.contains("'/api/v1/approvals?incident='") && page.contains("pretty(a.args)"),
        "the page lists approvals from GET /api/v1/approvals"
    );
    wait_calls(&calls, "both approval messages", |c| {
        filed.iter().all(|(r, _)| {
            c.iter()
                .any(|(_, b)| b["blocks"].to_string().contains(r.as_str()))
        })
    })
    .await;
    // The desk still holds the exact arguments: the approval binds their hash.
    for (r, args) in &filed {
        let entry = srv.st.desk.entry(r).expect("the desk has the request");
        assert_eq!(&entry.request.args, args, "the desk's copy is exact");
    }
    // Approved: the exact arguments run, once.
    let ana = srv.token("ana", oncall::policy::Role::Approver).await;
    let (s, v) = srv
        .post(
            &ana,
            &format!("/api/v1/approvals/{}/decision", filed[1].0),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let events = wait_for(
        &srv,
        OPERATOR,
        &id,
        Duration::from_secs(60),
        "the execution",
        |e| e.iter().any(|x| x["kind"] == "action_executed"),
    )
    .await;
    let executed = events
        .iter()
        .find(|e| e["kind"] == "action_executed")
        .unwrap();
    assert_eq!(executed["data"]["ok"], true, "{executed}");
    wait_calls(&calls, "the decided message", |c| {
        c.iter().any(|(m, _)| m == "chat.update")
    })
    .await;
    let sent = slack_text(&calls);
    assert!(!secret(&sent), "Slack: {sent}");
    assert!(sent.contains("[REDACTED:password]"), "Slack: {sent}");
    let all = text_of(&srv, OPERATOR, &format!("/api/v1/incidents/{id}")).await;
    assert!(!secret(&all), "{all}");
}
