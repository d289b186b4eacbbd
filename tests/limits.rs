//! Bad input and overload, against the real server on loopback: fields over their documented
//! maximum are refused naming the field and the limit, and a flood of them stores nothing;
//! ingest tokens send traces and nothing else (through the real OpenTelemetry SDK, configured
//! exactly as the README says); wrong tokens slow down their source address only; a caller's
//! event streams and investigations are capped on every path that starts one, and a closed
//! stream or a finished investigation frees its slot.
//!
//! TEST DOUBLE: `HeldModel` below is an OpenAI-compatible HTTP server inside the test (a paid
//! model cannot run here) that holds every chat request until the test releases it, so
//! investigations stay in flight for exactly as long as a test needs.

mod common;

use common::server::{OPERATOR, Srv, start, wait_for};
use oncall::config::{Config, Provider};
use oncall::incidents::Grant;
use oncall::policy::Role;
use oncall::server::limits;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const QUIET: &str = "users say the status page feels slow";

/// Polls `pred` every 50 ms until it holds, or panics naming `what` after `timeout`.
async fn until(what: &str, timeout: Duration, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

/// A 400 naming `field` and `limit`, with the message "FIELD is N UNIT; the limit is LIMIT".
fn assert_too_long(what: &str, (s, v): (u16, Value), field: &str, limit: usize) {
    assert_eq!(s, 400, "{what}: {v}");
    assert_eq!(v["field"], field, "{what}: {v}");
    assert_eq!(v["limit"], limit, "{what}: {v}");
    let e = error_of(&v);
    assert!(
        e.starts_with(&format!("{field} is ")) && e.ends_with(&format!("; the limit is {limit}")),
        "{what}: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_over_its_limit_is_refused_with_400_naming_the_field_and_the_limit() {
    let mut cfg = Config::default();
    cfg.server.max_investigations_per_user = 50;
    let srv = start(cfg).await;
    let re = srv.token("re", Role::Responder).await;
    let ap = srv.token("ap", Role::Approver).await;
    let over = |limit: usize| "x".repeat(limit + 1);
    let inc = "1999-01-01-01";

    let (s, v) = srv
        .post(
            &re,
            "/api/v1/incidents",
            json!({"report": QUIET, "title": "é".repeat(5123)}),
        )
        .await;
    assert_eq!(
        error_of(&v),
        "title is 5123 characters; the limit is 200",
        "{v}"
    );
    assert_too_long("title", (s, v), "title", limits::TITLE_CHARS);
    // At the limit exactly it is accepted.
    let (s, v) = srv
        .post(
            &re,
            "/api/v1/incidents",
            json!({"report": QUIET, "title": "t".repeat(limits::TITLE_CHARS)}),
        )
        .await;
    assert_eq!(s, 202, "a title at the limit: {v}");
    let cases: Vec<(&str, &str, Value, &str, usize)> = vec![
        (
            "report",
            "/api/v1/incidents",
            json!({"report": over(limits::REPORT_CHARS)}),
            "report",
            limits::REPORT_CHARS,
        ),
        (
            "message",
            &*Box::leak(format!("/api/v1/incidents/{inc}/messages").into_boxed_str()),
            json!({"text": over(limits::MESSAGE_CHARS)}),
            "text",
            limits::MESSAGE_CHARS,
        ),
        (
            "tool name",
            &*Box::leak(format!("/api/v1/incidents/{inc}/actions").into_boxed_str()),
            json!({"tool": over(limits::TOOL_NAME_CHARS), "args": {}}),
            "tool",
            limits::TOOL_NAME_CHARS,
        ),
        (
            "tool arguments",
            &*Box::leak(format!("/api/v1/incidents/{inc}/actions").into_boxed_str()),
            json!({"tool": "host.signal_process", "args": {"pid": 1, "note": over(limits::TOOL_ARGS_BYTES)}}),
            "args",
            limits::TOOL_ARGS_BYTES,
        ),
        (
            "why",
            &*Box::leak(format!("/api/v1/incidents/{inc}/actions").into_boxed_str()),
            json!({"tool": "host.signal_process", "args": {"pid": 1}, "why": over(limits::WHY_CHARS)}),
            "why",
            limits::WHY_CHARS,
        ),
        (
            "triage report",
            "/api/v1/triage",
            json!({"report": over(limits::REPORT_CHARS)}),
            "report",
            limits::REPORT_CHARS,
        ),
        (
            "record id",
            "/api/v1/record",
            json!({"id": over(limits::RECORD_ID_CHARS), "report": QUIET}),
            "id",
            limits::RECORD_ID_CHARS,
        ),
        (
            "alert label",
            "/api/v1/alerts",
            json!({"alerts": [{"status": "firing", "labels": {"alertname": "A", "service": over(limits::ALERT_LABEL_CHARS)}}]}),
            "alerts[0].labels.service",
            limits::ALERT_LABEL_CHARS,
        ),
        (
            "alert annotation",
            "/api/v1/alerts",
            json!({"alerts": [{"labels": {"alertname": "A"}}, {"labels": {"alertname": "B"}, "annotations": {"description": over(limits::ALERT_ANNOTATION_CHARS)}}]}),
            "alerts[1].annotations.description",
            limits::ALERT_ANNOTATION_CHARS,
        ),
        (
            "alert field",
            "/api/v1/alerts",
            json!({"alerts": [{"labels": {"alertname": "A"}, "startsAt": over(limits::ALERT_FIELD_CHARS)}]}),
            "alerts[0].startsAt",
            limits::ALERT_FIELD_CHARS,
        ),
    ];
    for (what, path, body, field, limit) in cases {
        assert_too_long(what, srv.post(&re, path, body).await, field, limit);
    }
    let (s, v) = srv
        .post(
            &ap,
            "/api/v1/approvals/0123456789abcdef/decision",
            json!({"approve": false, "reason": over(limits::REASON_CHARS)}),
        )
        .await;
    assert_too_long("reason", (s, v), "reason", limits::REASON_CHARS);
    // The body as a whole keeps its byte cap (413) before any field is looked at.
    let big = "x".repeat(Config::default().server.max_body_bytes + 1);
    let (s, _) = srv
        .post(&re, "/api/v1/incidents", json!({"report": big}))
        .await;
    assert_eq!(s, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_oversized_and_refused_requests_grows_neither_the_store_nor_the_audit_log() {
    let mut cfg = Config::default();
    cfg.server.requests_per_s = 10_000;
    let srv = start(cfg).await;
    let re = srv.token("re", Role::Responder).await;
    let ap = srv.token("ap", Role::Approver).await;
    let id = srv.open_incident(&re, QUIET).await;
    wait_for(&srv, &re, &id, Duration::from_secs(60), "the round", |e| {
        e.last().is_some_and(|l| l["data"]["status"] == "waiting")
    })
    .await;
    // A real pending request, so decisions reach an existing one.
    let mut victim = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let (s, v) = srv
        .post(
            &re,
            &format!("/api/v1/incidents/{id}/actions"),
            json!({"tool": "host.signal_process", "args": {"pid": victim.id(), "signal": "TERM"}, "why": "stop it"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let request = v["request"].as_str().unwrap().to_string();

    let audit = srv.dir.path().join("audit.jsonl");
    let incidents = async || srv.st.store.list(1000).await.unwrap().len();
    let events = async || srv.st.store.events(&id, 0, 100_000).await.unwrap().len();
    let before = (
        incidents().await,
        events().await,
        std::fs::metadata(&audit).unwrap().len(),
    );

    let big = "y".repeat(64 * 1024);
    let mut refused = 0;
    for i in 0..40 {
        let (path, body, who) = match i % 8 {
            0 => (
                "/api/v1/incidents".to_string(),
                json!({"report": QUIET, "title": big}),
                &re,
            ),
            1 => ("/api/v1/incidents".to_string(), json!({"report": big}), &re),
            2 => (
                format!("/api/v1/incidents/{id}/messages"),
                json!({ "text": big }),
                &re,
            ),
            3 => (
                format!("/api/v1/incidents/{id}/actions"),
                json!({"tool": format!("no.such.tool.{i}"), "args": {}, "why": "x"}),
                &re,
            ),
            4 => (
                format!("/api/v1/incidents/{id}/actions"),
                json!({"tool": big, "args": {}}),
                &re,
            ),
            5 => (
                format!("/api/v1/incidents/{id}/actions"),
                json!({"tool": "host.signal_process", "args": {"pid": 1, "x": big}}),
                &re,
            ),
            6 => (
                format!("/api/v1/approvals/{request}/decision"),
                json!({"approve": false, "reason": big}),
                &ap,
            ),
            _ => (
                "/api/v1/alerts".to_string(),
                json!({"alerts": [{"labels": {"alertname": big}}]}),
                &re,
            ),
        };
        let (s, v) = srv.post(who, &path, body).await;
        assert_eq!(s, 400, "{path}: {v}");
        refused += 1;
    }
    let after = (
        incidents().await,
        events().await,
        std::fs::metadata(&audit).unwrap().len(),
    );
    assert_eq!(
        before, after,
        "(incidents, events, audit bytes) before and after {refused} refused requests"
    );
    let (_, pending) = srv
        .get(
            &re,
            &format!("/api/v1/approvals?incident={id}&state=pending"),
        )
        .await;
    assert_eq!(pending.as_array().unwrap().len(), 1, "still pending");
    // Refusals are counted, never copied.
    let m = srv.metrics(&re).await;
    for line in [
        "oncall_refused_requests_total{reason=\"too_long\",field=\"title\"} 5",
        "oncall_refused_requests_total{reason=\"too_long\",field=\"reason\"} 5",
        "oncall_refused_requests_total{reason=\"too_long\",field=\"alerts\"} 5",
        "oncall_refused_requests_total{reason=\"unknown_tool\",field=\"tool\"} 5",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    assert!(!m.contains(&big[..100]), "no client text in the metrics");
    let _ = victim.kill();
    let _ = victim.wait();
}

// ---------------------------------------------------------------------------------------------
// Ingest tokens

/// One OTLP/JSON span of service `svc`.
fn otlp_json(svc: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "GET /checkout", "kind": 2,
            "startTimeUnixNano": (now - 5_000_000).to_string(), "endTimeUnixNano": now.to_string()
        }]}]
    }]})
}

async fn send_traces(
    srv: &Srv,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    srv.http
        .post(srv.url("/v1/traces"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_token_sends_traces_and_is_refused_everywhere_else() {
    let srv = start(Config::default()).await;
    let re = srv.token("re", Role::Responder).await;
    let id = srv.open_incident(&re, QUIET).await;
    let ingest = oncall::server::auth::new_token();
    srv.st
        .store
        .put_grant(
            "otel",
            Grant::Ingest,
            &oncall::server::auth::token_sha(&ingest),
        )
        .await
        .unwrap();
    let r = send_traces(
        &srv,
        &ingest,
        "application/json",
        otlp_json("checkout").to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(srv.st.spans.stats().spans, 1);
    // Reads nothing, opens nothing, approves nothing.
    for path in [
        "/api/v1/me",
        "/api/v1/incidents",
        &format!("/api/v1/incidents/{id}"),
        &format!("/api/v1/incidents/{id}/events"),
        "/api/v1/approvals",
        "/api/v1/tools",
        "/metrics",
        "/readyz",
    ] {
        let (s, v) = srv.get(&ingest, path).await;
        assert_eq!(s, 403, "GET {path}: {v}");
        assert!(error_of(&v).contains("ingest token"), "{v}");
    }
    for (path, body) in [
        ("/api/v1/incidents".to_string(), json!({"report": QUIET})),
        (
            format!("/api/v1/incidents/{id}/messages"),
            json!({"text": "hi"}),
        ),
        (format!("/api/v1/incidents/{id}/resume"), json!({})),
        ("/api/v1/triage".to_string(), json!({"report": QUIET})),
        (
            "/api/v1/approvals/0123456789abcdef/decision".to_string(),
            json!({"approve": true}),
        ),
    ] {
        let (s, v) = srv.post(&ingest, &path, body).await;
        assert_eq!(s, 403, "POST {path}: {v}");
    }
    assert_eq!(
        srv.st.store.list(100).await.unwrap().len(),
        1,
        "nothing opened"
    );
    // A viewer may not send traces; a responder still may.
    let viewer = srv.token("vi", Role::Viewer).await;
    let r = send_traces(&srv, &viewer, "application/json", b"{}".to_vec()).await;
    assert_eq!(r.status(), 403);
    let r = send_traces(&srv, &re, "application/json", b"{}".to_vec()).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_tokens_rate_limit_applies_before_its_body_is_read() {
    let mut cfg = Config::default();
    cfg.server.requests_per_s = 3;
    cfg.server.max_body_bytes = 64 << 10;
    let srv = start(cfg).await;
    let ingest = oncall::server::auth::new_token();
    srv.st
        .store
        .put_grant(
            "otel",
            Grant::Ingest,
            &oncall::server::auth::token_sha(&ingest),
        )
        .await
        .unwrap();
    let other = oncall::server::auth::new_token();
    srv.st
        .store
        .put_grant(
            "otel-2",
            Grant::Ingest,
            &oncall::server::auth::token_sha(&other),
        )
        .await
        .unwrap();
    // Within the rate, a malformed body is decoded and refused (400)...
    let mut codes = vec![];
    for _ in 0..3 {
        let r = send_traces(&srv, &ingest, "application/x-protobuf", vec![0xff; 64]).await;
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [400, 400, 400]);
    // ...beyond it, 429 without reading the body: even one over the body limit is not 413.
    // The server answers and closes without reading the body, so the client may lose the
    // answer to a reset while it is still sending; the server's own count then shows the 429.
    // Its own client: a connection the server reset must not be reused for the next request.
    let sent = reqwest::Client::new()
        .post(srv.url("/v1/traces"))
        .bearer_auth(&ingest)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff; 128 << 10])
        .send()
        .await;
    match sent {
        Ok(r) => {
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()["retry-after"], "1");
            assert!(
                r.text()
                    .await
                    .unwrap()
                    .contains("otel sent more than 3 requests per second")
            );
        }
        Err(e) => eprintln!("the client lost the answer to a reset: {e}"),
    }
    let m = srv.metrics(OPERATOR).await;
    assert!(
        m.contains("route=\"/v1/traces\",method=\"POST\",status=\"429\"} 1"),
        "the server did not answer 429:\n{m}"
    );
    assert!(!m.contains("status=\"413\""), "{m}");
    // The limit is per token.
    let r = send_traces(
        &srv,
        &other,
        "application/json",
        otlp_json("payments").to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 200);
}

/// The OpenTelemetry SDK's Python, or None (and a SKIPPED line) outside CI.
fn python() -> Option<PathBuf> {
    common::venv_python("opentelemetry.sdk")
}

/// The `export NAME=VALUE` lines of docs/server.md's shell block that sets
/// OTEL_EXPORTER_OTLP_HEADERS, as (NAME, VALUE) with the quotes removed.
fn documented_exporter_lines() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/server.md"))
            .unwrap();
    let at = readme
        .find("export OTEL_EXPORTER_OTLP_HEADERS=")
        .expect("docs/server.md sets OTEL_EXPORTER_OTLP_HEADERS");
    let start = readme[..at].rfind("```sh\n").expect("its shell block") + "```sh\n".len();
    let end = start + readme[start..].find("```").expect("its end");
    readme[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_exporter_lines_send_traces_through_the_real_sdk_with_an_ingest_token() {
    let lines = documented_exporter_lines();
    let names: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "ONCALL_INGEST_TOKEN",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS"
        ]
    );
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The token, made as the README makes it: `oncall token add ...` (its stdout is the token).
    let make = &lines[0].1;
    let args = make
        .strip_prefix("$(cargo run --release -- ")
        .and_then(|c| c.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{make}: not `$(cargo run --release -- ...)`"));
    let out = std::process::Command::new(common::ONCALL)
        .args(args.split_whitespace())
        .env("ONCALL_SERVER__DATA_DIR", dir.path())
        .env_remove("ONCALL_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("oc_"), "{token}");
    let mut cfg = Config::default();
    cfg.server.data_dir = dir.path().to_path_buf();
    let srv = start(cfg).await;
    let endpoint = lines[1].1.replace("http://127.0.0.1:4318", &srv.base);
    let headers = lines[2].1.replace("$ONCALL_INGEST_TOKEN", &token);
    assert_eq!(headers, format!("Authorization=Bearer%20{token}"));
    let export = |headers: String| {
        let (py, endpoint) = (py.clone(), endpoint.clone());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/otel/export_env.py");
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(py)
                .arg(script)
                .arg("storefront")
                .env_clear()
                .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
                .env("OTEL_EXPORTER_OTLP_HEADERS", headers)
                .env("OTEL_EXPORTER_OTLP_TIMEOUT", "5")
                .output()
                .unwrap()
        })
    };
    let out = export(headers).await.unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK's export failed: {said}");
    assert_eq!(said.lines().next(), Some("SUCCESS"), "{said}");
    assert_eq!(srv.st.spans.stats().spans, 1, "the span is stored");
    // The same token reads nothing.
    let (s, v) = srv.get(&token, "/api/v1/incidents").await;
    assert_eq!(s, 403, "{v}");
    // And a wrong token through the same SDK is refused.
    let out = export("Authorization=Bearer%20oc_wrong".into())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(srv.st.spans.stats().spans, 1);
}

// ---------------------------------------------------------------------------------------------
// Wrong tokens

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is this machine).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_from_one_address_get_429_and_other_addresses_are_served() {
    let mut cfg = Config::default();
    cfg.server.max_auth_failures = 5;
    cfg.server.auth_failure_window_s = 60;
    let srv = start(cfg).await;
    let good = srv.token("vi", Role::Viewer).await;
    let (guesser, neighbour) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let me =
        |c: &reqwest::Client, token: &str| c.get(srv.url("/api/v1/me")).bearer_auth(token).send();
    for i in 0..5 {
        let r = me(&guesser, &format!("oc_guess_{i}")).await.unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = me(&guesser, "oc_guess_5").await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let v: Value = r.json().await.unwrap();
    assert!(
        error_of(&v).contains("127.0.0.2") && error_of(&v).contains("max_auth_failures"),
        "{v}"
    );
    // A lucky guess is not confirmed: the right token from that address is refused too.
    let r = me(&guesser, &good).await.unwrap();
    assert_eq!(r.status(), 429);
    // Another address is not affected, with the right token or a wrong one.
    let r = me(&neighbour, &good).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = me(&neighbour, "oc_typo").await.unwrap();
    assert_eq!(r.status(), 401);
}

// ---------------------------------------------------------------------------------------------
// Per-caller caps

/// Opens an incident's event stream for `token`, from a client of its own.
async fn open_stream(srv: &Srv, token: &str, id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(srv.url(&format!("/api/v1/incidents/{id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_streams_are_capped_and_a_closed_stream_frees_its_slot() {
    let mut cfg = Config::default();
    cfg.server.max_streams_per_user = 2;
    let srv = start(cfg).await;
    let ana = srv.token("ana", Role::Viewer).await;
    let bo = srv.token("bo", Role::Viewer).await;
    let re = srv.token("re", Role::Responder).await;
    let (a, b) = (
        srv.open_incident(&re, QUIET).await,
        srv.open_incident(&re, "checkout p99 above 2s").await,
    );
    let first = open_stream(&srv, &ana, &a).await;
    let second = open_stream(&srv, &ana, &b).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open_stream(&srv, &ana, &a).await;
    assert_eq!(third.status(), 429);
    let v: Value = third.json().await.unwrap();
    let e = error_of(&v);
    assert!(
        e.contains("max_streams_per_user = 2")
            && e.contains(&format!("incident {a}"))
            && e.contains(&format!("incident {b}")),
        "{e}"
    );
    let other = open_stream(&srv, &bo, &a).await;
    assert_eq!(other.status(), 200, "another caller is unaffected");
    // Closing a stream (dropping its connection) frees its slot.
    drop(first);
    until(
        "ana's closed stream to free its slot",
        Duration::from_secs(20),
        async || srv.st.streams_of("ana") == 1,
    )
    .await;
    let again = open_stream(&srv, &ana, &a).await;
    assert_eq!(again.status(), 200);
    drop((second, again, other));
    until(
        "every stream to be freed",
        Duration::from_secs(20),
        async || srv.st.streams_of("ana") + srv.st.streams_of("bo") == 0,
    )
    .await;
}

/// TEST DOUBLE for a paid model: an OpenAI-compatible chat endpoint that holds every request
/// until released, then answers each with a plain final answer.
struct HeldModel {
    base_url: String,
    waiting: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldModel {
    async fn start() -> HeldModel {
        use axum::routing::post;
        let waiting = Arc::new(AtomicUsize::new(0));
        let (release, rx) = tokio::sync::watch::channel(false);
        let w = waiting.clone();
        let chat = move || {
            let (w, mut rx) = (w.clone(), rx.clone());
            async move {
                w.fetch_add(1, Ordering::SeqCst);
                let _ = rx.wait_for(|open| *open).await;
                w.fetch_sub(1, Ordering::SeqCst);
                axum::Json(json!({
                    "id": "x", "object": "chat.completion", "created": 1, "model": "held",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
                }))
            }
        };
        let app = axum::Router::new().route("/v1/chat/completions", post(chat));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        HeldModel {
            base_url: format!("http://{addr}/v1"),
            waiting,
            release,
        }
    }

    fn config(&self) -> Config {
        let mut c = Config::default();
        c.llm.provider = Provider::Openai;
        c.llm.base_url = self.base_url.clone();
        c.llm.model = "held".into();
        c.llm.api_key_env = "ONCALL_TEST_NO_KEY".into();
        c.llm.timeout_s = 120;
        c.llm.deadline_s = 240;
        c.llm.max_steps = 1;
        c.server.request_timeout_s = 120;
        c
    }

    fn hold(&self, held: bool) {
        self.release.send_replace(!held);
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// Starts a triage for `token` in the background; resolves to its status.
fn triage(srv: &Srv, token: &str) -> tokio::task::JoinHandle<u16> {
    let (http, url, token) = (
        srv.http.clone(),
        srv.url("/api/v1/triage"),
        token.to_string(),
    );
    tokio::spawn(async move {
        http.post(url)
            .bearer_auth(token)
            .json(&json!({"report": QUIET}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
}

/// Both triages answered (the model's plain answer may make an investigation fail: 500), none
/// refused.
async fn finished(a: tokio::task::JoinHandle<u16>, b: tokio::task::JoinHandle<u16>) {
    for t in [a, b] {
        let s = t.await.unwrap();
        assert!(s == 200 || s == 500, "a held triage answered {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_investigations_are_capped_on_every_path_and_another_caller_is_unaffected() {
    let model = HeldModel::start().await;
    let mut cfg = model.config();
    cfg.server.max_investigations_per_user = 2;
    cfg.server.max_investigations = 8;
    let srv = start(cfg).await;
    let ana = srv.token("ana", Role::Responder).await;
    let bo = srv.token("bo", Role::Responder).await;
    let over_cap = |what: &str, (s, v): (u16, Value), running: &str| {
        assert_eq!(s, 429, "{what}: {v}");
        let e = error_of(&v);
        assert!(
            e.contains("max_investigations_per_user = 2") && e.contains(running),
            "{what}: {e}"
        );
    };

    // Two triages of ana's in flight (held in the model): her cap.
    let (t1, t2) = (triage(&srv, &ana), triage(&srv, &ana));
    until(
        "ana's two triages to be in the model",
        Duration::from_secs(30),
        async || model.waiting() == 2,
    )
    .await;
    assert_eq!(srv.st.investigations_of("ana"), 2);
    let n = srv.st.store.list(100).await.unwrap().len();
    over_cap(
        "a third triage",
        srv.post(&ana, "/api/v1/triage", json!({"report": QUIET}))
            .await,
        "triage ×2",
    );
    over_cap(
        "record",
        srv.post(&ana, "/api/v1/record", json!({"id": "c1", "report": QUIET}))
            .await,
        "triage ×2",
    );
    over_cap(
        "open an incident",
        srv.post(&ana, "/api/v1/incidents", json!({"report": QUIET}))
            .await,
        "triage ×2",
    );
    over_cap(
        "an alert",
        srv.post(
            &ana,
            "/api/v1/alerts",
            json!({"alerts": [{"labels": {"alertname": "HighLatency"}}]}),
        )
        .await,
        "triage ×2",
    );
    assert_eq!(
        srv.st.store.list(100).await.unwrap().len(),
        n,
        "nothing opened"
    );
    // Another caller is unaffected: bo opens an incident; its round waits in the model too.
    let b = srv.open_incident(&bo, QUIET).await;
    until(
        "bo's round to be in the model",
        Duration::from_secs(30),
        async || model.waiting() == 3,
    )
    .await;
    // A message to an incident whose round runs starts nothing, so it is not refused.
    let (s, v) = srv
        .post(
            &ana,
            &format!("/api/v1/incidents/{b}/messages"),
            json!({"text": "also 502s"}),
        )
        .await;
    assert_eq!((s, v["investigating"].clone()), (202, json!(false)), "{v}");

    // Finished investigations free their slots.
    model.hold(false);
    finished(t1, t2).await;
    until(
        "ana's slots to be freed",
        Duration::from_secs(30),
        async || srv.st.investigations_of("ana") == 0,
    )
    .await;
    wait_for(&srv, &bo, &b, Duration::from_secs(60), "bo's round", |e| {
        e.last().is_some_and(|l| l["data"]["status"] == "waiting")
    })
    .await;
    until(
        "bo's slot to be freed",
        Duration::from_secs(30),
        async || srv.st.investigations_of("bo") == 0,
    )
    .await;

    // At her cap again, a message that would start a round, and a resume, are refused, and the
    // message is not stored.
    model.hold(true);
    let (t1, t2) = (triage(&srv, &ana), triage(&srv, &ana));
    until(
        "ana's triages to be in the model again",
        Duration::from_secs(30),
        async || model.waiting() == 2,
    )
    .await;
    let events = srv.st.store.events(&b, 0, 100_000).await.unwrap().len();
    over_cap(
        "a message",
        srv.post(
            &ana,
            &format!("/api/v1/incidents/{b}/messages"),
            json!({"text": "and now?"}),
        )
        .await,
        "triage ×2",
    );
    over_cap(
        "resume",
        srv.post(&ana, &format!("/api/v1/incidents/{b}/resume"), json!({}))
            .await,
        "triage ×2",
    );
    assert_eq!(
        srv.st.store.events(&b, 0, 100_000).await.unwrap().len(),
        events
    );
    let (s, v) = srv
        .post(&bo, &format!("/api/v1/incidents/{b}/resume"), json!({}))
        .await;
    assert_eq!(s, 202, "bo is unaffected: {v}");
    model.hold(false);
    finished(t1, t2).await;
    let (s, v) = srv
        .post(&ana, "/api/v1/incidents", json!({"report": QUIET}))
        .await;
    assert_eq!(s, 202, "a freed slot opens again: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_answers_an_over_long_text_and_a_user_at_the_cap_with_an_ephemeral_reply() {
    const SECRET_ENV: &str = "ONCALL_LIMITS_TEST_SLACK_SIGNING_SECRET";
    const SECRET: &str = "limits-test-signing-secret";
    // nextest runs each test in its own process; the variable's name is this test's own.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    let model = HeldModel::start().await;
    let mut cfg = model.config();
    cfg.server.max_investigations_per_user = 1;
    cfg.slack.signing_secret_env = SECRET_ENV.into();
    cfg.slack.bot_token_env = "ONCALL_LIMITS_TEST_UNSET_SLACK_BOT_TOKEN".into();
    let srv = start(cfg).await;
    let command = |text: String| {
        let body = serde_urlencoded::to_string([
            ("command", "/oncall"),
            ("text", text.as_str()),
            ("user_id", "U1"),
            ("channel_id", "C1"),
            ("response_url", "https://example.invalid/r"),
        ])
        .unwrap();
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = oncall::server::slack::sign(SECRET, &ts, body.as_bytes()).unwrap();
        let r = srv
            .http
            .post(srv.url("/slack/commands"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(oncall::server::slack::HEADER_TIMESTAMP, ts)
            .header(oncall::server::slack::HEADER_SIGNATURE, sig)
            .body(body)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let long = "x".repeat(limits::SLACK_TEXT_CHARS + 1);
    let (s, v) = command(long).await;
    assert_eq!(
        (s, v["response_type"].clone()),
        (200, json!("ephemeral")),
        "{v}"
    );
    assert_eq!(
        v["text"],
        format!(
            "text is {} characters; the limit is {}",
            limits::SLACK_TEXT_CHARS + 1,
            limits::SLACK_TEXT_CHARS
        )
    );
    assert!(
        srv.st.store.list(10).await.unwrap().is_empty(),
        "nothing opened"
    );
    let (s, v) = command(QUIET.into()).await;
    assert_eq!(
        (s, v["response_type"].clone()),
        (200, json!("in_channel")),
        "{v}"
    );
    until(
        "the Slack round to be in the model",
        Duration::from_secs(30),
        async || model.waiting() == 1,
    )
    .await;
    let (s, v) = command("checkout is down".into()).await;
    assert_eq!(
        (s, v["response_type"].clone()),
        (200, json!("ephemeral")),
        "{v}"
    );
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("slack:U1 has 1 investigations open (incident ")
            && text.contains("max_investigations_per_user = 1"),
        "{text}"
    );
    assert_eq!(
        srv.st.store.list(10).await.unwrap().len(),
        1,
        "one incident only"
    );
    model.hold(false);
    until(
        "the slot to be freed",
        Duration::from_secs(60),
        async || srv.st.investigations_of("slack:U1") == 0,
    )
    .await;
}
