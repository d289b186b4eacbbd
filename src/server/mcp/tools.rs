//! The tools an MCP client sees, by role, and what each call does.
//!
//! | tool | role | what it does |
//! |---|---|---|
//! | every read tool of the registry (`host.use_snapshot`, `postgres.*`, ...) | responder | measures, now |
//! | `start_investigation` | responder | opens an incident and runs its investigation, with progress |
//! | `request_action` | responder | files an approval request; nothing runs |
//! | `get_board`, `get_postmortem`, `list_incidents` | viewer | reads an incident |
//!
//! An action tool is never listed and never callable: a name that is not one of these is
//! refused, and a registry tool that is not a read is refused before the registry is asked (which
//! would refuse it too, for want of an approval).

use super::super::api::approvals::{approvals_of, file_action};
use super::super::api::postmortem::postmortem_markdown;
use super::super::api::{incident_or_404, open_incident};
use super::super::{ApiError, AppState, start_round_holding};
use super::{Caller, OncallMcp, holds};
use crate::incidents::{Event, EventKind};
use crate::policy::Role;
use crate::tool::RiskClass;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, ProgressNotificationParam,
    RequestParamsMeta, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `start_investigation`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StartArgs {
    /// What is wrong, in plain words: the symptom, where, since when (e.g. "checkout p99 > 2s
    /// since the 14:05 deploy"). Redacted before it is stored.
    question: String,
    /// A short title for the incident; default: the question's first line.
    #[serde(default)]
    title: Option<String>,
    /// Seconds to wait for the investigation to finish, with progress notifications meanwhile
    /// (0: answer at once with the incident id; default and maximum: the server's `[mcp] wait_s`).
    /// If it is still running then, call get_board later.
    #[serde(default)]
    wait_s: Option<u64>,
}

/// Arguments that name one incident.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IncidentArgs {
    /// The incident id, `YYYY-MM-DD-NN`, as start_investigation or list_incidents gave it.
    incident: String,
}

/// Arguments of `list_incidents`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// How many of the newest incidents (1-100, default 20).
    #[serde(default)]
    limit: Option<i64>,
}

/// Arguments of `request_action`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    /// The incident the action is for.
    incident: String,
    /// The action tool, e.g. `postgres.cancel_backend` (the incident's board lists the ones the
    /// investigation proposed).
    tool: String,
    /// The tool's exact arguments; the approval covers exactly these.
    #[serde(default)]
    args: Value,
    /// Why, for the approver and the record.
    #[serde(default)]
    why: String,
}

fn schema<A: JsonSchema>() -> Arc<serde_json::Map<String, Value>> {
    match crate::tool::schema_for::<A>() {
        Value::Object(o) => Arc::new(o),
        _ => Arc::new(serde_json::Map::new()),
    }
}

fn reads(title: &str) -> ToolAnnotations {
    ToolAnnotations::with_title(title)
        .read_only(true)
        .destructive(false)
}

/// The tools `c` may call, oncall's own first.
pub(super) fn listed(st: &AppState, c: &Caller) -> Vec<Tool> {
    let mut out = vec![
        Tool::new(
            "get_board",
            "The incident's hypothesis board: each hypothesis with its status, confidence and the evidence cited for it, the conclusion, severity, next steps, and the action requests with their state.",
            schema::<IncidentArgs>(),
        )
        .annotate(reads("Hypothesis board")),
        Tool::new(
            "get_postmortem",
            "The incident's blameless post-mortem draft (Markdown), made from its own event log.",
            schema::<IncidentArgs>(),
        )
        .annotate(reads("Post-mortem draft")),
        Tool::new(
            "list_incidents",
            "The newest incidents: id, title, status, severity.",
            schema::<ListArgs>(),
        )
        .annotate(reads("Incidents")),
    ];
    if c.role < Role::Responder {
        return out;
    }
    out.push(
        Tool::new(
            "start_investigation",
            "Open an incident from a plain-words report and run oncall's investigation (measure, propose hypotheses, confirm or reject them with cited evidence). Sends progress while it runs; answers with the incident id and its board.",
            schema::<StartArgs>(),
        )
        .annotate(
            ToolAnnotations::with_title("Start an investigation")
                .read_only(false)
                .destructive(false)
                .idempotent(false),
        ),
    );
    out.push(
        Tool::new(
            "request_action",
            "Ask for a live action (rollback, kill, cancel a query, ...) in an incident. It does NOT run it: it files an approval request that a human approver decides elsewhere; answers with the request id.",
            schema::<RequestArgs>(),
        )
        .annotate(
            ToolAnnotations::with_title("Request an action (needs a human's approval)")
                .read_only(false)
                .destructive(true),
        ),
    );
    for s in st.registry.specs() {
        if s.risk != RiskClass::Read || s.unavailable {
            continue;
        }
        let params = match s.parameters {
            Value::Object(o) => Arc::new(o),
            _ => Arc::new(serde_json::Map::new()),
        };
        out.push(Tool::new(s.name, s.description, params).annotate(reads(s.name)));
    }
    out
}

fn text(t: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(t)])
}

fn refused(why: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(why.into())])
}

/// A tool's typed arguments, or what was wrong with them (the path to the bad field included).
fn parse<A: serde::de::DeserializeOwned>(tool: &str, args: Value) -> Result<A, String> {
    serde_path_to_error::deserialize(args).map_err(|e| format!("bad arguments for `{tool}`: {e}"))
}

/// Runs one call. A refusal or a failure is a tool error the client shows (with what was
/// wrong); only a name no tool has is a protocol error.
pub(super) async fn call(
    mcp: &OncallMcp,
    c: &Caller,
    request: CallToolRequestParams,
    ctx: RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    let st = &mcp.st;
    let progress = request
        .progress_token()
        .or_else(|| ctx.meta.get_progress_token());
    let name = request.name.to_string();
    let args = Value::Object(request.arguments.unwrap_or_default());
    let shown: String = name.chars().take(100).collect();
    tracing::info!(caller = %c.name, tool = %shown, "MCP tool call");
    let Ok(_running) = mcp.running.clone().try_acquire_owned() else {
        return Ok(refused(format!(
            "oncall is running {} MCP tool calls already; retry in a few seconds",
            super::AT_ONCE
        )));
    };
    let answered = match name.as_str() {
        "get_board" | "get_postmortem" | "list_incidents" => {
            if let Err(why) = holds(c, Role::Viewer, &format!("`{name}`")) {
                return Ok(refused(why));
            }
            read_incident(mcp, &name, args).await
        }
        "start_investigation" => {
            if let Err(why) = holds(c, Role::Responder, "starting an investigation") {
                return Ok(refused(why));
            }
            let a: StartArgs = match parse(&name, args) {
                Ok(a) => a,
                Err(why) => return Ok(refused(why)),
            };
            start(mcp, c, a, progress, &ctx).await
        }
        "request_action" => {
            if let Err(why) = holds(c, Role::Responder, "requesting an action") {
                return Ok(refused(why));
            }
            let a: RequestArgs = match parse(&name, args) {
                Ok(a) => a,
                Err(why) => return Ok(refused(why)),
            };
            file_action(st, c, &a.incident, &a.tool, a.args, &a.why)
                .await
                .map(|filed| {
                    let mut v = serde_json::to_value(&filed).unwrap_or(Value::Null);
                    v["note"] = json!("filed, not run: a human approver decides it (web page, Slack, or POST /api/v1/approvals/{id}/decision)");
                    mcp.budgeted(&v.to_string())
                })
        }
        _ => match st.registry.spec(&name) {
            None => {
                return Err(ErrorData::invalid_params(
                    format!("no tool named `{shown}`; tools/list lists the ones you may call"),
                    None,
                ));
            }
            Some(spec) if spec.risk != RiskClass::Read => {
                let risk = serde_json::to_value(spec.risk).unwrap_or(Value::Null);
                return Ok(refused(format!(
                    "`{name}` is a {} tool: it never runs over MCP. Ask for it with request_action; a human approver decides.",
                    risk.as_str().unwrap_or("risky")
                )));
            }
            Some(spec) if spec.unavailable => {
                return Ok(refused(format!(
                    "`{name}` is unavailable now (not configured, or its MCP server failed a moment ago); try the others"
                )));
            }
            Some(_) => {
                if let Err(why) = holds(c, Role::Responder, "running a tool") {
                    return Ok(refused(why));
                }
                // Bounded in time, and dropped when the client gives up.
                let limit = Duration::from_secs(st.config.server.request_timeout_s.max(1));
                let ran = tokio::select! {
                    r = tokio::time::timeout(limit, st.registry.call(&name, args, None)) => r,
                    _ = ctx.ct.cancelled() => return Ok(refused("cancelled by the client")),
                };
                return Ok(match ran {
                    Ok(Ok(out)) => {
                        let out = crate::redact::redacted(&out);
                        text(mcp.budgeted(&out.to_string()))
                    }
                    Ok(Err(e)) => refused(mcp.budgeted(&e.to_string())),
                    Err(_) => refused(format!(
                        "`{name}` did not answer within {} s ([server] request_timeout_s)",
                        limit.as_secs()
                    )),
                });
            }
        },
    };
    Ok(match answered {
        Ok(t) => text(t),
        Err(e) => refused(mcp.budgeted(&e.message())),
    })
}

async fn read_incident(mcp: &OncallMcp, name: &str, args: Value) -> Result<String, ApiError> {
    let st = &mcp.st;
    if name == "list_incidents" {
        let a: ListArgs = parse(name, args).map_err(ApiError::BadRequest)?;
        let list = st.store.list(a.limit.unwrap_or(20).clamp(1, 100)).await?;
        let rows: Vec<Value> = list
            .iter()
            .map(|i| json!({"id": i.id, "title": i.title, "status": i.status, "severity": i.severity, "created_at": i.created_at}))
            .collect();
        return Ok(mcp.budgeted(&Value::Array(rows).to_string()));
    }
    let a: IncidentArgs = parse(name, args).map_err(ApiError::BadRequest)?;
    if name == "get_postmortem" {
        return Ok(mcp.budgeted(&postmortem_markdown(st, &a.incident).await?));
    }
    Ok(mcp.budgeted(&board(st, &a.incident).await?.to_string()))
}

/// An incident's board: its last finished round (hypotheses with status, confidence and cited
/// evidence; conclusion; severity; next steps), the hypotheses of a round still running, and
/// its action requests.
pub(super) async fn board(st: &Arc<AppState>, id: &str) -> Result<Value, ApiError> {
    let inc = incident_or_404(st, id).await?;
    let events = st.store.events(id, 0, 100_000).await?;
    let running = st.running.contains(id);
    let finished = events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::InvestigationFinished);
    let since = finished.map_or(0, |e| e.seq);
    // Hypotheses moved after the last finished round: the round running now.
    let mut live: Vec<Value> = vec![];
    for e in events
        .iter()
        .filter(|e| e.seq > since && e.kind == EventKind::HypothesisChanged)
    {
        live.retain(|h| h["id"] != e.data["id"]);
        live.push(e.data.clone());
    }
    let requests = approvals_of(st, Some(id), None).await?;
    let pick = |k: &str| finished.map_or(Value::Null, |e| e.data[k].clone());
    Ok(json!({
        "incident": {"id": inc.id, "title": inc.title, "status": inc.status, "severity": inc.severity},
        "running": running,
        "round": pick("round"),
        "conclusion": pick("conclusion"),
        "severity": pick("severity"),
        "abstained": pick("abstained"),
        "hypotheses": pick("hypotheses"),
        "next_steps": pick("next_steps"),
        "stabilize": pick("stabilize"),
        "hypotheses_of_the_running_round": live,
        "action_requests": requests,
    }))
}

/// A line of progress for an event of the running round.
fn progress_line(e: &Event) -> String {
    let d = &e.data;
    let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
    match e.kind {
        EventKind::ToolCalled => format!("calling {}", s("tool")),
        EventKind::ToolAnswered => format!("{} answered", s("tool")),
        EventKind::HypothesisChanged => format!(
            "hypothesis {}: {} ({}, confidence {})",
            s("id"),
            s("statement"),
            s("status"),
            d["confidence"]
        ),
        EventKind::ModelStep => format!("step {} done", d["step"]),
        EventKind::ModelText => format!("model: {}", s("text").trim_end()),
        EventKind::Notice => s("message"),
        ref k => k.to_string(),
    }
}

async fn start(
    mcp: &OncallMcp,
    c: &Caller,
    a: StartArgs,
    progress: Option<rmcp::model::ProgressToken>,
    ctx: &RequestContext<RoleServer>,
) -> Result<String, ApiError> {
    let st = &mcp.st;
    let mut max = st.config.mcp.wait_s;
    // Over HTTP without progress, nothing is sent before the answer: it must come within the
    // server's request timeout.
    if progress.is_none() && mcp.local.is_none() {
        max = max.min(st.config.server.request_timeout_s.saturating_sub(5).max(1));
    }
    let wait = Duration::from_secs(a.wait_s.unwrap_or(max).min(max));
    // Listening before the incident exists: no event of its round goes unseen.
    let mut bus = st.bus.subscribe();
    let mut changed = st.running.subscribe();
    let slot = st
        .investigation_slot(&c.name, "a new incident")
        .map_err(ApiError::OverCap)?;
    let id = open_incident(st, &a.question, a.title.as_deref(), "mcp", &c.name).await?;
    slot.relabel(&format!("incident {id}"));
    start_round_holding(st, &id, slot);
    let deadline = tokio::time::Instant::now() + wait;
    let mut step = 0u32;
    while st.running.contains(&id) {
        tokio::select! {
            m = bus.recv() => match m {
                Ok(p) if p.incident == id => {
                    if let (Some(e), Some(token)) = (p.event, progress.clone()) {
                        step += 1;
                        let line = crate::redact::redact(&progress_line(&e));
                        let line: String = line.chars().take(300).collect();
                        // A client that stops reading does not hold the round's watch.
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            ctx.peer.notify_progress(
                                ProgressNotificationParam::new(token, f64::from(step))
                                    .with_message(line),
                            ),
                        )
                        .await;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            // The client gave up; the investigation goes on.
            _ = ctx.ct.cancelled() => break,
        }
    }
    let mut b = board(st, &id).await?;
    b["events"] = json!(format!("/api/v1/incidents/{id}/events"));
    if b["running"] == json!(true) {
        b["note"] = json!("still running: call get_board with this incident id later");
    }
    Ok(mcp.budgeted(&b.to_string()))
}
