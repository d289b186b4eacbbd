//! The incident API: open an incident (report or alert webhook), read it, talk to it, decide its
//! approvals, read its post-mortem draft; plus the web page, tools, OpenAPI, readiness and
//! metrics. Handlers decode, call the domain code, and map its errors to status codes.

use super::auth::{Caller, role_name};
use super::limits::{self, Slot};
use super::runner::{self, DecideError};
use super::{ApiError, AppState, body, start_round_holding};
use crate::incidents::{EventKind, NewIncident, Status, title_of};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// The web page: one file, no build step. It holds no data; it signs in with a token.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        Html(include_str!("web/index.html")),
    )
        .into_response()
}

/// The incident `id`, or a 404 that names it.
pub(crate) async fn incident_or_404(
    st: &AppState,
    id: &str,
) -> Result<crate::incidents::Incident, ApiError> {
    st.store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))
}

pub async fn me(Extension(c): Extension<Caller>) -> Json<Value> {
    Json(json!({"name": c.name, "role": role_name(c.role)}))
}

/// Ready when the incident store answers; 503 naming why when it does not (the caller is an
/// authenticated viewer, and the reason passes the redactor).
pub async fn readyz(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if let Err(e) = st.store.ping().await {
        tracing::error!("readiness: incident store: {e}");
        return Err(ApiError::Unavailable(crate::redact::redact(&format!(
            "not ready: {e}"
        ))));
    }
    Ok(Json(json!({"store": "ok", "replica": st.replica})))
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

pub async fn tools(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!(st.registry.specs()))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
}

pub async fn list(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("{e}: use ?limit=N")))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(json!(st.store.list(limit).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    report: String,
    title: Option<String>,
}

/// Opens an incident and starts its investigation in the background.
pub async fn open(
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
    Ok(accepted(&id))
}

fn accepted(id: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "id": id,
            "status": "investigating",
            "events": format!("/api/v1/incidents/{id}/events"),
        })),
    )
        .into_response()
}

/// Opens an incident from a report; the caller starts its investigation
/// ([`start_round_holding`], with the slot it took before opening it). Shared by the API, the
/// alert webhook and Slack (which starts it once the incident has its thread).
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

/// Alertmanager's webhook: the firing alerts of one notification open one incident.
pub async fn alerts(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    b: JsonBody<Value>,
) -> Result<Response, ApiError> {
    let v = body(
        b,
        "an Alertmanager webhook body ({\"alerts\": [{\"status\", \"labels\", \"annotations\"}]})",
    )?;
    let Some(alerts) = v["alerts"].as_array() else {
        return Err(ApiError::BadRequest(
            "no `alerts` array: send Alertmanager's webhook body".into(),
        ));
    };
    st.check(limits::alerts(alerts))?;
    let firing: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["status"].as_str().unwrap_or("firing") == "firing")
        .collect();
    if firing.is_empty() {
        return Ok((
            StatusCode::OK,
            Json(json!({"incidents": [], "note": "no firing alert in this notification; nothing was opened"})),
        )
            .into_response());
    }
    let s = |a: &Value, k: &str, f: &str| a[k][f].as_str().unwrap_or_default().to_string();
    let mut report = String::new();
    // A big outage fires many alerts at once: the incident opens with the first 50, and says how
    // many more there were, rather than refusing the notification.
    const SHOWN: usize = 50;
    for a in firing.iter().take(SHOWN) {
        let name = s(a, "labels", "alertname");
        let sev = s(a, "labels", "severity");
        let target = ["service", "job", "instance", "pod", "deployment", "datname"]
            .iter()
            .map(|k| s(a, "labels", k))
            .find(|x| !x.is_empty())
            .unwrap_or_default();
        let text = [
            s(a, "annotations", "summary"),
            s(a, "annotations", "description"),
        ]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(" — ");
        report.push_str(&format!(
            "ALERT {name}{}{}: {text} (since {})\n",
            if sev.is_empty() {
                String::new()
            } else {
                format!(" [{sev}]")
            },
            if target.is_empty() {
                String::new()
            } else {
                format!(" on {target}")
            },
            a["startsAt"].as_str().unwrap_or("now"),
        ));
    }
    if firing.len() > SHOWN {
        report.push_str(&format!(
            "… and {} more firing alerts\n",
            firing.len() - SHOWN
        ));
    }
    let report: String = report.chars().take(limits::REPORT_CHARS).collect();
    let title = firing.first().map(|a| {
        format!("alert: {}", s(a, "labels", "alertname"))
            .chars()
            .take(limits::TITLE_CHARS)
            .collect::<String>()
    });
    // Alertmanager sends a notification again (its repeat interval, its retries, several
    // Alertmanagers in a cluster, any replica behind the load balancer): the same firing alerts
    // with the same start open one incident, on whichever replica saw them first.
    // (Checked once a slot is held: a notification refused with 429 is not remembered.)
    let slot = st
        .investigation_slot(&c.name, "a new incident")
        .map_err(ApiError::OverCap)?;
    let key = alert_key(&firing);
    if let Some(key) = &key
        && !st.store.seen_first(key, ALERT_DEDUP_S).await?
    {
        return Ok((
            StatusCode::OK,
            Json(json!({"incidents": [], "note": "these firing alerts were already received: a repeat notification opens no new incident"})),
        )
            .into_response());
    }
    let id = match open_incident(&st, &report, title.as_deref(), "alert", &c.name).await {
        Ok(id) => id,
        Err(e) => {
            // Not opened: Alertmanager's retry must open it.
            if let Some(key) = &key {
                let _ = st.store.seen_forget(key).await;
            }
            return Err(e);
        }
    };
    slot.relabel(&format!("incident {id}"));
    start_round_holding(&st, &id, slot);
    Ok((StatusCode::ACCEPTED, Json(json!({"incidents": [id]}))).into_response())
}

/// How long a notification's firing alerts are remembered, to open one incident for repeats.
const ALERT_DEDUP_S: i64 = 6 * 3600;

/// The key of a notification's firing alerts: each one's fingerprint (or labels) and start, in
/// a stable order. None when an alert has no start time (then nothing tells a repeat from a
/// new firing, and nothing is deduplicated).
fn alert_key(firing: &[&Value]) -> Option<String> {
    let mut parts = vec![];
    for a in firing {
        let starts = a["startsAt"].as_str().filter(|s| !s.is_empty())?;
        let who = match a["fingerprint"].as_str() {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => a["labels"].to_string(),
        };
        parts.push(format!("{who}@{starts}"));
    }
    parts.sort();
    parts.dedup();
    Some(format!(
        "alert:{}",
        crate::policy::canonical_hash(&json!(parts))
    ))
}

/// The incident, its events, and its action requests.
pub async fn show(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let inc = incident_or_404(&st, &id).await?;
    let events = st.store.events(&id, 0, 100_000).await?;
    Ok(Json(json!({
        "incident": inc,
        "events": events,
        "approvals": approvals_of(&st, Some(&id), None).await?,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    text: String,
}

/// A person's message in the incident. It starts a follow-up round when none is running.
pub async fn message(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<MessageRequest>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"{"text": "..."}"#)?;
    post_message(&st, &id, &req.text, &c.name).await
}

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
    let started = slot.is_some_and(|s| start_round_holding(st, id, s));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"seq": e.seq, "investigating": started})),
    )
        .into_response())
}

/// Runs the investigation of an incident again (after an interruption, or on demand).
pub async fn resume(
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
    Ok(accepted(&id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequestBody {
    tool: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    why: String,
}

/// A person asks for a live action in an incident; an approver (not them) decides.
pub async fn request_action(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<ActionRequestBody>,
) -> Result<Response, ApiError> {
    let req = body(
        b,
        r#"{"tool": "deploy.rollback", "args": {"deployment": "api"}, "why": "..."}"#,
    )?;
    st.check(limits::chars("tool", &req.tool, limits::TOOL_NAME_CHARS))?;
    st.check(limits::json_bytes(
        "args",
        &req.args,
        limits::TOOL_ARGS_BYTES,
    ))?;
    st.check(limits::chars("why", &req.why, limits::WHY_CHARS))?;
    incident_or_404(&st, &id).await?;
    // What needs no policy decision is refused here, counted and not audited, so requests for
    // tools that do not exist cannot grow the audit log. The desk audits the rest.
    let refuse = |why: String| {
        st.metrics.count(
            &st.metrics.refusals,
            &[("reason", "unknown_tool"), ("field", "tool")],
        );
        ApiError::BadRequest(why)
    };
    match st.registry.spec(&req.tool) {
        None => {
            return Err(refuse(format!(
                "no tool named `{}`: GET /api/v1/tools lists them",
                req.tool.trim()
            )));
        }
        Some(spec) if spec.risk == crate::tool::RiskClass::Read => {
            return Err(refuse(format!(
                "`{}` only reads: it runs without a request",
                req.tool
            )));
        }
        Some(_) => {}
    }
    let actor = match c.role {
        crate::policy::Role::Approver => crate::policy::rules::Actor::Approver,
        crate::policy::Role::Responder => crate::policy::rules::Actor::Responder,
        crate::policy::Role::Viewer => crate::policy::rules::Actor::Viewer,
    };
    let args = if req.args.is_null() {
        json!({})
    } else {
        req.args
    };
    let (request, plan) = runner::file(
        &st,
        &id,
        &req.tool,
        &args,
        &c.name,
        actor,
        None,
        &req.why,
        &[],
    )
    .await
    .map_err(|e| match e {
        runner::FileError::Desk(crate::desk::DeskError::Audit(m)) => ApiError::Internal(m),
        runner::FileError::Desk(other) => ApiError::BadRequest(other.to_string()),
        runner::FileError::Store(e) => ApiError::from(e),
    })?;
    // The plan is shown redacted; the desk keeps the exact one.
    let plan = plan.as_ref().map(crate::redact::redacted);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"request": request, "state": {"state": "pending"}, "plan": plan})),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ApprovalQuery {
    incident: Option<String>,
    state: Option<String>,
}

pub async fn approvals(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::BadRequest(format!("{e}: use ?incident=ID&state=pending")))?;
    if let Some(s) = &q.state
        && !STATES.contains(&s.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "unknown state {s:?}: use one of {}",
            STATES.join(", ")
        )));
    }
    Ok(Json(
        approvals_of(&st, q.incident.as_deref(), q.state.as_deref()).await?,
    ))
}

/// The states a request can be in, as `?state=` takes them.
const STATES: [&str; 7] = [
    "pending",
    "approved",
    "denied",
    "withdrawn",
    "executing",
    "executed",
    "outcome_unknown",
];

/// The requests (of `incident`, in `state`) as the shared store has them.
async fn approvals_of(
    st: &AppState,
    incident: Option<&str>,
    state: Option<&str>,
) -> Result<Value, ApiError> {
    super::replicas::sync(st).await?;
    let ttl = chrono::Duration::seconds(st.config.policy.approval_ttl_s as i64);
    let list: Vec<Value> = st
        .desk
        .entries()
        .into_iter()
        .filter(|e| incident.is_none_or(|i| e.incident == i))
        .map(|e| {
            json!({
                "id": e.request.id,
                "incident": e.incident,
                "tool": e.request.tool,
                // Shown redacted: the desk keeps the exact arguments, whose hash the approval binds.
                "args": crate::redact::redacted(&e.request.args),
                "requested_by": e.request.requested_by,
                "on_behalf_of": e.request.on_behalf_of,
                "requester": e.request.requester(),
                "created_at": e.request.created_at,
                "expires_at": e.request.created_at + ttl,
                "evidence_hash": e.request.evidence_hash,
                "state": e.state,
                "plan": e.plan.as_ref().map(crate::redact::redacted),
            })
        })
        .filter(|v| state.is_none_or(|s| v["state"]["state"] == s))
        .collect();
    Ok(json!(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    approve: bool,
    #[serde(default)]
    reason: String,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    #[serde(default)]
    reason: String,
}

/// The requester (or the person the model filed it for) takes back a pending request.
pub async fn withdraw(
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
    Ok(Json(json!({"state": state, "note": "withdrawn: it will not run"})).into_response())
}

/// An approver approves (and so runs, once) or denies a request.
pub async fn decision(
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
    Ok(Json(json!({
        "state": state,
        "execution": null,
        "note": if req.approve {
            "approved: it runs now, once; its result and measured effect arrive as action_executed and action_verified events"
        } else {
            "denied: it will not run"
        },
    }))
    .into_response())
}

/// Drafts the post-mortem now and keeps it in the log (`postmortem_drafted`), with the
/// blameless check's findings. An incident cannot be closed before this.
pub async fn draft_postmortem(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let inc = incident_or_404(&st, &id).await?;
    let events = st.store.events(&id, 0, 100_000).await?;
    let prompts = crate::agent::prompts::Prompts::load(&st.config.llm.prompts_dir);
    let mut facts = crate::postmortem::facts(&inc, &events);
    // With a model configured it writes the prose; every claim is checked against the log.
    let m = super::model(&st)?;
    if !m.is_offline() {
        facts = crate::postmortem::prose::write(m.as_ref(), &prompts, facts).await;
    }
    let md = crate::postmortem::render(&prompts, &facts)
        .map_err(|e| ApiError::Internal(format!("post-mortem template: {e}")))?;
    let findings = crate::postmortem::blameless::check(&md);
    let brief = crate::postmortem::brief(&facts);
    let e = st
        .publish(
            &id,
            EventKind::PostmortemDrafted,
            &c.name,
            json!({"markdown": md, "brief": brief, "blameless_findings": findings, "written_by": facts.written_by, "notes": facts.notes, "dropped": facts.dropped}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"seq": e.seq, "markdown": md, "blameless_findings": findings, "written_by": facts.written_by, "notes": facts.notes, "dropped": facts.dropped})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    status: String,
}

/// Marks an incident resolved or closed. Closing needs a post-mortem draft first (the protocol's
/// "skipped post-mortem" anti-pattern is refused).
pub async fn set_status(
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
    Ok(Json(json!({"id": id, "status": status})).into_response())
}

/// The post-mortem draft, from the incident's own log.
pub async fn postmortem(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let inc = incident_or_404(&st, &id).await?;
    let events = st.store.events(&id, 0, 100_000).await?;
    // The last draft made (it may carry the model's checked prose), else one from the log now.
    let md = match events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::PostmortemDrafted)
    {
        Some(e) => e.data["markdown"].as_str().unwrap_or_default().to_string(),
        None => crate::postmortem::render(
            &crate::agent::prompts::Prompts::load(&st.config.llm.prompts_dir),
            &crate::postmortem::facts(&inc, &events),
        )
        .map_err(|e| ApiError::Internal(format!("post-mortem template: {e}")))?,
    };
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], md).into_response())
}
