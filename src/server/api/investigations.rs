//! Investigations on demand: one run synchronously, and an eval case recorded live.

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, AppState, body, limits, model};
use super::JsonBody;
use crate::agent::events::Silent;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// A report to investigate.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"report": "checkout p99 > 2s since deploy v2.5.1"}))]
pub(crate) struct TriageRequest {
    /// What is wrong, in plain words.
    #[schema(min_length = 1, max_length = 20000)]
    report: String,
}

/// One investigation: triage, ranked hypotheses with their evidence, stabilizing proposals,
/// next steps, the debug log and token use. Tool outputs and arguments are shown redacted.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents `crate::agent::Investigation` as the API shows it
pub(crate) struct Investigation {
    /// `YYYY-MM-DD-HHMM` of T0 plus the host.
    incident: String,
    report: String,
    t0: chrono::DateTime<chrono::Utc>,
    host: String,
    /// Which reasoner produced the board (`offline`, `openai:<model>`, `replay:<file>`).
    reasoner: String,
    /// `severity` (P0, the worst, to P4), `reason`, `user_facing`, `scope` (resources and
    /// processes with abnormal signals), `blast_radius`.
    triage: Value,
    /// Stabilizing actions proposed first for user-facing impact; none is executed.
    stabilize: Vec<Value>,
    debug_log: Vec<Value>,
    /// Ranked best first: each with its category, component, status, confidence, statement
    /// and evidence.
    hypotheses: Vec<Value>,
    /// True when no hypothesis reached the confidence threshold: "no fault found".
    abstained: bool,
    conclusion: String,
    /// The reasoner's own words (its conclude summary or final answer), if any.
    answer: Option<String>,
    /// What to do next, each with why and the exact commands.
    next_steps: Vec<Value>,
    /// Every tool call with its arguments, output (redacted) and duration.
    tool_calls: Vec<Value>,
    confidence_threshold: f64,
    /// Prompt and completion tokens.
    tokens: Value,
    /// Model steps taken.
    steps: u32,
    /// Retries, refusals, elisions: what the responder should know about how the answer was
    /// made.
    notices: Option<Vec<String>>,
    /// Set when the model endpoint failed and the offline reasoner finished the investigation.
    fallback: Option<String>,
}

/// Investigate synchronously
///
/// Runs one investigation on this server (host, databases, the traces it received) and answers
/// with it when it is done. It opens no incident.
///
/// The investigation holds one of the caller's `[server] max_investigations_per_user` slots
/// while it runs (a dropped connection frees it); at the cap, 429.
#[utoipa::path(
    post,
    path = "/api/v1/triage",
    operation_id = "triage",
    tag = "investigations",
    request_body = TriageRequest,
    responses(
        (status = 200, description = "The investigation.", body = Investigation),
        (status = 400, description = "The body is not the JSON this route takes, an empty report, or one over its maximum (the answer names `field` and `limit`).", body = ErrorBody),
        (status = 500, description = "The model could not be built or the investigation failed; see the server log.", body = ErrorBody),
    )
)]
pub(crate) async fn triage(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    b: JsonBody<TriageRequest>,
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

/// A case to record.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "checkout-latency", "report": "checkout p99 > 2s since deploy v2.5.1"}))]
pub(crate) struct RecordRequest {
    /// The case id.
    #[schema(min_length = 1, max_length = 100)]
    id: String,
    /// What is wrong, in plain words.
    #[schema(min_length = 1, max_length = 20000)]
    report: String,
}

/// A replayable eval case (`oncall-case/1`): the report, what the collectors answered (each
/// tool call recorded), and its truth (null until a person fills it in).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents `crate::eval::case::Case` as the API shows it
pub(crate) struct EvalCase {
    /// `oncall-case/1`.
    format: String,
    id: String,
    title: String,
    /// `recorded`, `derived:<source>` or `synthetic`.
    provenance: String,
    report: String,
    observed_at: chrono::DateTime<chrono::Utc>,
    /// The host and services the case was recorded on.
    context: Value,
    /// Each tool call and its recorded output.
    recordings: Vec<Value>,
    /// Null until a person fills it in after recording.
    truth: Option<Value>,
}

/// Record an eval case
///
/// Records a replayable eval case (`oncall-case/1`) from this server's live collectors, traces
/// included; its truth is left empty.
///
/// Like triage, it holds one of the caller's `[server] max_investigations_per_user` slots while
/// it runs; at the cap, 429.
#[utoipa::path(
    post,
    path = "/api/v1/record",
    operation_id = "record",
    tag = "investigations",
    request_body = RecordRequest,
    responses(
        (status = 200, description = "The recorded case.", body = EvalCase),
        (status = 400, description = "The body is not the JSON this route takes, an empty id or report, or a field over its maximum (the answer names `field` and `limit`).", body = ErrorBody),
        (status = 500, description = "The model could not be built or the recording failed; see the server log.", body = ErrorBody),
    )
)]
pub(crate) async fn record(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    b: JsonBody<RecordRequest>,
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
