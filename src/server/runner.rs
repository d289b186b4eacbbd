//! Investigations and actions in the background, each step written to the incident's log.
//!
//! A round of investigation runs the same agent as `oncall triage`; every agent event becomes an
//! incident event the moment it happens (so it streams live), the finished board becomes an
//! `investigation_finished` event, and each stabilizing action it proposes is filed at the
//! approval desk as a request by the `model`, on behalf of the human driving the investigation
//! (the agent can only ask; under a `two_person` rule that human cannot approve it). An approved
//! request runs in the background: `action_executing` (its write-ahead record is durable first),
//! `action_executed`, then `action_verified` with the measured effect.

use super::AppState;
use crate::agent::events::{Event as AgentEvent, EventSink};
use crate::incidents::{Event, EventKind, Status};
use crate::policy::Human;
use crate::policy::rules::Actor;
use crate::tool::RiskClass;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Forwards agent events into a channel; a writer task appends them in order.
struct Forward(mpsc::UnboundedSender<AgentEvent>);

impl EventSink for Forward {
    fn emit(&self, event: &AgentEvent) {
        let _ = self.0.send(event.clone());
    }
}

/// The incident event for an agent event: its kind and data (the agent's own fields).
fn as_incident_event(e: &AgentEvent) -> Option<(EventKind, Value)> {
    let kind = match e {
        // Written by the round itself, with more to say.
        AgentEvent::Started { .. } | AgentEvent::Finished { .. } => return None,
        AgentEvent::ModelStep { .. } => EventKind::ModelStep,
        AgentEvent::ToolCalled { .. } => EventKind::ToolCalled,
        AgentEvent::ToolAnswered { .. } => EventKind::ToolAnswered,
        AgentEvent::HypothesisChanged { .. } => EventKind::HypothesisChanged,
        AgentEvent::Notice { .. } => EventKind::Notice,
    };
    let mut v = serde_json::to_value(e).ok()?;
    if let Some(o) = v.as_object_mut() {
        o.remove("event");
    }
    Some((kind, v))
}

/// What a new round investigates: the report, then every message people posted since.
pub fn round_text(events: &[Event]) -> String {
    let mut text = String::new();
    for e in events {
        let t = e.data["text"].as_str().unwrap_or_default();
        match e.kind {
            EventKind::Report => {
                text.push_str(t);
                text.push('\n');
            }
            EventKind::Message => {
                text.push_str(&format!("Follow-up from {}: {t}\n", e.actor));
            }
            _ => {}
        }
    }
    text
}

/// The human driving an investigation: whoever posted its report or, later, the last message.
/// Telemetry never posts events, so no text inside it can become the driver.
pub fn driver(events: &[Event]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| e.kind.is_said() && e.actor != "oncall")
        .map(|e| e.actor.clone())
}

/// Starts a round of investigation in the background (unless one is running for this incident).
/// Returns false when one was already running.
pub fn start_round(st: &Arc<AppState>, incident: &str) -> bool {
    {
        let Ok(mut running) = st.running.lock() else {
            return false;
        };
        if !running.insert(incident.to_string()) {
            return false;
        }
    }
    let (st, incident) = (st.clone(), incident.to_string());
    tokio::spawn(async move {
        // Leaves the running set however the round ends, a panic included.
        struct Running(Arc<AppState>, String);
        impl Drop for Running {
            fn drop(&mut self) {
                if let Ok(mut running) = self.0.running.lock() {
                    running.remove(&self.1);
                }
            }
        }
        let _running = Running(st.clone(), incident.clone());
        if let Err(e) = round(&st, &incident).await {
            tracing::error!("investigation of {incident}: {e}");
            st.metrics
                .count(&st.metrics.investigations, &[("outcome", "error")]);
            let _ = st
                .publish(
                    &incident,
                    EventKind::Notice,
                    "oncall",
                    json!({"message": format!("the investigation stopped: {e}")}),
                )
                .await;
            let _ = st.set_status(&incident, Status::Waiting, None).await;
        }
    });
    true
}

async fn round(st: &Arc<AppState>, incident: &str) -> Result<(), String> {
    // Investigating (owned by this replica) before waiting for a turn: a round still queued at a
    // crash is marked interrupted at the next start like a running one.
    st.set_status(incident, Status::Investigating, None)
        .await
        .map_err(|e| e.to_string())?;
    let _turn = match st.investigations.try_acquire() {
        Ok(p) => p,
        Err(_) => {
            st.publish(
                incident,
                EventKind::Notice,
                "oncall",
                json!({"message": "every investigator is busy; this one starts when one is free"}),
            )
            .await
            .map_err(|e| e.to_string())?;
            st.investigations
                .acquire()
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let started = std::time::Instant::now();
    let history = st
        .store
        .events(incident, 0, 100_000)
        .await
        .map_err(|e| e.to_string())?;
    let text = round_text(&history);
    let driver = driver(&history);
    let n = history
        .iter()
        .filter(|e| e.kind == EventKind::InvestigationStarted)
        .count()
        + 1;
    let model = match crate::app::model(&st.config) {
        Ok(m) => m,
        Err(e) => {
            st.publish(
                incident,
                EventKind::Notice,
                "oncall",
                json!({"message": format!("the model is not available ({e}); the offline reasoner investigates")}),
            )
            .await
            .map_err(|e| e.to_string())?;
            Box::new(crate::reasoner::OfflineModel::new(
                st.config.thresholds.clone(),
            ))
        }
    };
    st.publish(
        incident,
        EventKind::InvestigationStarted,
        "oncall",
        json!({"round": n, "reasoner": model.name()}),
    )
    .await
    .map_err(|e| e.to_string())?;

    let (tx, mut rx) = mpsc::unbounded_channel::<AgentEvent>();
    let writer = {
        let (st, incident) = (st.clone(), incident.to_string());
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                match &e {
                    AgentEvent::ToolAnswered { tool, ok, ms, .. } => {
                        let ok = if *ok { "ok" } else { "error" };
                        st.metrics
                            .count(&st.metrics.tool_calls, &[("tool", tool), ("result", ok)]);
                        st.metrics
                            .tool_seconds
                            .get_or_create(&super::metrics::labels(&[("tool", tool)]))
                            .observe(*ms as f64 / 1000.0);
                    }
                    AgentEvent::ModelStep {
                        prompt_tokens,
                        completion_tokens,
                        ..
                    } => {
                        st.metrics
                            .tokens
                            .get_or_create(&super::metrics::labels(&[("kind", "prompt")]))
                            .inc_by(*prompt_tokens);
                        st.metrics
                            .tokens
                            .get_or_create(&super::metrics::labels(&[("kind", "completion")]))
                            .inc_by(*completion_tokens);
                    }
                    _ => {}
                }
                if let Some((kind, data)) = as_incident_event(&e)
                    && let Err(err) = st.publish(&incident, kind, "oncall", data).await
                {
                    tracing::error!("incident {incident}: event not stored: {err}");
                }
            }
        })
    };
    let result = crate::reasoner::investigate(
        &text,
        &st.registry,
        &st.config,
        model.as_ref(),
        &Forward(tx),
    )
    .await;
    // Every agent event is in the log before the round's result.
    let _ = writer.await;
    st.metrics
        .investigation_seconds
        .get_or_create(&vec![])
        .observe(started.elapsed().as_secs_f64());
    let inv = match result {
        Ok(inv) => inv,
        Err(e) => {
            st.metrics
                .count(&st.metrics.investigations, &[("outcome", "failed")]);
            st.publish(
                incident,
                EventKind::Notice,
                "oncall",
                json!({"message": format!("the investigation failed: {e}")}),
            )
            .await
            .map_err(|e| e.to_string())?;
            st.set_status(incident, Status::Waiting, None)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
    };
    st.metrics.count(
        &st.metrics.investigations,
        &[(
            "outcome",
            if inv.abstained { "no_fault" } else { "finding" },
        )],
    );
    st.publish(
        incident,
        EventKind::InvestigationFinished,
        "oncall",
        json!({
            "round": n,
            "reasoner": inv.reasoner,
            "conclusion": inv.conclusion,
            "severity": inv.triage.severity,
            "triage": inv.triage,
            "hypotheses": inv.hypotheses,
            "abstained": inv.abstained,
            "stabilize": inv.stabilize,
            "next_steps": inv.next_steps,
            "debug_log": inv.debug_log,
            "answer": inv.answer,
            "notices": inv.notices,
            "tokens": inv.tokens,
        }),
    )
    .await
    .map_err(|e| e.to_string())?;
    let evidence: Vec<Value> = inv
        .tool_calls
        .iter()
        .filter_map(|c| c.output.clone())
        .collect();
    for a in &inv.stabilize {
        file_request(
            st,
            incident,
            &a.tool,
            &a.args,
            &a.why,
            driver.as_deref(),
            &evidence,
        )
        .await;
    }
    st.set_status(incident, Status::Waiting, Some(&inv.triage.severity))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Why a request was not filed, or was filed and not announced.
pub enum FileError {
    /// The desk refused it (policy, arguments) or could not audit it: it does not exist.
    Desk(crate::desk::DeskError),
    /// It exists at the desk, but its `action_requested` event could not be stored.
    Store(crate::incidents::StoreError),
}

/// Files a request for `tool` at the desk and announces it: the `action_requested` event with
/// its dry run, the metric, and the approval message in the incident's Slack thread. Shared by
/// the agent's proposals (`who` = the model, `on_behalf_of` the human driving) and people's
/// requests. Returns the request id and its plan.
#[allow(clippy::too_many_arguments)]
pub async fn file(
    st: &Arc<AppState>,
    incident: &str,
    tool: &str,
    args: &Value,
    who: &str,
    actor: Actor,
    on_behalf_of: Option<&str>,
    why: &str,
    evidence: &[Value],
) -> Result<(String, Option<Value>), FileError> {
    let req = st
        .desk
        .request_for(
            &st.registry,
            incident,
            tool,
            args.clone(),
            who,
            actor,
            on_behalf_of,
            evidence,
        )
        .map_err(FileError::Desk)?;
    // Filed in the store every replica shares: any replica can list, decide and run it. A
    // request that cannot be shared is denied here, so it never runs on this replica alone.
    if let Some(row) = st.desk.row(&req.id)
        && let Err(e) = st.store.approval_put(&row).await
    {
        let _ = st.desk.abandon(
            &req.id,
            &format!("it could not be filed in the shared store ({e}); request it again"),
        );
        return Err(FileError::Store(e));
    }
    st.metrics
        .count(&st.metrics.approvals, &[("event", "requested")]);
    let plan = st.desk.entry(&req.id).and_then(|e| e.plan);
    let announced = st
        .publish(
            incident,
            EventKind::ActionRequested,
            who,
            json!({"request": req.id, "tool": tool, "args": req.args, "plan": plan, "why": why,
                   "requested_by": req.requested_by, "on_behalf_of": req.on_behalf_of}),
        )
        .await;
    announced.map_err(FileError::Store)?;
    Ok((req.id, plan))
}

/// Files the agent's request for a live action, unless the same one is already open.
async fn file_request(
    st: &Arc<AppState>,
    incident: &str,
    tool: &str,
    args: &Value,
    why: &str,
    driver: Option<&str>,
    evidence: &[Value],
) {
    let Some(spec) = st.registry.spec(tool) else {
        return; // `manual`: a step only a person can take; it is in the finished event.
    };
    if spec.risk == RiskClass::Read {
        return;
    }
    // Requests hold their arguments as bound (e.g. a process's identity added to its pid).
    let bound = st.registry.bind(tool, args.clone()).ok();
    // Requests filed on other replicas count too.
    if let Err(e) = super::replicas::sync(st).await {
        tracing::warn!("incident {incident}: the shared requests could not be read: {e}");
    }
    let open = st.desk.entries().into_iter().any(|e| {
        e.incident == incident
            && e.request.tool == tool
            && (&e.request.args == args || Some(&e.request.args) == bound.as_ref())
            && e.state == crate::desk::State::Pending
    });
    if open {
        return;
    }
    let filed = file(
        st,
        incident,
        tool,
        args,
        crate::policy::MODEL,
        Actor::Agent,
        driver,
        why,
        evidence,
    )
    .await;
    if let Err(FileError::Desk(e)) = filed {
        let _ = st
            .publish(
                incident,
                EventKind::Notice,
                "oncall",
                json!({"message": format!("{tool} {args} could not be filed for approval: {e}")}),
            )
            .await;
    }
}

/// Why a decision was refused, as an HTTP status and message.
pub enum DecideError {
    NotFound(String),
    Forbidden(String),
    Conflict(String),
    Internal(String),
    /// The shared store could not be read or written: nothing was decided; try again.
    Unavailable(String),
}

/// A human's decision on a request. An approval starts the execution in the background.
pub async fn decide(
    st: &Arc<AppState>,
    request: &str,
    human: &Human,
    approve: bool,
    reason: &str,
) -> Result<crate::desk::State, DecideError> {
    use crate::desk::{DeskError, State};
    // The store's word first: the request may have been filed or decided on another replica.
    super::replicas::sync(st).await.map_err(|e| {
        DecideError::Unavailable(format!("the shared store is unavailable ({e}); try again"))
    })?;
    // An approval that never ran (the server stopped, or the run was refused while it waited):
    // approving it again runs it, once, if this approver could have approved it.
    if approve
        && let Some(e) = st.desk.entry(request)
        && let State::Approved { .. } = e.state
        && !st.desk.executed(request)
    {
        st.desk
            .check_approver(&st.registry, &e.request, human, true)
            .map_err(|e| DecideError::Forbidden(e.to_string()))?;
        spawn_execute(st, &e.incident, request, &human.name);
        return Ok(e.state);
    }
    let map = |e: DeskError| match e {
        DeskError::NoSuchRequest(_) => DecideError::NotFound(e.to_string()),
        DeskError::Policy(_) => DecideError::Forbidden(e.to_string()),
        DeskError::Refused(m)
            if m.contains("may not") || m.contains("role") || m.contains("did not request") =>
        {
            DecideError::Forbidden(m)
        }
        DeskError::Refused(m) => DecideError::Conflict(m),
        DeskError::Audit(m) | DeskError::AuditAfterRun(m) => DecideError::Internal(m),
    };
    let decision = st
        .desk
        .prepare_decision(
            &st.registry,
            request,
            human,
            approve,
            reason,
            chrono::Utc::now(),
        )
        .map_err(map)?;
    // Audited here first, then moved in the store: of decisions made at once on several
    // replicas, the store takes one; the others are audited as not taken and answered 409.
    let state = st.desk.record_decision(&decision).map_err(map)?;
    let to = crate::incidents::ApprovalMove {
        phase: crate::incidents::phase_of(&serde_json::to_value(&state).unwrap_or_default()),
        state: serde_json::to_value(&state).unwrap_or_default(),
        approval: decision.approval_json(),
        replica: None,
        in_flight: false,
    };
    move_pending(st, request, &to, "this decision", "the decision on").await?;
    let Some(entry) = st.desk.entry(request) else {
        return Err(DecideError::NotFound(format!("request {request} vanished")));
    };
    let incident = entry.incident.clone();
    // The decision is in the audit log: the execution starts now, whatever happens to this
    // request's answer; the event and the Slack update below are best effort.
    if approve {
        spawn_execute(st, &incident, request, &human.name);
    }
    st.metrics.count(
        &st.metrics.approvals,
        &[("event", if approve { "approved" } else { "denied" })],
    );
    let (kind, data) = if approve {
        (
            EventKind::ActionApproved,
            json!({"request": request, "by": human.name}),
        )
    } else {
        (
            EventKind::ActionDenied,
            json!({"request": request, "by": human.name, "reason": reason}),
        )
    };
    if let Err(e) = st.publish(&incident, kind.clone(), &human.name, data).await {
        tracing::error!("incident {incident}: {kind} not stored: {e}");
    }
    Ok(state)
}

/// Runs an approved request in the background.
fn spawn_execute(st: &Arc<AppState>, incident: &str, request: &str, executor: &str) {
    let (st, incident) = (st.clone(), incident.to_string());
    let (request, executor) = (request.to_string(), executor.to_string());
    tokio::spawn(async move { execute(&st, &incident, &request, &executor).await });
}

/// Runs an approved request once and records what it did and what it changed.
async fn execute(st: &Arc<AppState>, incident: &str, request: &str, executor: &str) {
    if let Err(e) = super::replicas::sync(st).await {
        tracing::warn!("request {request}: the shared requests could not be read: {e}");
    }
    let Some(entry) = st.desk.entry(request) else {
        return;
    };
    // `action_executed` is written the moment the action returns; `action_verified` after the
    // effect was measured (the system is given time to settle first).
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<Value, String>>();
    let ran = {
        let (st, incident, request) = (st.clone(), incident.to_string(), request.to_string());
        let (tool, executor) = (entry.request.tool.clone(), executor.to_string());
        tokio::spawn(async move {
            let Ok(output) = rx.await else { return };
            st.metrics.count(
                &st.metrics.approvals,
                &[("event", if output.is_ok() { "executed" } else { "failed" })],
            );
            let data = match &output {
                Ok(out) => json!({"request": request, "tool": tool, "ok": true, "output": out}),
                Err(e) => json!({"request": request, "tool": tool, "ok": false, "error": e}),
            };
            let _ = st
                .publish(&incident, EventKind::ActionExecuted, &executor, data)
                .await;
        })
    };
    // The start is in the incident's log (committed) before the action runs.
    let starting: crate::desk::Starting = {
        let (st, incident, request) = (st.clone(), incident.to_string(), request.to_string());
        let (tool, executor) = (entry.request.tool.clone(), executor.to_string());
        Box::new(move || {
            Box::pin(async move {
                st.publish(
                    &incident,
                    EventKind::ActionExecuting,
                    &executor,
                    json!({"request": request, "tool": tool}),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            })
        })
    };
    let result = st
        .desk
        .execute_reporting(
            &st.registry,
            request,
            &entry.request.tool,
            &entry.request.args,
            executor,
            Some(starting),
            Some(Box::new(move |o: &Result<Value, String>| {
                let _ = tx.send(o.clone());
            })),
        )
        .await;
    let _ = ran.await;
    match result {
        Ok(x) => {
            let _ = st
                .publish(
                    incident,
                    EventKind::ActionVerified,
                    "oncall",
                    json!({"request": request, "tool": entry.request.tool,
                           "ok": x.output.is_ok(), "effect": x.effect}),
                )
                .await;
        }
        // Another replica claimed it first (approvals sent to several replicas at once): it
        // runs there, and that replica tells the incident.
        Err(crate::desk::DeskError::Refused(m)) if m.contains(crate::desk::CLAIMED_ELSEWHERE) => {
            tracing::info!("request {request}: {m}");
        }
        Err(e) => {
            st.metrics
                .count(&st.metrics.approvals, &[("event", "refused")]);
            let _ = st
                .publish(
                    incident,
                    EventKind::Notice,
                    "oncall",
                    json!({"message": match &e {
                        crate::desk::DeskError::AuditAfterRun(_) => format!("request {request}: {e}"),
                        _ => format!("request {request} was not run: {e}"),
                    }}),
                )
                .await;
        }
    }
}

/// A requester takes back their pending request.
pub async fn withdraw(
    st: &Arc<AppState>,
    request: &str,
    human: &Human,
    reason: &str,
) -> Result<crate::desk::State, DecideError> {
    use crate::desk::DeskError;
    super::replicas::sync(st).await.map_err(|e| {
        DecideError::Unavailable(format!("the shared store is unavailable ({e}); try again"))
    })?;
    let state = st
        .desk
        .withdraw(request, human, reason)
        .map_err(|e| match e {
            DeskError::NoSuchRequest(_) => DecideError::NotFound(e.to_string()),
            DeskError::Refused(m) if m.contains("did not request") => DecideError::Forbidden(m),
            DeskError::Refused(m) => DecideError::Conflict(m),
            DeskError::Policy(p) => DecideError::Forbidden(p.to_string()),
            DeskError::Audit(m) | DeskError::AuditAfterRun(m) => DecideError::Internal(m),
        })?;
    // As a decision: audited here, then moved in the store, where one move wins.
    let to = crate::incidents::ApprovalMove {
        phase: "withdrawn".into(),
        state: serde_json::to_value(&state).unwrap_or_default(),
        approval: None,
        replica: None,
        in_flight: false,
    };
    move_pending(st, request, &to, "the withdrawal", "the withdrawal of").await?;
    st.metrics
        .count(&st.metrics.approvals, &[("event", "withdrawn")]);
    if let Some(entry) = st.desk.entry(request) {
        let data = json!({"request": request, "tool": entry.request.tool, "by": human.name,
                          "reason": reason});
        if let Err(e) = st
            .publish(
                &entry.incident,
                EventKind::ActionWithdrawn,
                &human.name,
                data,
            )
            .await
        {
            tracing::error!(
                "incident {}: action_withdrawn not stored: {e}",
                entry.incident
            );
        }
    }
    Ok(state)
}

/// After a restart: each request whose action may or may not have run (oncall stopped between
/// its `executing` record and its result) is announced once in its incident, with what to check
/// by hand. Returns how many were announced.
pub async fn announce_unknown_outcomes(st: &Arc<AppState>) -> Result<usize, String> {
    use crate::desk::State;
    let mut n = 0;
    super::replicas::sync(st).await.map_err(|e| e.to_string())?;
    for e in st.desk.entries() {
        let State::OutcomeUnknown { verify, .. } = &e.state else {
            continue;
        };
        let events = st
            .store
            .events(&e.incident, 0, 100_000)
            .await
            .map_err(|e| e.to_string())?;
        let told = events.iter().any(|ev| {
            ev.kind == EventKind::ActionOutcomeUnknown && ev.data["request"] == json!(e.request.id)
        });
        if told {
            continue;
        }
        st.publish(
            &e.incident,
            EventKind::ActionOutcomeUnknown,
            "oncall",
            json!({"request": e.request.id, "tool": e.request.tool, "verify": verify}),
        )
        .await
        .map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

/// After a restart: every investigation this replica was running is marked interrupted, and
/// its executions cut in flight become `outcome_unknown` (as a live replica does for a dead one).
pub async fn mark_interrupted(st: &Arc<AppState>) -> Result<usize, String> {
    let me = st.replica.clone();
    super::replicas::take_over(
        st,
        &me,
        "oncall stopped during this investigation; resume it to run it again",
    )
    .await
}

/// Moves a pending request to `to` in the shared store, where one move wins across replicas.
/// When this move did not win (decided elsewhere first, gone, or the store is down), the desk
/// records that `what` ("this decision", "the withdrawal") did not take and re-reads the store.
async fn move_pending(
    st: &AppState,
    request: &str,
    to: &crate::incidents::ApprovalMove,
    what: &str,
    what_of: &str,
) -> Result<(), DecideError> {
    let moved = st.store.approval_move(request, &["pending"], to).await;
    let why = match &moved {
        Ok(crate::incidents::Moved::Moved) => return Ok(()),
        Ok(crate::incidents::Moved::Stale(Some(phase))) => format!(
            "request {request} was decided elsewhere first (it is {phase}); {what} did not take"
        ),
        Ok(_) => format!("request {request} is not in the shared store; {what} did not take"),
        Err(e) => format!(
            "{what_of} request {request} could not be stored ({e}); it did not take: try again"
        ),
    };
    let _ = st.desk.decision_not_taken(request, &why);
    let _ = super::replicas::sync(st).await;
    Err(match moved {
        Err(_) => DecideError::Unavailable(why),
        Ok(_) => DecideError::Conflict(why),
    })
}
