//! `oncall serve`: the HTTP server. Today it receives OpenTelemetry traces (OTLP/HTTP at
//! `POST /v1/traces`) into the bounded span store, answers `GET /healthz`, runs investigations
//! that can use those traces (`POST /api/v1/triage`), and records eval cases from them
//! (`POST /api/v1/record`).
//!
//! Every entry point except `/healthz` needs `Authorization: Bearer <token>`, the token taken
//! from the variable that `[server] token_env` names. Bodies are size-limited (also after gzip
//! decompression), OTLP exports beyond the concurrency bound get 503 and beyond the span rate
//! get 429, both with Retry-After, as the OTLP/HTTP spec asks. Handlers are thin: they decode,
//! call the domain code, and map its errors to status codes.

mod otlp;

use crate::agent::events::Silent;
use crate::collectors::traces::store::SpanStore;
use crate::config::Config;
use crate::tool::Registry;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use tower_http::decompression::RequestDecompressionLayer;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason} (set [server] listen or ONCALL_SERVER__LISTEN)")]
    Bind { addr: String, reason: String },
    #[error("the server stopped: {0}")]
    Serve(String),
}

/// A token bucket for spans per second.
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, n: f64) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        // A batch larger than one second's worth passes when the bucket is full, so it is
        // slowed down, not refused forever.
        if self.tokens >= n || self.tokens >= self.rate {
            self.tokens = (self.tokens - n).max(-self.rate);
            true
        } else {
            false
        }
    }
}

/// What every handler shares.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<SpanStore>,
    pub registry: Registry,
    token_sha: [u8; 32],
    exports: Semaphore,
    spans_per_s: Mutex<Bucket>,
}

impl AppState {
    /// State for a server that requires `token`.
    pub fn new(config: Arc<Config>, token: &str) -> Arc<AppState> {
        let store = Arc::new(SpanStore::new(
            config.traces.max_bytes as usize,
            config.traces.retention_s,
        ));
        let rate = config.server.max_spans_per_s as f64;
        Arc::new(AppState {
            registry: Registry::with_span_store(config.clone(), Some(store.clone())),
            store,
            token_sha: Sha256::digest(token.trim().as_bytes()).into(),
            exports: Semaphore::new(config.server.max_concurrent_exports.max(1)),
            spans_per_s: Mutex::new(Bucket {
                tokens: rate,
                rate,
                at: Instant::now(),
            }),
            config,
        })
    }

    /// Whether the headers carry the server's token. Compares digests, so the time taken does
    /// not depend on how much of the token was right.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let d: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        d.iter()
            .zip(self.token_sha.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

async fn require_token(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if st.authorized(req.headers()) {
        next.run(req).await
    } else {
        let mut r = (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": "missing or wrong bearer token: send Authorization: Bearer <token>"}))).into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// What an API handler can answer besides success. The client gets a plain message; the detail
/// of an internal failure goes to the log only.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Internal(detail) => {
                tracing::error!("{detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the request failed inside oncall; see the server log".to_string(),
                )
            }
        };
        (status, Json(serde_json::json!({"error": message}))).into_response()
    }
}

/// The JSON body, or a 400 that says what to send.
fn body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::BadRequest(format!("{e}: send {expected}")))
}

fn model(st: &AppState) -> Result<Box<dyn crate::llm::ChatModel>, ApiError> {
    crate::llm::build(&st.config).map_err(|e| ApiError::Internal(format!("model: {e}")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TriageRequest {
    report: String,
}

/// Runs an investigation on this server (host, databases and the traces it received).
async fn triage(
    State(st): State<Arc<AppState>>,
    b: Result<Json<TriageRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"report": "..."}"#)?;
    let model = model(&st)?;
    match crate::agent::investigate(
        &req.report,
        &st.registry,
        &st.config,
        model.as_ref(),
        &Silent,
    )
    .await
    {
        Ok(inv) => Ok(Json(inv).into_response()),
        Err(crate::agent::AgentError::EmptyReport) => {
            Err(ApiError::BadRequest("the report is empty".into()))
        }
        Err(e) => Err(ApiError::Internal(format!("investigation failed: {e}"))),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRequest {
    id: String,
    report: String,
}

/// Records an eval case from this server's live collectors, traces included (truth left empty).
async fn record(
    State(st): State<Arc<AppState>>,
    b: Result<Json<RecordRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"id": "...", "report": "..."}"#)?;
    if req.report.trim().is_empty() || req.id.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "id and report must not be empty".into(),
        ));
    }
    let model = model(&st)?;
    crate::eval::record::record(
        &req.id,
        &req.report,
        &st.config,
        &st.registry,
        model.as_ref(),
        |m| tracing::info!("record: {m}"),
    )
    .await
    .map(|case| Json(case).into_response())
    .map_err(|e| ApiError::Internal(format!("recording failed: {e}")))
}

/// The router, testable without a socket.
pub fn app(st: Arc<AppState>) -> Router {
    let limit = st.config.server.max_body_bytes;
    let protected = Router::new()
        .route("/v1/traces", post(otlp::export))
        .route("/api/v1/triage", post(triage))
        .route("/api/v1/record", post(record))
        .layer(middleware::from_fn_with_state(st.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        // The limit applies to the decompressed body too: the decompression layer sits outside it.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestDecompressionLayer::new())
        .with_state(st)
}

/// Binds and serves until the process ends.
pub async fn serve(config: Arc<Config>, token: &str) -> Result<(), ServerError> {
    let addr = config.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| ServerError::Bind {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    eprintln!(
        "oncall serve: listening on http://{local} (POST /v1/traces, POST /api/v1/triage, GET /healthz)"
    );
    axum::serve(listener, app(AppState::new(config, token)))
        .await
        .map_err(|e| ServerError::Serve(e.to_string()))
}
