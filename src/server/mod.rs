//! `oncall serve`: the copilot people talk to, from a web page, Slack and the API.
//!
//! - [`auth`]: bearer tokens with roles (viewer < responder < approver), stored hashed; per-caller
//!   rate limits. Every entry point checks its caller except `/healthz` and the sign-in page;
//!   Slack's routes check Slack's signature instead.
//! - `api`: incidents (open from a report or an Alertmanager webhook, read, message, resume),
//!   action requests and decisions, the post-mortem draft, tools, OpenAPI, readiness, metrics.
//! - `bus`: every stored event, for the subscribers below; the runner writes events and knows
//!   none of them.
//! - `sse`: an incident's events live, resumable with `Last-Event-ID` (the web page and API
//!   clients).
//! - `runner`: investigations and approved actions in the background, every step an event.
//! - [`slack`] (verification, parsing, messages, Web API client) and `slack_bridge` (routes, and
//!   the subscriber that posts an incident's events into its thread).
//! - [`metrics`]: Prometheus text at `/metrics`.
//! - `otlp`: OpenTelemetry traces in (`POST /v1/traces`) to the bounded span store.
//! - [`limits`]: the longest text each field may carry, and what one caller may hold open
//!   (event streams, investigations).
//!
//! Around the routes (tower): request tracing, a timeout (503), body-size limits also after gzip
//! decompression (413), response compression, and a concurrency bound that answers 503 at once
//! instead of queueing. Handlers are thin: they decode, call the domain code, and map its errors
//! to status codes.

mod api;
pub mod auth;
mod bus;
pub mod limits;
pub mod metrics;
mod otlp;
mod replicas;
mod runner;
pub mod slack;
mod slack_bridge;
mod sse;

use crate::agent::events::Silent;
use crate::collectors::traces::store::SpanStore;
use crate::config::Config;
use crate::desk::Desk;
use crate::incidents::{EventKind, Store};
use crate::policy::audit::AuditLog;
use crate::registry::Registry;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Semaphore, watch};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason} (set [server] listen or ONCALL_SERVER__LISTEN)")]
    Bind { addr: String, reason: String },
    #[error("the server stopped: {0}")]
    Serve(String),
    #[error("the server cannot start: {0}")]
    Setup(String),
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

/// The incidents with a round of investigation running here. Its lock's guard tells watchers
/// when the set changed (when dropped), so a caller's investigation slot is freed the moment
/// the round leaves the set, however it ended.
pub(crate) struct RunningSet {
    set: Mutex<HashSet<String>>,
    changed: watch::Sender<()>,
}

/// The locked set; dropping it wakes the watchers of [`RunningSet::subscribe`] (they read the
/// set once this guard has released it).
pub(crate) struct RunningGuard<'a> {
    set: std::sync::MutexGuard<'a, HashSet<String>>,
    changed: &'a watch::Sender<()>,
}

impl std::ops::Deref for RunningGuard<'_> {
    type Target = HashSet<String>;
    fn deref(&self) -> &HashSet<String> {
        &self.set
    }
}

impl std::ops::DerefMut for RunningGuard<'_> {
    fn deref_mut(&mut self) -> &mut HashSet<String> {
        &mut self.set
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.changed.send_replace(());
    }
}

impl RunningSet {
    fn new() -> RunningSet {
        RunningSet {
            set: Mutex::new(HashSet::new()),
            changed: watch::channel(()).0,
        }
    }

    pub(crate) fn lock(&self) -> Result<RunningGuard<'_>, String> {
        let set = self
            .set
            .lock()
            .map_err(|_| "the set of running investigations is unavailable".to_string())?;
        Ok(RunningGuard {
            set,
            changed: &self.changed,
        })
    }

    pub(crate) fn contains(&self, incident: &str) -> bool {
        self.set
            .lock()
            .map(|s| s.contains(incident))
            .unwrap_or(false)
    }

    fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// What every handler shares.
pub struct AppState {
    pub config: Arc<Config>,
    /// The embedded span store OTLP exports fill.
    pub spans: Arc<SpanStore>,
    pub registry: Registry,
    /// Incident memory (resolved incidents, searched by `memory.similar`); none if it could not
    /// be opened (the reason is logged at start).
    pub memory: Option<Arc<crate::memory::Memory>>,
    /// Incidents: the append-only event logs.
    pub store: Arc<dyn Store>,
    /// Action requests, decisions and executions (audited).
    pub desk: Arc<Desk>,
    pub audit: Arc<AuditLog>,
    pub metrics: Arc<metrics::Metrics>,
    /// This replica's name; it owns the investigations it runs.
    pub replica: String,
    /// Every event this replica stored, for its subscribers: the event streams and Slack.
    bus: bus::Bus,
    /// Incidents with a round of investigation running here.
    running: RunningSet,
    investigations: Semaphore,
    streams: Arc<Semaphore>,
    /// Open event streams per caller (`[server] max_streams_per_user`).
    streams_per_caller: Arc<limits::PerCaller>,
    /// Investigations running or waiting per caller (`[server] max_investigations_per_user`).
    investigations_per_caller: Arc<limits::PerCaller>,
    /// Wrong tokens per source address (`[server] max_auth_failures`).
    auth_failures: auth::AuthFailures,
    operator_sha: Option<String>,
    token_cache: auth::TokenCache,
    limiter: auth::Limiter,
    slack: Option<Arc<slack_bridge::Bridge>>,
    exports: Semaphore,
    spans_per_s: Mutex<Bucket>,
}

impl AppState {
    /// Opens the incident store (running its migrations) and the audit log, loads tools and
    /// policy, and marks investigations this replica left unfinished as interrupted.
    /// `operator_token`, when given, is accepted as `admin` with the approver role.
    pub async fn start(
        config: Arc<Config>,
        operator_token: Option<&str>,
    ) -> Result<Arc<AppState>, ServerError> {
        let s = &config.server;
        let (store, store_pool) = crate::incidents::open_configured(s)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        let audit_path = config
            .policy
            .audit_file
            .clone()
            .unwrap_or_else(|| s.data_dir.join("audit.jsonl"));
        let audit =
            Arc::new(AuditLog::open(&audit_path).map_err(|e| ServerError::Setup(e.to_string()))?);
        let spans = Arc::new(SpanStore::new(
            config.traces.max_bytes as usize,
            config.traces.retention_s,
        ));
        let mut registry = crate::app::load_registry(config.clone(), Some(spans.clone()))
            .map_err(ServerError::Setup)?;
        let memory = match crate::memory::Memory::open(&config, store.clone()).await {
            Ok(m) => {
                let m = Arc::new(m);
                tracing::info!(
                    "incident memory: {} remembered incident(s), {}",
                    m.len().await.unwrap_or(0),
                    m.describe()
                );
                registry = crate::app::with_memory(registry, m.clone());
                Some(m)
            }
            Err(e @ crate::memory::MemoryError::Config(_)) => {
                return Err(ServerError::Setup(e.to_string()));
            }
            Err(e) => {
                tracing::error!("incident memory is unavailable, serving without it: {e}");
                None
            }
        };
        let replica = s
            .replica
            .clone()
            .unwrap_or_else(|| sysinfo::System::host_name().unwrap_or_else(|_| "oncall".into()));
        let desk = Arc::new(
            Desk::new(
                audit.clone(),
                chrono::Duration::seconds(config.policy.approval_ttl_s as i64),
            )
            .waiting(std::time::Duration::from_secs(s.action_wait_s))
            // A Slack user mapped to an oncall user is that person for every approval check.
            .with_identities(crate::policy::Identities::new(
                config
                    .slack
                    .approvers
                    .iter()
                    .map(|(user, name)| (format!("slack:{user}"), name.clone())),
            ))
            // Requests and their executions are claimed in the store every replica shares.
            .with_shared(Arc::new(replicas::StoreShared {
                store: store.clone(),
                replica: replica.clone(),
            })),
        );
        let pg_pools = registry.pg_pools();
        let rate = s.max_spans_per_s as f64;
        let slack = slack_bridge::Bridge::from_config(&config).map(Arc::new);
        let st = Arc::new(AppState {
            spans,
            registry,
            memory,
            store,
            desk,
            audit,
            metrics: Arc::new(metrics::Metrics::with_pools(
                store_pool.into_iter().chain(pg_pools).collect(),
            )),
            replica,
            bus: bus::Bus::new(4096),
            running: RunningSet::new(),
            investigations: Semaphore::new(s.max_investigations.max(1)),
            streams: Arc::new(Semaphore::new(s.max_streams.max(1))),
            streams_per_caller: limits::PerCaller::new(
                "event streams",
                "[server] max_streams_per_user",
                "close one to open another",
                s.max_streams_per_user,
            ),
            investigations_per_caller: limits::PerCaller::new(
                "investigations",
                "[server] max_investigations_per_user",
                "wait for one to finish",
                s.max_investigations_per_user,
            ),
            auth_failures: auth::AuthFailures::new(s.max_auth_failures, s.auth_failure_window_s),
            operator_sha: operator_token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(auth::token_sha),
            token_cache: auth::TokenCache::default(),
            limiter: auth::Limiter::new(s.requests_per_s),
            slack,
            exports: Semaphore::new(s.max_concurrent_exports.max(1)),
            spans_per_s: Mutex::new(Bucket {
                tokens: rate,
                rate,
                at: Instant::now(),
            }),
            config,
        });
        // Slack follows the incidents like any client of the bus, from before the first event.
        slack_bridge::follow(&st);
        // Requests from this replica's audit log that the store does not have yet (a log from
        // before the store kept them), then the store's word on every request.
        replicas::backfill(&st)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        replicas::sync(&st)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        let n = runner::mark_interrupted(&st)
            .await
            .map_err(ServerError::Setup)?;
        if n > 0 {
            tracing::warn!(
                "{n} investigation(s) were interrupted by the last stop; resume them from the incident"
            );
        }
        let unknown = runner::announce_unknown_outcomes(&st)
            .await
            .map_err(ServerError::Setup)?;
        if unknown > 0 {
            tracing::warn!(
                "{unknown} action(s) may or may not have run before the last stop: verify them by hand (see their incidents)"
            );
        }
        if let Err(e) = replicas::beat(&st).await {
            tracing::warn!("replica heartbeat: {e}");
        }
        replicas::watch(st.clone());
        Ok(st)
    }

    /// Appends an event to an incident's log and wakes its streams. Returns once it is stored.
    pub async fn publish(
        &self,
        incident: &str,
        kind: EventKind,
        actor: &str,
        data: serde_json::Value,
    ) -> Result<crate::incidents::Event, crate::incidents::StoreError> {
        let mut data = data;
        crate::redact::redact_value(&mut data);
        let e = self.store.append(incident, kind, actor, data).await?;
        self.bus.event(incident, e.clone());
        Ok(e)
    }

    /// Remembers a resolved incident in incident memory, in the background: its report,
    /// confirmed cause, evidence and what fixed it, then a `remembered` event. Failures are
    /// logged and recorded as the event's error; the resolution itself has already succeeded.
    pub fn remember(self: &Arc<Self>, incident: &str) {
        let Some(memory) = self.memory.clone() else {
            return;
        };
        let (st, id) = (self.clone(), incident.to_string());
        tokio::spawn(async move {
            let done = async {
                let inc = st
                    .store
                    .incident(&id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no incident {id}"))?;
                let events = st
                    .store
                    .events(&id, 0, 100_000)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(doc) = crate::memory::Doc::from_events(&inc, &events) else {
                    return Ok(None);
                };
                let cause = doc.cause.clone();
                memory.remember(doc).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(Some(cause))
            }
            .await;
            let data = match done {
                Ok(None) => return,
                Ok(Some(cause)) => serde_json::json!({"cause": cause, "memory": memory.describe()}),
                Err(e) => {
                    tracing::error!(incident = %id, "could not remember the incident: {e}");
                    serde_json::json!({"error": e, "memory": memory.describe()})
                }
            };
            let _ = st.publish(&id, EventKind::Remembered, "oncall", data).await;
        });
    }

    /// Wakes the event streams of `incident` on this replica (after a write made elsewhere).
    pub(crate) fn wake(&self, incident: &str) {
        self.bus.changed(incident);
    }

    /// Sets an incident's status (a `status_changed` event) and wakes its streams.
    pub async fn set_status(
        &self,
        incident: &str,
        status: crate::incidents::Status,
        severity: Option<&str>,
    ) -> Result<(), crate::incidents::StoreError> {
        let owner =
            (status == crate::incidents::Status::Investigating).then_some(self.replica.as_str());
        self.store
            .set_status(incident, status, severity, owner)
            .await?;
        self.bus.changed(incident);
        Ok(())
    }

    /// A field's length check as the API answers it: a refusal is counted (by field, never
    /// copied) and becomes a 400 naming the field and the limit.
    pub(crate) fn check(&self, r: Result<(), limits::TooLong>) -> Result<(), ApiError> {
        r.map_err(|e| {
            let field = e
                .field
                .split(['[', '.', ' '])
                .next()
                .unwrap_or("")
                .to_string();
            self.metrics.count(
                &self.metrics.refusals,
                &[("reason", "too_long"), ("field", &field)],
            );
            ApiError::TooLong(e)
        })
    }

    /// A slot for one more investigation of `caller` (`what` names it to them when they are at
    /// their cap), or the 429 that names the cap and what they have running.
    pub(crate) fn investigation_slot(
        &self,
        caller: &str,
        what: &str,
    ) -> Result<limits::Slot, limits::OverCap> {
        self.investigations_per_caller
            .acquire(caller, what)
            .inspect_err(|_| {
                self.metrics.count(
                    &self.metrics.refusals,
                    &[("reason", "over_cap"), ("field", "investigations")],
                )
            })
    }

    /// How many investigations `caller` has running or waiting (their slots).
    pub fn investigations_of(&self, caller: &str) -> usize {
        self.investigations_per_caller.held(caller)
    }

    /// How many event streams `caller` has open.
    pub fn streams_of(&self, caller: &str) -> usize {
        self.streams_per_caller.held(caller)
    }
}

/// Starts a round of investigation of `incident` holding `slot` until the round ends (however it
/// ends). False, and the slot freed at once, when a round of it is already running.
pub(crate) fn start_round_holding(st: &Arc<AppState>, incident: &str, slot: limits::Slot) -> bool {
    // Watching before starting: the round cannot leave the set unseen.
    let mut changed = st.running.subscribe();
    if !runner::start_round(st, incident) {
        return false;
    }
    let (st, incident) = (st.clone(), incident.to_string());
    tokio::spawn(async move {
        let _slot = slot;
        while st.running.contains(&incident) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    });
    true
}

async fn healthz() -> &'static str {
    "ok"
}

/// What an API handler can answer besides success. The client gets a plain message; the detail
/// of an internal failure goes to the log only.
#[derive(Debug)]
pub(crate) enum ApiError {
    BadRequest(String),
    /// A field over its maximum: 400 naming the field and the limit.
    TooLong(limits::TooLong),
    /// The caller is at a per-caller cap: 429 naming it and what is open.
    OverCap(limits::OverCap),
    TooLarge(String),
    NotFound(String),
    Forbidden(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl From<crate::incidents::StoreError> for ApiError {
    fn from(e: crate::incidents::StoreError) -> Self {
        match e {
            crate::incidents::StoreError::NoSuchIncident(id) => {
                ApiError::NotFound(format!("no incident {id}"))
            }
            crate::incidents::StoreError::Invalid(m) => ApiError::BadRequest(m),
            other => {
                tracing::error!("incident store: {other}");
                ApiError::Unavailable("the incident store is unavailable; try again".into())
            }
        }
    }
}

impl ApiError {
    /// What the client is told (an internal failure's detail stays in the log).
    pub(crate) fn message(&self) -> String {
        match self {
            ApiError::TooLong(e) => e.to_string(),
            ApiError::OverCap(e) => e.to_string(),
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::NotFound(m)
            | ApiError::Forbidden(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => m.clone(),
            ApiError::Internal(_) => "the request failed inside oncall; see the server log".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::TooLong(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({
                        "error": e.to_string(), "field": e.field, "limit": e.limit,
                    })),
                )
                    .into_response();
            }
            ApiError::OverCap(e) => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(serde_json::json!({"error": e.to_string()})),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                return r;
            }
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Unavailable(m) => {
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({"error": m})),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return r;
            }
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
pub(crate) fn body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "{e}: the most this server takes is [server] max_body_bytes"
            ))
        } else {
            ApiError::BadRequest(format!("{e}: send {expected}"))
        }
    })
}

pub(crate) fn model(st: &AppState) -> Result<Box<dyn crate::llm::ChatModel>, ApiError> {
    crate::app::model(&st.config).map_err(|e| ApiError::Internal(format!("model: {e}")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TriageRequest {
    report: String,
}

/// Runs an investigation on this server (host, databases and the traces it received). It holds
/// one of the caller's investigation slots while it runs (a dropped connection frees it).
async fn triage(
    State(st): State<Arc<AppState>>,
    axum::Extension(c): axum::Extension<auth::Caller>,
    b: Result<Json<TriageRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"report": "..."}"#)?;
    st.check(limits::chars("report", &req.report, limits::REPORT_CHARS))?;
    let _slot = st
        .investigation_slot(&c.name, "triage")
        .map_err(ApiError::OverCap)?;
    let model = model(&st)?;
    match crate::reasoner::investigate(
        &req.report,
        &st.registry,
        &st.config,
        model.as_ref(),
        &Silent,
    )
    .await
    {
        // The answer keeps the raw tool outputs and arguments (the CLI shows them to the one who
        // ran it); over the API they are shown redacted.
        Ok(inv) => {
            let mut v = serde_json::to_value(&inv)
                .map_err(|e| ApiError::Internal(format!("the answer could not be shown: {e}")))?;
            crate::redact::redact_value(&mut v);
            Ok(Json(v).into_response())
        }
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
/// Like triage, it holds one of the caller's investigation slots while it runs.
async fn record(
    State(st): State<Arc<AppState>>,
    axum::Extension(c): axum::Extension<auth::Caller>,
    b: Result<Json<RecordRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"id": "...", "report": "..."}"#)?;
    if req.report.trim().is_empty() || req.id.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "id and report must not be empty".into(),
        ));
    }
    st.check(limits::chars("id", &req.id, limits::RECORD_ID_CHARS))?;
    st.check(limits::chars("report", &req.report, limits::REPORT_CHARS))?;
    let _slot = st
        .investigation_slot(&c.name, "record")
        .map_err(ApiError::OverCap)?;
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
    use crate::policy::Role;
    let s = &st.config.server;
    let limit = s.max_body_bytes;
    let role = |r: Role| middleware::from_fn_with_state((st.clone(), r), auth::require);
    let viewer = Router::new()
        .route("/api/v1/me", get(api::me))
        .route("/api/v1/incidents", get(api::list))
        .route("/api/v1/incidents/{id}", get(api::show))
        .route("/api/v1/incidents/{id}/events", get(sse::events))
        .route("/api/v1/incidents/{id}/postmortem", get(api::postmortem))
        .route("/api/v1/approvals", get(api::approvals))
        .route("/api/v1/tools", get(api::tools))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/metrics", get(api::metrics))
        .route("/readyz", get(api::readyz))
        .layer(role(Role::Viewer));
    let responder = Router::new()
        .route("/api/v1/incidents", post(api::open))
        .route("/api/v1/alerts", post(api::alerts))
        .route("/api/v1/incidents/{id}/messages", post(api::message))
        .route("/api/v1/incidents/{id}/resume", post(api::resume))
        .route("/api/v1/incidents/{id}/actions", post(api::request_action))
        .route("/api/v1/approvals/{id}/withdraw", post(api::withdraw))
        .route(
            "/api/v1/incidents/{id}/postmortem",
            post(api::draft_postmortem),
        )
        .route("/api/v1/incidents/{id}/status", post(api::set_status))
        .route("/api/v1/triage", post(triage))
        .route("/api/v1/record", post(record))
        .layer(role(Role::Responder));
    let approver = Router::new()
        .route("/api/v1/approvals/{id}/decision", post(api::decision))
        .layer(role(Role::Approver));
    // OpenTelemetry exporters: an ingest token (or a responder). Authentication and the rate
    // limit run in this layer, before the handler reads and decodes the body.
    let ingest = Router::new().route("/v1/traces", post(otlp::export)).layer(
        middleware::from_fn_with_state(st.clone(), auth::require_ingest),
    );
    let slack = slack_bridge::routes(st.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/", get(api::page))
        .merge(viewer)
        .merge(responder)
        .merge(approver)
        .merge(ingest)
        .merge(slack)
        .layer(middleware::from_fn_with_state(
            st.metrics.clone(),
            metrics::track,
        ))
        // The limit applies to the decompressed body too: the decompression layer sits outside it.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestDecompressionLayer::new())
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            std::time::Duration::from_secs(s.request_timeout_s.max(1)),
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    overloaded()
                }))
                .load_shed()
                .concurrency_limit(s.max_concurrent_requests.max(1)),
        )
        .layer(TraceLayer::new_for_http())
        .with_state(st)
}

/// The answer to a request beyond `[server] max_concurrent_requests`.
fn overloaded() -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": "oncall is overloaded; retry in a second"})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Binds and serves until the process ends.
pub async fn serve(st: Arc<AppState>) -> Result<(), ServerError> {
    let addr = st.config.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| ServerError::Bind {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    if st.config.log_format == crate::config::LogFormat::Json {
        // A log pipeline reads stderr: every line there is a JSON object.
        tracing::info!(address = %local, "listening");
    } else {
        eprintln!(
            "oncall serve: listening on http://{local}\n  web page: http://{local}/   API: http://{local}/api/v1/openapi.json   OTLP: POST http://{local}/v1/traces"
        );
    }
    // The peer address of each connection reaches the handlers (the wrong-token limit).
    axum::serve(
        listener,
        app(st).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(stopped())
    .await
    .map_err(|e| ServerError::Serve(e.to_string()))
}

/// Resolves on SIGTERM or Ctrl-C: the server stops taking requests and finishes the ones in
/// progress. Investigations still running are marked interrupted at the next start.
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("oncall serve: stopping; unfinished investigations will show as interrupted");
    // Event streams never end by themselves: give requests in progress five seconds, then go.
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        std::process::exit(0);
    });
}
