//! Action requests: a person asks for a live action in an incident, an approver who is not them
//! decides, the requester can withdraw it while it is pending.

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::runner::{self, DecideError};
use super::super::{ApiError, AppState, body, limits};
use super::{JsonBody, incident_or_404};
use crate::desk::State as RequestState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// What a person asks to run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tool": "deploy.rollback", "args": {"deployment": "api"}, "why": "errors began with v2.5.1"}))]
pub(crate) struct ActionRequestBody {
    /// A tool that writes or acts live (see `GET /api/v1/tools`).
    #[schema(max_length = 100, example = "deploy.rollback")]
    tool: String,
    /// The tool's exact arguments (its `parameters` schema); default `{}`; at most 16 KiB as
    /// JSON.
    #[serde(default)]
    args: Value,
    /// Why, for the approver and the record.
    #[serde(default)]
    #[schema(max_length = 2000)]
    why: String,
}

/// A request filed: pending an approver's decision.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"request": "9f1c2a7b3d4e5f60", "state": {"state": "pending"}, "plan": {"argv": ["kubectl", "rollout", "undo", "deployment/api"]}}))]
pub(crate) struct ActionFiled {
    /// The request id (`Approval.id`).
    request: String,
    /// Always `pending`.
    state: RequestState,
    /// The dry run: the exact argv or HTTP request it would run (redacted); null when the tool
    /// has none.
    plan: Option<Value>,
}

/// Ask for an action
///
/// A person files an action request in the incident: a tool that writes or acts live, with
/// exact arguments. The arguments are checked now (the dry run becomes the request's `plan`); an
/// `action_requested` event is appended, and, with Slack, an approval message with buttons goes
/// to the incident's thread. An approver who is not the requester decides
/// (`POST /api/v1/approvals/{id}/decision`).
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/actions",
    operation_id = "requestAction",
    tag = "approvals",
    params(("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01")),
    request_body = ActionRequestBody,
    responses(
        (status = 202, description = "Filed; pending an approver's decision.", body = ActionFiled),
        (status = 400, description = "The body is not the JSON this route takes, a field over its maximum (the answer names `field` and `limit`), no such tool, a tool that only reads (it runs without a request), one the policy does not let this person request or that needs no approval here, or arguments the tool refuses.", body = ErrorBody),
        (status = 404, description = "No incident with this id.", body = ErrorBody),
        (status = 500, description = "The request could not be written to the audit log; nothing was filed.", body = ErrorBody),
    )
)]
pub(crate) async fn request_action(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<ActionRequestBody>,
) -> Result<Response, ApiError> {
    let req = body(
        b,
        r#"{"tool": "deploy.rollback", "args": {"deployment": "api"}, "why": "..."}"#,
    )?;
    let filed = file_action(&st, &c, &id, &req.tool, req.args, &req.why).await?;
    Ok((StatusCode::ACCEPTED, Json(filed)).into_response())
}

/// Files an action request in incident `id` for `caller`: the arguments checked against their
/// limits and the tool's own checks, the dry run made, the request audited and announced. Shared
/// by the API and MCP's `request_action`; nothing runs until an approver decides.
pub(crate) async fn file_action(
    st: &Arc<AppState>,
    c: &Caller,
    id: &str,
    tool: &str,
    args: Value,
    why: &str,
) -> Result<ActionFiled, ApiError> {
    st.check(limits::chars("tool", tool, limits::TOOL_NAME_CHARS))?;
    st.check(limits::json_bytes("args", &args, limits::TOOL_ARGS_BYTES))?;
    st.check(limits::chars("why", why, limits::WHY_CHARS))?;
    incident_or_404(st, id).await?;
    // What needs no policy decision is refused here, counted and not audited, so requests for
    // tools that do not exist cannot grow the audit log. The desk audits the rest.
    let refuse = |why: String| {
        st.metrics.count(
            &st.metrics.refusals,
            &[("reason", "unknown_tool"), ("field", "tool")],
        );
        ApiError::BadRequest(why)
    };
    match st.registry.spec(tool) {
        None => {
            return Err(refuse(format!(
                "no tool named `{}`: GET /api/v1/tools lists them",
                tool.trim()
            )));
        }
        Some(spec) if spec.risk == crate::tool::RiskClass::Read => {
            return Err(refuse(format!(
                "`{}` only reads: it runs without a request",
                tool
            )));
        }
        Some(_) => {}
    }
    let actor = match c.role {
        crate::policy::Role::Approver => crate::policy::rules::Actor::Approver,
        crate::policy::Role::Responder => crate::policy::rules::Actor::Responder,
        crate::policy::Role::Viewer => crate::policy::rules::Actor::Viewer,
    };
    let args = if args.is_null() { json!({}) } else { args };
    let (request, plan) = runner::file(st, id, tool, &args, &c.name, actor, None, why, &[])
        .await
        .map_err(|e| match e {
            runner::FileError::Desk(crate::desk::DeskError::Audit(m)) => ApiError::Internal(m),
            runner::FileError::Desk(other) => ApiError::BadRequest(other.to_string()),
            runner::FileError::Store(e) => ApiError::from(e),
        })?;
    // The plan is shown redacted; the desk keeps the exact one.
    let filed = ActionFiled {
        request,
        state: RequestState::Pending,
        plan: plan.as_ref().map(crate::redact::redacted),
    };
    Ok(filed)
}

/// Where a request stands, as `?state=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RequestPhase {
    Pending,
    Approved,
    Denied,
    Withdrawn,
    Executing,
    Executed,
    OutcomeUnknown,
}

impl RequestPhase {
    /// The phase of a request in `state`.
    fn of(state: &RequestState) -> RequestPhase {
        match state {
            RequestState::Pending => RequestPhase::Pending,
            RequestState::Approved { .. } => RequestPhase::Approved,
            RequestState::Denied { .. } => RequestPhase::Denied,
            RequestState::Withdrawn { .. } => RequestPhase::Withdrawn,
            RequestState::Executing { .. } => RequestPhase::Executing,
            RequestState::Executed { .. } => RequestPhase::Executed,
            RequestState::OutcomeUnknown { .. } => RequestPhase::OutcomeUnknown,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApprovalQuery {
    /// Only this incident's requests.
    incident: Option<String>,
    /// Only requests in this state.
    #[param(inline)]
    state: Option<RequestPhase>,
}

/// Action requests
///
/// The action requests, as the store every replica shares has them, optionally only those of
/// one incident, or in one state.
#[utoipa::path(
    get,
    path = "/api/v1/approvals",
    operation_id = "listApprovals",
    tag = "approvals",
    params(ApprovalQuery),
    responses(
        (status = 200, description = "The requests.", body = Vec<Approval>),
        (status = 400, description = "`state` is not one of the states (or the query is malformed).", body = ErrorBody),
    )
)]
pub(crate) async fn approvals(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Approval>>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}: use ?incident=ID&state=pending (or approved, denied, withdrawn, executing, executed, outcome_unknown)"
        ))
    })?;
    Ok(Json(
        approvals_of(&st, q.incident.as_deref(), q.state).await?,
    ))
}

/// An action request: a risky tool with exact arguments, bound to the evidence it was made on.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Approval {
    #[schema(example = "9f1c2a7b3d4e5f60")]
    id: String,
    incident: String,
    #[schema(example = "flag.disable")]
    tool: String,
    /// The exact arguments an approval covers (shown redacted; the desk keeps them exact, and
    /// the approval binds their hash).
    args: Value,
    /// Who filed it: a person's name, or `model` when an investigation's model proposed it.
    requested_by: String,
    /// For a request the model filed: the human driving the investigation (null otherwise).
    /// Under a `two_person` policy rule that person cannot approve it.
    on_behalf_of: Option<String>,
    /// Who asked, in words, e.g. `model, on behalf of ana`.
    requester: String,
    created_at: DateTime<Utc>,
    /// `created_at` plus `[policy] approval_ttl_s`.
    expires_at: DateTime<Utc>,
    /// sha256 of the tool outputs the request was made on.
    evidence_hash: String,
    state: RequestState,
    /// The dry run: the exact argv or HTTP request it would run (redacted); null when none.
    plan: Option<Value>,
}

/// The requests (of `incident`, in `phase`) as the shared store has them.
pub(crate) async fn approvals_of(
    st: &AppState,
    incident: Option<&str>,
    phase: Option<RequestPhase>,
) -> Result<Vec<Approval>, ApiError> {
    super::super::replicas::sync(st).await?;
    let ttl = chrono::Duration::seconds(st.config.policy.approval_ttl_s as i64);
    Ok(st
        .desk
        .entries()
        .into_iter()
        .filter(|e| incident.is_none_or(|i| e.incident == i))
        .filter(|e| phase.is_none_or(|p| RequestPhase::of(&e.state) == p))
        .map(|e| Approval {
            id: e.request.id.clone(),
            incident: e.incident.clone(),
            tool: e.request.tool.clone(),
            // Shown redacted: the desk keeps the exact arguments, whose hash the approval binds.
            args: crate::redact::redacted(&e.request.args),
            requested_by: e.request.requested_by.clone(),
            on_behalf_of: e.request.on_behalf_of.clone(),
            requester: e.request.requester(),
            created_at: e.request.created_at,
            expires_at: e.request.created_at + ttl,
            evidence_hash: e.request.evidence_hash.clone(),
            plan: e.plan.as_ref().map(crate::redact::redacted),
            state: e.state,
        })
        .collect())
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> ApiError {
        match e {
            DecideError::NotFound(m) => ApiError::NotFound(m),
            DecideError::Forbidden(m) => ApiError::Forbidden(m),
            DecideError::Conflict(m) => ApiError::Conflict(m),
            DecideError::Internal(m) => ApiError::Internal(m),
            DecideError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// Why a request is taken back.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "the deploy was rolled back instead"}))]
pub(crate) struct WithdrawRequest {
    /// Why (optional).
    #[serde(default)]
    #[schema(max_length = 2000)]
    reason: String,
}

/// A request withdrawn.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"state": {"state": "withdrawn", "by": "ana"}, "note": "withdrawn: it will not run"}))]
pub(crate) struct WithdrawResponse {
    state: RequestState,
    note: String,
}

/// Withdraw a pending action request
///
/// The person who filed a request, or the person the model filed it for, takes it back while it
/// is pending; it will not run, and the withdrawal is in the audit log and the incident
/// (`action_withdrawn`). An approver who wants it not to run denies it instead.
#[utoipa::path(
    post,
    path = "/api/v1/approvals/{id}/withdraw",
    operation_id = "withdraw",
    tag = "approvals",
    params(("id" = String, Path, description = "The action request id (`Approval.id`).", example = "9f1c2a7b3d4e5f60")),
    request_body = WithdrawRequest,
    responses(
        (status = 200, description = "Withdrawn.", body = WithdrawResponse),
        (status = 403, description = "The caller did not file this request and it was not filed for them, or the token's role is too weak (or it is an ingest token).", body = ErrorBody),
        (status = 404, description = "No request with this id.", body = ErrorBody),
        (status = 409, description = "The request is no longer pending (decided, withdrawn, run).", body = ErrorBody),
        (status = 500, description = "The withdrawal could not be recorded (audit log); see the server log.", body = ErrorBody),
    )
)]
pub(crate) async fn withdraw(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<WithdrawRequest>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"reason": "why (optional)"}"#)?;
    st.check(limits::chars("reason", &req.reason, limits::REASON_CHARS))?;
    let state = runner::withdraw(&st, &id, &c.human(), req.reason.trim())
        .await
        .map_err(ApiError::from)?;
    let note = "withdrawn: it will not run".to_string();
    Ok(Json(WithdrawResponse { state, note }).into_response())
}

/// An approver's decision.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"approve": false, "reason": "rollback is safer than the flag"}))]
pub(crate) struct DecisionRequest {
    approve: bool,
    /// Required (not empty) for a denial.
    #[serde(default)]
    #[schema(max_length = 2000)]
    reason: String,
}

/// A decision recorded.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"state": {"state": "approved", "by": "ana"}, "execution": null, "note": "approved: it runs now, once; its result and measured effect arrive as action_executed and action_verified events"}))]
pub(crate) struct DecisionResponse {
    state: RequestState,
    /// Always null: an approved action runs in the background; watch for the
    /// `action_executed` and `action_verified` events.
    execution: Option<Value>,
    note: String,
}

/// Approve or deny an action request
///
/// An approver who is not the requester decides. Approving runs the action once, in the
/// background: the answer comes at once with `execution: null`, and the result and its measured
/// effect arrive as `action_executed` and `action_verified` events. A denial needs a reason.
#[utoipa::path(
    post,
    path = "/api/v1/approvals/{id}/decision",
    operation_id = "decide",
    tag = "approvals",
    params(("id" = String, Path, description = "The action request id (`Approval.id`).", example = "9f1c2a7b3d4e5f60")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "Decided.", body = DecisionResponse),
        (status = 400, description = "The body is not the JSON this route takes, a field over its maximum (the answer names `field` and `limit`), or a denial without a reason.", body = ErrorBody),
        (status = 403, description = "The token's role is too weak (or it is an ingest token), the requester cannot approve their own request, or the policy refuses this approver.", body = ErrorBody),
        (status = 404, description = "No request with this id.", body = ErrorBody),
        (status = 409, description = "The request was already decided, or it expired.", body = ErrorBody),
        (status = 500, description = "The decision could not be recorded (audit log); see the server log.", body = ErrorBody),
    )
)]
pub(crate) async fn decision(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<DecisionRequest>,
) -> Result<Response, ApiError> {
    let req = body(
        b,
        r#"{"approve": true|false, "reason": "why (for a denial)"}"#,
    )?;
    st.check(limits::chars("reason", &req.reason, limits::REASON_CHARS))?;
    if !req.approve && req.reason.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "a denial needs a reason: send {\"approve\": false, \"reason\": \"...\"}".into(),
        ));
    }
    let state = runner::decide(&st, &id, &c.human(), req.approve, req.reason.trim())
        .await
        .map_err(ApiError::from)?;
    let note = if req.approve {
        "approved: it runs now, once; its result and measured effect arrive as action_executed and action_verified events"
    } else {
        "denied: it will not run"
    };
    let answer = DecisionResponse {
        state,
        execution: None,
        note: note.to_string(),
    };
    Ok(Json(answer).into_response())
}
