//! Traces end to end: OTLP/HTTP into `oncall serve`, and triage over the spans it received.
//!
//! The services are REAL OpenTelemetry SDK clients (Python's opentelemetry-sdk with the
//! OTLP/HTTP protobuf exporter, installed by scripts/setup-test-deps.sh into target/otel-venv):
//! storefront calls payments with W3C trace context propagated, and payments' downstream call
//! is slow, or fails. The protocol tests send hand-built OTLP payloads to the real router.

mod common;

use flate2::Compression;
use flate2::write::GzEncoder;
use oncall::config::Config;
use oncall::server::{AppState, app};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as AV};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "test-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// The OpenTelemetry SDK's Python, or None (and a SKIPPED line) outside CI.
fn python() -> Option<PathBuf> {
    common::venv_python("opentelemetry.sdk")
}

/// A process killed (after SIGTERM, so it can flush) when dropped.
struct Proc(Child);

impl Proc {
    fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..50 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

/// The real binary: `oncall serve` on a free port.
async fn oncall_serve() -> (Proc, String) {
    let port = free_port();
    let child = Command::new(common::ONCALL)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ONCALL_TOKEN", TOKEN)
        .env("ONCALL_HOST__WINDOW_MS", "200")
        .env_remove("ONCALL_CONFIG")
        .stderr(Stdio::null())
        .spawn()
        .expect("oncall serve");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/healthz")).await;
    (Proc(child), base)
}

async fn scenario(mode: &str) -> Value {
    let Some(py) = python() else {
        return Value::Null;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/otel/services.py");
    let (_server, base) = oncall_serve().await;
    let endpoint = format!("{base}/v1/traces");
    let (pp, sp) = (free_port(), free_port());
    let spawn = |args: Vec<String>| {
        Proc(
            Command::new(&py)
                .arg(&script)
                .args(args)
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python service"),
        )
    };
    let mut payments = spawn(vec![
        "payments".into(),
        "--port".into(),
        pp.to_string(),
        "--endpoint".into(),
        endpoint.clone(),
        "--token".into(),
        TOKEN.into(),
        "--mode".into(),
        mode.into(),
    ]);
    let mut storefront = spawn(vec![
        "storefront".into(),
        "--port".into(),
        sp.to_string(),
        "--endpoint".into(),
        endpoint,
        "--token".into(),
        TOKEN.into(),
        "--payments".into(),
        format!("http://127.0.0.1:{pp}"),
    ]);
    wait_ready(&format!("http://127.0.0.1:{pp}/ready")).await;
    wait_ready(&format!("http://127.0.0.1:{sp}/ready")).await;
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..8)
        .map(|_| client.get(format!("http://127.0.0.1:{sp}/checkout")).send())
        .collect();
    for r in futures::future::join_all(requests).await {
        r.expect("checkout request");
    }
    // SIGTERM makes both SDKs flush their last spans over the wire.
    storefront.terminate();
    payments.terminate();
    let answer: Value = client
        .post(format!("{base}/api/v1/triage"))
        .bearer_auth(TOKEN)
        .json(&json!({"report": "checkout is slow and failing for customers"}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("triage")
        .json()
        .await
        .expect("triage json");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_downstream_span_is_top1_dependency_latency_and_the_fast_database_is_rejected() {
    let answer = scenario("latency").await;
    if answer.is_null() {
        return;
    }
    let h = &common::hypotheses(&answer)[0];
    assert_eq!(
        h["category"],
        "dependency.latency",
        "ranking:\n{}",
        common::ranking(&answer)
    );
    assert_eq!(h["status"], "confirmed");
    let st = h["statement"].as_str().unwrap();
    assert!(
        st.contains("provider.authorize") && st.contains("payments"),
        "{st}"
    );
    let db = common::hypotheses(&answer)
        .iter()
        .find(|h| h["category"] == "db.slow_query")
        .expect("the database was considered");
    assert_eq!(db["status"], "rejected", "database spans are fast: {db}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_downstream_is_top1_dependency_errors() {
    let answer = scenario("errors").await;
    if answer.is_null() {
        return;
    }
    let h = &common::hypotheses(&answer)[0];
    assert_eq!(
        h["category"],
        "dependency.errors",
        "ranking:\n{}",
        common::ranking(&answer)
    );
    let st = h["statement"].as_str().unwrap();
    assert!(
        st.contains("provider.authorize")
            && st.contains("payments")
            && st.contains("card network unavailable"),
        "{st}"
    );
    let app = common::hypotheses(&answer)
        .iter()
        .find(|h| h["category"] == "app.error_spike")
        .unwrap();
    assert_eq!(
        app["status"], "rejected",
        "storefront only propagates the error: {app}"
    );
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(AV::StringValue("storefront".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn span(i: u64) -> Span {
    let now = oncall::collectors::traces::now_ns();
    Span {
        trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
        span_id: (i + 1).to_be_bytes().to_vec(),
        name: "GET /checkout".into(),
        start_time_unix_nano: now - 5_000_000,
        end_time_unix_nano: now,
        ..Default::default()
    }
}

async fn in_process(mut config: Config) -> String {
    // The incident store and audit log go to a directory that lives as long as the test process.
    let dir = tempfile::tempdir().unwrap().keep();
    config.server.data_dir = dir;
    let state = AppState::start(Arc::new(config), Some(TOKEN))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn otlp_http_answers_as_the_spec_says_and_keeps_serving() {
    let base = in_process(Config::default()).await;
    let url = format!("{base}/v1/traces");
    let c = reqwest::Client::new();
    let good = request((0..3).map(span).collect()).encode_to_vec();
    let send = |body: Vec<u8>, ct: &'static str| {
        c.post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", ct)
            .body(body)
            .send()
    };

    // Authentication.
    let r = c
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .bearer_auth("wrong")
        .header("content-type", "application/x-protobuf")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Protobuf, JSON and gzip.
    let r = send(good.clone(), "application/x-protobuf").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert!(
        ExportTraceServiceResponse::decode(r.bytes().await.unwrap())
            .unwrap()
            .partial_success
            .is_none()
    );
    let json_body = serde_json::to_vec(&request(vec![span(10)])).unwrap();
    assert!(
        String::from_utf8_lossy(&json_body).contains(&hex::encode(span(10).trace_id)),
        "OTLP/JSON carries hex ids"
    );
    let r = send(json_body, "application/json").await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&good).unwrap();
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Invalid ids: partial success, the valid span kept.
    let mut bad = span(20);
    bad.trace_id = vec![1, 2, 3];
    let r = send(
        request(vec![bad, span(21)]).encode_to_vec(),
        "application/x-protobuf",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let ps = ExportTraceServiceResponse::decode(r.bytes().await.unwrap())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("trace_id must be 16 bytes"),
        "{}",
        ps.error_message
    );

    // Truncated protobuf: 400 with a google.rpc.Status body.
    let r = send(good[..good.len() - 7].to_vec(), "application/x-protobuf")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let status =
        oncall::collectors::traces::otlp::RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert!(
        status.message.contains("not a valid OTLP protobuf"),
        "{}",
        status.message
    );

    // Wrong content type: 415 naming the right ones.
    let r = send(good.clone(), "text/plain").await.unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("application/x-protobuf"));

    // A 50 MB body: 413, and the receiver keeps serving.
    let r = send(vec![0u8; 50 << 20], "application/x-protobuf")
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        send(good.clone(), "application/x-protobuf")
            .await
            .unwrap()
            .status(),
        200
    );
    // A gzip bomb is limited after decompression too.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&vec![0u8; 20 << 20]).unwrap();
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        send(good, "application/x-protobuf").await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn over_the_span_rate_the_receiver_answers_429_with_retry_after() {
    let mut cfg = Config::default();
    cfg.server.max_spans_per_s = 5;
    let base = in_process(cfg).await;
    let c = reqwest::Client::new();
    let body = request((0..20).map(span).collect()).encode_to_vec();
    let send = || {
        c.post(format!("{base}/v1/traces"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
    };
    // A batch bigger than a second's worth passes when the bucket is full (slowed, not refused
    // forever); the next one right after it is over the rate.
    assert_eq!(send().await.unwrap().status(), 200);
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let r = c
        .post(format!("{base}/api/v1/triage"))
        .json(&json!({"report": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the triage API needs the token too");
}

#[tokio::test]
async fn the_server_records_eval_cases_from_what_it_received() {
    let mut cfg = Config::default();
    cfg.host.window_ms = 100;
    let base = in_process(cfg).await;
    let c = reqwest::Client::new();
    let body = request((0..3).map(span).collect()).encode_to_vec();
    let r = c
        .post(format!("{base}/v1/traces"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/api/v1/record"))
        .bearer_auth(TOKEN)
        .json(&json!({"id": "x-01", "report": "checkout is slow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let case: Value = r.json().await.unwrap();
    assert_eq!(case["format"], "oncall-case/1");
    assert!(case["truth"].is_null(), "the truth is left for a person");
    let tools: Vec<&str> = case["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["tool"].as_str())
        .collect();
    assert!(
        tools.contains(&"traces.red") && tools.contains(&"host.use_snapshot"),
        "{tools:?}"
    );
    let r = c
        .post(format!("{base}/api/v1/record"))
        .bearer_auth(TOKEN)
        .json(&json!({"id": "x", "report": " "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(format!("{base}/api/v1/record"))
        .json(&json!({"id": "x", "report": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
