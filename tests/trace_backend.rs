//! The traces tools reading the team's trace backend instead of the embedded store.
//!
//! TEST DOUBLE: neither Grafana Tempo nor Jaeger can run on this machine, so `backend_double`
//! is a local HTTP server answering their documented query APIs with responses in the documented
//! shapes: Tempo's `/api/search` and `/api/traces/<id>` (OTLP in protobuf's JSON mapping, ids in
//! base64, enums by name) and Jaeger's `/api/services` and `/api/traces` (spans with
//! `references`, `tags`, `processes`, times in microseconds). The traces describe checkouts whose
//! time goes to payments' `provider.authorize` (Tempo) or fail there (Jaeger), timed just now.

mod common;

use axum::extract::{Path, Query};
use axum::{Json, Router, routing::get};
use base64::Engine;
use common::investigate_offline;
use oncall::config::{Config, TraceBackendKind};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const TRACES: u64 = 20;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// One checkout: (service, span name, kind, parent index, start offset ms, duration ms, error, db).
type SpanDef = (
    &'static str,
    &'static str,
    &'static str,
    Option<usize>,
    u64,
    u64,
    bool,
    Option<&'static str>,
);

fn checkout(failing: bool) -> Vec<SpanDef> {
    let auth_ms = if failing { 30 } else { 1200 };
    vec![
        (
            "storefront",
            "GET /checkout",
            "server",
            None,
            0,
            auth_ms + 50,
            failing,
            None,
        ),
        (
            "storefront",
            "SELECT orders",
            "client",
            Some(0),
            2,
            5,
            false,
            Some("postgresql"),
        ),
        (
            "storefront",
            "POST /authorize",
            "client",
            Some(0),
            10,
            auth_ms + 20,
            failing,
            None,
        ),
        (
            "payments",
            "POST /authorize",
            "server",
            Some(2),
            12,
            auth_ms + 15,
            failing,
            None,
        ),
        (
            "payments",
            "provider.authorize",
            "client",
            Some(3),
            15,
            auth_ms,
            failing,
            None,
        ),
    ]
}

fn trace_id(i: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0xab;
    t[8..].copy_from_slice(&(i + 1).to_be_bytes());
    t
}

fn span_id(i: u64, j: usize) -> [u8; 8] {
    ((i + 1) * 100 + j as u64 + 1).to_be_bytes()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Tempo's `/api/traces/<id>` answer for trace `i` starting at `t0_us`.
fn tempo_trace(i: u64, t0_us: u64) -> Value {
    let mut by_service: HashMap<&str, Vec<Value>> = HashMap::new();
    for (j, (svc, name, kind, parent, off, dur, err, db)) in checkout(false).into_iter().enumerate()
    {
        let start = (t0_us + off * 1000) * 1000;
        let mut attrs = vec![];
        if let Some(d) = db {
            attrs.push(json!({"key": "db.system", "value": {"stringValue": d}}));
        }
        by_service.entry(svc).or_default().push(json!({
            "traceId": b64(&trace_id(i)),
            "spanId": b64(&span_id(i, j)),
            "parentSpanId": parent.map(|p| b64(&span_id(i, p))).unwrap_or_default(),
            "name": name,
            "kind": format!("SPAN_KIND_{}", kind.to_uppercase()),
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + dur * 1_000_000).to_string(),
            "attributes": attrs,
            "status": if err { json!({"code": "STATUS_CODE_ERROR"}) } else { json!({}) }
        }));
    }
    let batches: Vec<Value> = ["storefront", "payments"]
        .iter()
        .map(|svc| {
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation"}, "spans": by_service[svc]}]
            })
        })
        .collect();
    json!({ "batches": batches })
}

/// One Jaeger trace (as in `/api/traces`'s `data`).
fn jaeger_trace(i: u64, t0_us: u64) -> Value {
    let spans: Vec<Value> = checkout(true)
        .into_iter()
        .enumerate()
        .map(|(j, (svc, name, kind, parent, off, dur, err, db))| {
            let mut tags = vec![json!({"key": "span.kind", "type": "string", "value": kind})];
            if err {
                tags.push(json!({"key": "error", "type": "bool", "value": true}));
                tags.push(json!({"key": "otel.status_description", "type": "string", "value": "card network unavailable"}));
            }
            if let Some(d) = db {
                tags.push(json!({"key": "db.system", "type": "string", "value": d}));
            }
            json!({
                "traceID": hex::encode(trace_id(i)),
                "spanID": hex::encode(span_id(i, j)),
                "operationName": name,
                "references": parent.map(|p| vec![json!({"refType": "CHILD_OF", "traceID": hex::encode(trace_id(i)), "spanID": hex::encode(span_id(i, p))})]).unwrap_or_default(),
                "startTime": t0_us + off * 1000,
                "duration": dur * 1000,
                "tags": tags,
                "logs": [],
                "processID": if svc == "storefront" { "p1" } else { "p2" },
                "warnings": null
            })
        })
        .collect();
    json!({
        "traceID": hex::encode(trace_id(i)),
        "spans": spans,
        "processes": {
            "p1": {"serviceName": "storefront", "tags": []},
            "p2": {"serviceName": "payments", "tags": []}
        },
        "warnings": null
    })
}

/// The test double: Tempo's and Jaeger's query APIs over the same checkouts. Records the query
/// strings it was asked.
async fn backend_double() -> (String, Arc<Mutex<Vec<String>>>) {
    let t0 = now_us() - 20_000_000;
    let asked = Arc::new(Mutex::new(vec![]));
    let (a1, a2, a3) = (asked.clone(), asked.clone(), asked.clone());
    let app = Router::new()
        .route(
            "/api/search",
            get(move |Query(q): Query<HashMap<String, String>>| async move {
                a1.lock().unwrap().push(format!("search {q:?}"));
                let traces: Vec<Value> = (0..TRACES)
                    .map(|i| json!({
                        "traceID": hex::encode(trace_id(i)),
                        "rootServiceName": "storefront",
                        "rootTraceName": "GET /checkout",
                        "startTimeUnixNano": ((t0 + i * 500_000) * 1000).to_string(),
                        "durationMs": 1250
                    }))
                    .collect();
                Json(json!({"traces": traces, "metrics": {"inspectedBytes": "1024", "completedJobs": 1, "totalJobs": 1}}))
            }),
        )
        .route(
            "/api/traces/{id}",
            get(move |Path(id): Path<String>| async move {
                let i = (0..TRACES).find(|i| hex::encode(trace_id(*i)) == id).unwrap_or(0);
                Json(tempo_trace(i, t0 + i * 500_000))
            }),
        )
        .route(
            "/api/services",
            get(|| async { Json(json!({"data": ["storefront", "payments", "jaeger-query"], "total": 3, "limit": 0, "offset": 0, "errors": null})) }),
        )
        .route(
            "/api/traces",
            get(move |Query(q): Query<HashMap<String, String>>| async move {
                a3.lock().unwrap().push(format!("traces {q:?}"));
                let data: Vec<Value> = (0..TRACES).map(|i| jaeger_trace(i, t0 + i * 500_000)).collect();
                Json(json!({"data": data, "total": 0, "limit": 0, "offset": 0, "errors": null}))
            }),
        );
    let _ = a2;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), asked)
}

fn config(kind: TraceBackendKind, url: &str) -> Config {
    let mut c = Config::default();
    c.traces.backend = kind;
    c.traces.backend_url = url.into();
    c.traces.window_s = 120;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempo_traces_show_the_slow_downstream() {
    let (url, asked) = backend_double().await;
    let cfg = config(TraceBackendKind::Tempo, &url);
    let reg = oncall::app::builtin_registry(Arc::new(cfg.clone()));
    let spec = reg.spec("traces.critical_path").unwrap();
    assert!(
        !spec.unavailable,
        "the traces tools are offered with a backend"
    );
    let path = reg
        .call("traces.critical_path", json!({}), None)
        .await
        .expect("answers");
    assert_eq!(path["traces"], TRACES, "{path:#}");
    let top = &path["path"][0];
    assert_eq!(
        (top["service"].as_str(), top["operation"].as_str()),
        (Some("payments"), Some("provider.authorize")),
        "{path:#}"
    );
    let red = reg
        .call("traces.red", json!({"service": "storefront"}), None)
        .await
        .unwrap();
    let checkout = red["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "GET /checkout")
        .expect("row");
    assert_eq!(checkout["window"]["count"], TRACES, "{red:#}");
    assert!(
        checkout["window"]["p99_ms"].as_f64().unwrap() >= 1200.0,
        "{red:#}"
    );
    // The search asked for the window in seconds, bounded in traces.
    let q = asked.lock().unwrap()[0].clone();
    assert!(
        q.contains("\"limit\": \"200\"") && q.contains("\"start\""),
        "{q}"
    );
    // The offline reasoner names the downstream from the backend's traces.
    let inv = investigate_offline("checkout is slow for everyone", &reg, &cfg).await;
    let h = &inv.hypotheses[0];
    assert_eq!(
        h.category.label(),
        "dependency.latency",
        "{:#?}",
        inv.hypotheses
    );
    assert!(
        h.statement.contains("provider.authorize"),
        "{}",
        h.statement
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_traces_show_the_failing_downstream() {
    let (url, asked) = backend_double().await;
    let cfg = config(TraceBackendKind::Jaeger, &url);
    let reg = oncall::app::builtin_registry(Arc::new(cfg.clone()));
    let errs = reg
        .call("traces.errors", json!({}), None)
        .await
        .expect("answers");
    let g = &errs["groups"][0];
    assert_eq!(g["service"], "payments", "{errs:#}");
    assert_eq!(g["operation"], "provider.authorize", "{errs:#}");
    assert!(
        g["message"]
            .as_str()
            .unwrap_or("")
            .contains("card network unavailable"),
        "{errs:#}"
    );
    // One query per service (not Jaeger's own), in microseconds.
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    let inv = investigate_offline("checkout fails for customers", &reg, &cfg).await;
    assert_eq!(
        inv.hypotheses[0].category.label(),
        "dependency.errors",
        "{:#?}",
        inv.hypotheses
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_is_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for (kind, name) in [
        (TraceBackendKind::Tempo, "Tempo"),
        (TraceBackendKind::Jaeger, "Jaeger"),
    ] {
        let reg = oncall::app::builtin_registry(Arc::new(config(kind, &url)));
        let e = reg
            .call("traces.red", json!({}), None)
            .await
            .expect_err("fails");
        assert!(
            e.to_string()
                .contains(&format!("{name} at {url} is unreachable")),
            "{e}"
        );
    }
    // A backend without a URL is a configuration error naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("oncall.toml");
    std::fs::write(&f, "[traces]\nbackend = \"tempo\"\n").unwrap();
    let err = Config::load_from(
        Some(&f),
        figment::providers::Env::prefixed("NOT_ONCALL_TEST_"),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("backend_url"), "{err}");
}
