//! Running oncall's server in the test process and talking to it like a client would.

use oncall::config::Config;
use oncall::policy::Role;
use oncall::server::AppState;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const OPERATOR: &str = "operator-token-for-tests";

pub struct Srv {
    pub base: String,
    pub st: Arc<AppState>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// Starts the real server (store, desk, routes) on a free loopback port.
pub async fn start(mut cfg: Config) -> Srv {
    let dir = tempfile::tempdir().expect("tempdir");
    if cfg.server.data_dir == Config::default().server.data_dir {
        cfg.server.data_dir = dir.path().to_path_buf();
    }
    let st = AppState::start(Arc::new(cfg), Some(OPERATOR))
        .await
        .expect("server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // As `oncall serve` serves it: with each connection's peer address (per-address limits).
    let app = oncall::server::app(st.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Srv {
        base: format!("http://{addr}"),
        st,
        dir,
        http: reqwest::Client::new(),
    }
}

impl Srv {
    /// A stored token for `name` with `role`.
    pub async fn token(&self, name: &str, role: Role) -> String {
        let t = oncall::server::auth::new_token();
        self.st
            .store
            .put_token(name, role, &oncall::server::auth::token_sha(&t))
            .await
            .expect("put token");
        t
    }

    /// Opens an incident from a report (202) and returns its id.
    pub async fn open_incident(&self, token: &str, report: &str) -> String {
        let (status, v) = self
            .post(
                token,
                "/api/v1/incidents",
                serde_json::json!({ "report": report }),
            )
            .await;
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self, token: &str) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("metrics text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Reads an incident's event stream (SSE) until an event of kind `until` arrives (or `timeout`).
/// Returns every event seen, as (sse id, event).
pub async fn stream_until(
    base: &str,
    token: &str,
    incident: &str,
    last_event_id: Option<i64>,
    until: &str,
    timeout: Duration,
) -> Vec<(i64, Value)> {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/api/v1/incidents/{incident}/events"))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let mut resp = req.send().await.expect("stream");
    assert_eq!(resp.status().as_u16(), 200, "the stream opens");
    let deadline = Instant::now() + timeout;
    let mut buf = String::new();
    let mut out = vec![];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let msg: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in msg.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str::<Value>(v).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                let done = data["kind"] == until;
                out.push((id, data));
                if done {
                    return out;
                }
            }
        }
    }
    out
}

/// Polls the incident until `pred` holds for its events (or panics after `timeout`).
pub async fn wait_for(
    srv: &Srv,
    token: &str,
    incident: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, v) = srv
            .get(token, &format!("/api/v1/incidents/{incident}"))
            .await;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        if pred(&events) {
            return events;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; events: {}",
                events
                    .iter()
                    .map(|e| format!("{} {} {}", e["seq"], e["kind"], e["data"]))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}
