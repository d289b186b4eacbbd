//! oncall's own traces over OTLP: `oncall triage` with the standard OpenTelemetry variables set
//! exports its spans (the real OpenTelemetry SDK and OTLP/HTTP exporter) to a receiver, with the
//! credentials from `OTEL_EXPORTER_OTLP_HEADERS`. The receiver here is this test's own small
//! HTTP endpoint decoding the protobuf body with oncall's OTLP decoder.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use oncall::collectors::traces::otlp::{Format, decode};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What the receiver saw: one entry per request (its authorization header, its raw body).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receiver() -> (String, Seen) {
    async fn take(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        seen.lock().unwrap().push((auth, body.to_vec()));
        StatusCode::OK
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(take))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// A span: its name and its attributes as text.
#[derive(Debug)]
struct Span {
    name: String,
    attrs: BTreeMap<String, String>,
    trace: Vec<u8>,
    parent: Vec<u8>,
    id: Vec<u8>,
    /// Span events: none, since log lines (which may quote arguments) stay in the log.
    events: usize,
}

fn spans(seen: &Seen) -> (Vec<Span>, Vec<String>) {
    let mut out = vec![];
    let mut services = vec![];
    for (_, body) in seen.lock().unwrap().iter() {
        let req = decode(Format::Protobuf, body).expect("an OTLP protobuf body");
        for rs in req.resource_spans {
            for a in rs.resource.iter().flat_map(|r| r.attributes.iter()) {
                if a.key == "service.name" {
                    services.push(format!("{:?}", a.value));
                }
            }
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attrs = s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), format!("{:?}", a.value)))
                        .collect();
                    out.push(Span {
                        name: s.name,
                        attrs,
                        trace: s.trace_id,
                        parent: s.parent_span_id,
                        id: s.span_id,
                        events: s.events.len(),
                    });
                }
            }
        }
    }
    (out, services)
}

const SECRET: &str = "hunter2-not-for-traces";
/// A plain word of the report that no redactor would touch: it must not reach a span either.
const MARKER: &str = "zebracornish";

#[tokio::test(flavor = "multi_thread")]
async fn triage_exports_its_own_spans_over_otlp_with_the_configured_credentials() {
    let (url, seen) = receiver().await;
    let report = format!("checkout is slow for {MARKER} users; db password={SECRET}");
    let (code, _out, err) = tokio::task::spawn_blocking(move || {
        common::oncall(
            &["triage", &report],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20ingest-token-1",
                ),
                ("OTEL_SERVICE_NAME", "oncall-under-test"),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    // Sent before the command exited: the exporter is flushed when the command ends.
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty(), "no export arrived; stderr:\n{err}");
    for (auth, body) in &requests {
        assert_eq!(auth, "Bearer ingest-token-1");
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains(SECRET), "the report reached a span");
        assert!(!text.contains(MARKER), "the report's words reached a span");
    }
    let (spans, services) = spans(&seen);
    assert!(
        services.iter().all(|s| s.contains("oncall-under-test")) && !services.is_empty(),
        "{services:?}"
    );
    let named = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let tools = named("tool_call");
    assert!(
        tools.iter().any(|s| s
            .attrs
            .get("tool")
            .is_some_and(|t| t.contains("host.use_snapshot"))),
        "{tools:?}"
    );
    assert!(tools.iter().all(|s| s.attrs.contains_key("ms")));
    let models = named("model_call");
    assert!(!models.is_empty(), "no model_call span in {spans:?}");
    assert!(
        models
            .iter()
            .all(|s| s.attrs.contains_key("prompt_tokens") && s.attrs.contains_key("ms")),
        "{models:?}"
    );
    let inv = named("investigation");
    assert_eq!(inv.len(), 1, "{spans:?}");
    let root = inv[0];
    assert!(root.attrs.contains_key("reasoner"), "{root:?}");
    // Every tool and model call belongs to the investigation's trace, under its span.
    for s in tools.iter().chain(models.iter()) {
        assert_eq!(s.trace, root.trace, "{} in another trace", s.name);
    }
    assert!(models.iter().all(|m| m.parent == root.id));
    // Only oncall's spans: the exporter's own HTTP client is never traced, and log lines never
    // become span events.
    for s in &spans {
        assert_eq!(s.events, 0, "{} carries log events", s.name);
        assert!(
            ["investigation", "model_call", "tool_call"].contains(&s.name.as_str()),
            "unexpected span {}",
            s.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_traces_endpoint_alone_turns_the_export_on_and_the_sdk_switch_turns_it_off() {
    let run = |url: String, disabled: bool| async move {
        let (code, _, err) = tokio::task::spawn_blocking(move || {
            let endpoint = format!("{url}/v1/traces");
            let mut env = vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str())];
            if disabled {
                env.push(("OTEL_SDK_DISABLED", "true"));
            }
            common::oncall(&["triage", "checkout is slow"], &env)
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{err}");
    };
    let (url, seen) = receiver().await;
    run(url, false).await;
    assert!(
        !spans(&seen).0.is_empty(),
        "nothing arrived at the traces endpoint"
    );
    let (url, seen) = receiver().await;
    run(url, true).await;
    assert!(seen.lock().unwrap().is_empty(), "exported while disabled");
}

/// Under `oncall serve`, each round of investigation is an `incident_round` span naming the
/// incident and the round, with the investigation under it.
#[tokio::test(flavor = "multi_thread")]
async fn serve_traces_each_round_under_its_incident() {
    let (url, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let srv = common::serve::Serve::start(
        &dir.path().join("data"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url),
            ("ONCALL_HOST__WINDOW_MS", "200".into()),
        ],
    )
    .await
    .expect("oncall serve");
    let (s, v) = srv
        .post(
            "/api/v1/incidents",
            serde_json::json!({"report": "checkout is slow"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let id = serde_json::from_str::<serde_json::Value>(&v).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The batch goes out every few seconds while the server runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (round, inv) = loop {
        let (spans, _) = spans(&seen);
        let round = spans.iter().find(|s| s.name == "incident_round").map(|r| {
            (
                r.attrs.get("incident").cloned().unwrap_or_default(),
                r.id.clone(),
                r.trace.clone(),
            )
        });
        let inv = spans
            .iter()
            .find(|s| s.name == "investigation")
            .map(|i| (i.parent.clone(), i.trace.clone()));
        if let (Some(r), Some(i)) = (round, inv) {
            break (r, i);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no round traced: {spans:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(round.0.contains(&id), "{} is not {id}", round.0);
    assert_eq!(
        (inv.0, inv.1),
        (round.1, round.2),
        "the investigation is not under its round"
    );
}
