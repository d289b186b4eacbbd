//! Incidents: open one from a report, list them, show one, talk to it, run its investigation
//! again, set its status.

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::limits::{self, Slot};
use super::super::{ApiError, AppState, body, start_round_holding};
use super::approvals::{Approval, approvals_of};
use super::{JsonBody, incident_or_404};
use crate::incidents::{Event, EventKind, Incident, NewIncident, Status, title_of};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// How many incidents (clamped to 1..1000; default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// List incidents
///
/// Incident summaries, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    operation_id = "listIncidents",
    tag = "incidents",
    params(ListQuery),
    responses(
        (status = 200, description = "Newest first.", body = Vec<Incident>),
        (status = 400, description = "`limit` is not an integer.", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Incident>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("{e}: use ?limit=N")))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(st.store.list(limit).await?))
}

/// A report that opens an incident.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"report": "checkout p99 > 2s since deploy v2.5.1"}))]
pub(crate) struct OpenRequest {
    /// What is wrong, in plain words (symptom, where, since when). Redacted before it is stored.
    #[schema(min_length = 1, max_length = 20000)]
    report: String,
    /// Default: the report's first line, at most 80 characters.
    #[schema(max_length = 200)]
    title: Option<String>,
}

/// An incident opened (or resumed): its investigation runs in the background.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "2026-11-27-01", "status": "investigating", "events": "/api/v1/incidents/2026-11-27-01/events"}))]
pub(crate) struct Accepted {
    id: String,
    /// Always `investigating`.
    status: Status,
    /// The incident's event stream path.
    events: String,
}

/// Open an incident from a report
///
/// Opens an incident (source `api`) with the report as its first event and starts its
/// investigation in the background; follow it on the event stream. The report is redacted
/// before it is stored; the title defaults to the report's first line (at most 80 characters).
///
/// A caller with `[server] max_investigations_per_user` investigations running or waiting gets
/// 429 naming them, and nothing is opened.
#[utoipa::path(
    post,
    path = "/api/v1/incidents",
    operation_id = "openIncident",
    tag = "incidents",
    request_body = OpenRequest,
    responses(
        (status = 202, description = "Opened; the investigation runs.", body = Accepted),
        (status = 400, description = "The body is not the JSON this route takes, an empty report, or a field over its maximum (the answer names `field` and `limit`).", body = ErrorBody),
    )
)]
pub(crate) async fn open(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    b: JsonBody<OpenRequest>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"report": "what is wrong, in plain words"}"#)?;
    // The caller's slot first: a refused request opens nothing.
    let slot = st
        .investigation_slot(&c.name, "a new incident")
        .map_err(ApiError::OverCap)?;
    let id = open_incident(&st, &req.report, req.title.as_deref(), "api", &c.name).await?;
    slot.relabel(&format!("incident {id}"));
    start_round_holding(&st, &id, slot);
    Ok(accepted(id))
}

fn accepted(id: String) -> Response {
    let events = format!("/api/v1/incidents/{id}/events");
    let a = Accepted {
        id,
        status: Status::Investigating,
        events,
    };
    (StatusCode::ACCEPTED, Json(a)).into_response()
}

/// Opens an incident from a report; the caller starts its investigation (with
/// `start_round_holding` and the slot it took before opening it). Shared by the API, the alert
/// webhook and Slack (which starts it once the incident has its thread).
pub(crate) async fn open_incident(
    st: &Arc<AppState>,
    report: &str,
    title: Option<&str>,
    source: &str,
    actor: &str,
) -> Result<String, ApiError> {
    let report = report.trim();
    if report.is_empty() {
        return Err(ApiError::BadRequest(
            "the report is empty: say what is wrong (symptom, where, since when)".into(),
        ));
    }
    st.check(limits::chars("report", report, limits::REPORT_CHARS))?;
    if let Some(t) = title {
        st.check(limits::chars("title", t, limits::TITLE_CHARS))?;
    }
    let report = crate::redact::redact(report);
    let title = title
        .map(|t| crate::redact::redact(t.trim()))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| title_of(&report));
    let (inc, ev) = st
        .store
        .create(NewIncident {
            title,
            source: source.to_string(),
            actor: actor.to_string(),
            report: json!({"text": report}),
            owner: Some(st.replica.clone()),
        })
        .await?;
    st.bus.event(&inc.id, ev);
    Ok(inc.id)
}

/// An incident with its whole story.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IncidentDetail {
    incident: Incident,
    /// Its event log, oldest first.
    events: Vec<Event>,
    /// Its action requests.
    approvals: Vec<Approval>,
}

/// An incident with its events and approvals
///
/// The incident summary, its whole event log (oldest first) and its action requests.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    operation_id = "showIncident",
    tag = "incidents",
    params(("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01")),
    responses(
        (status = 200, description = "The incident.", body = IncidentDetail),
        (status = 404, description = "No incident with this id.", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let incident = incident_or_404(&st, &id).await?;
    let events = st.store.events(&id, 0, 100_000).await?;
    let approvals = approvals_of(&st, Some(&id), None).await?;
    Ok(Json(IncidentDetail {
        incident,
        events,
        approvals,
    }))
}

/// A person's message in an incident.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "the deploy was rolled back at 04:52"}))]
pub(crate) struct MessageRequest {
    #[schema(min_length = 1, max_length = 20000)]
    text: String,
}

/// A message stored.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"seq": 17, "investigating": true}))]
pub(crate) struct MessageAccepted {
    /// The message event's seq.
    seq: i64,
    /// Whether this message started a round of investigation.
    investigating: bool,
}

/// Say something in the incident
///
/// Appends a `message` event (redacted). It starts a follow-up round of investigation when none
/// is running (`investigating: true`).
///
/// When the message would start a round and the caller has
/// `[server] max_investigations_per_user` investigations running or waiting: 429, and the
/// message is not stored.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/messages",
    operation_id = "postMessage",
    tag = "incidents",
    params(("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01")),
    request_body = MessageRequest,
    responses(
        (status = 202, description = "Stored.", body = MessageAccepted),
        (status = 400, description = "The body is not the JSON this route takes, an empty message, or one over its maximum (the answer names `field` and `limit`).", body = ErrorBody),
        (status = 404, description = "No incident with this id.", body = ErrorBody),
        (status = 409, description = "The incident is closed.", body = ErrorBody),
    )
)]
pub(crate) async fn message(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<MessageRequest>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"text": "..."}"#)?;
    post_message(&st, &id, &req.text, &c.name).await
}

/// Stores a person's message in incident `id` and starts a round when none runs (the API and
/// Slack's mentions).
pub(crate) async fn post_message(
    st: &Arc<AppState>,
    id: &str,
    text: &str,
    actor: &str,
) -> Result<Response, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::BadRequest("the message is empty".into()));
    }
    st.check(limits::chars("text", text, limits::MESSAGE_CHARS))?;
    let inc = incident_or_404(st, id).await?;
    if inc.status == Status::Closed {
        return Err(ApiError::Conflict(format!("incident {id} is closed")));
    }
    // The message starts a round unless one is running, and a round takes a slot of the
    // caller's: at their cap the message is refused, unless no round would start anyway.
    let slot = match st.investigation_slot(actor, &format!("incident {id}")) {
        Ok(s) => Some(s),
        Err(_) if st.running.contains(id) => None,
        Err(e) => return Err(ApiError::OverCap(e)),
    };
    let e = st
        .publish(id, EventKind::Message, actor, json!({"text": text}))
        .await?;
    let investigating = slot.is_some_and(|s| start_round_holding(st, id, s));
    let answer = MessageAccepted {
        seq: e.seq,
        investigating,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Run the investigation again
///
/// Re-runs the investigation of an incident (an `interrupted` one after a restart, or any other
/// on demand). No body.
///
/// A caller at `[server] max_investigations_per_user` gets 429.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/resume",
    operation_id = "resumeInvestigation",
    tag = "incidents",
    params(("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01")),
    responses(
        (status = 202, description = "The round started.", body = Accepted),
        (status = 404, description = "No incident with this id.", body = ErrorBody),
        (status = 409, description = "The incident is closed, or a round is running right now.", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let inc = incident_or_404(&st, &id).await?;
    if inc.status == Status::Closed {
        return Err(ApiError::Conflict(format!("incident {id} is closed")));
    }
    let slot: Slot = st
        .investigation_slot(&c.name, &format!("incident {id}"))
        .map_err(ApiError::OverCap)?;
    if !start_round_holding(&st, &id, slot) {
        return Err(ApiError::Conflict(format!(
            "incident {id} is being investigated right now"
        )));
    }
    Ok(accepted(id))
}

/// The status to set by hand.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "resolved"}))]
pub(crate) struct StatusRequest {
    /// `resolved` or `closed`.
    #[schema(pattern = "^(resolved|closed)$")]
    status: String,
}

/// An incident's new status.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatusSet {
    id: String,
    /// `resolved` or `closed`.
    status: Status,
}

/// Mark an incident resolved or closed
///
/// Sets `resolved` or `closed`. Closing needs a post-mortem draft first (`POST
/// /api/v1/incidents/{id}/postmortem`; the protocol's "skipped post-mortem" anti-pattern is
/// refused with 409). An incident being investigated cannot change status (409). A resolved
/// incident is remembered in incident memory.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/status",
    operation_id = "setIncidentStatus",
    tag = "incidents",
    params(("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01")),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The new status.", body = StatusSet),
        (status = 400, description = "The body is not the JSON this route takes, or a status other than resolved or closed.", body = ErrorBody),
        (status = 404, description = "No incident with this id.", body = ErrorBody),
        (status = 409, description = "Closing without a post-mortem draft, or the incident is being investigated.", body = ErrorBody),
    )
)]
pub(crate) async fn set_status(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    b: JsonBody<StatusRequest>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"status": "resolved" | "closed"}"#)?;
    let status = match req.status.as_str() {
        "resolved" => Status::Resolved,
        "closed" => Status::Closed,
        other => {
            return Err(ApiError::BadRequest(format!(
                "status {other:?} cannot be set by hand: use resolved or closed"
            )));
        }
    };
    let inc = incident_or_404(&st, &id).await?;
    if inc.status == Status::Investigating {
        return Err(ApiError::Conflict(format!(
            "incident {id} is being investigated; wait for the round to finish"
        )));
    }
    if status == Status::Closed {
        let drafted = st
            .store
            .events(&id, 0, 100_000)
            .await?
            .iter()
            .any(|e| e.kind == EventKind::PostmortemDrafted);
        if !drafted {
            return Err(ApiError::Conflict(format!(
                "incident {id} has no post-mortem draft; draft it first (POST /api/v1/incidents/{id}/postmortem)"
            )));
        }
    }
    st.set_status(&id, status, None).await?;
    if status == Status::Resolved || inc.status != Status::Resolved {
        st.remember(&id);
    }
    Ok(Json(StatusSet { id, status }).into_response())
}
