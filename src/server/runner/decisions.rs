//! People's word on a pending request: a decision ([`decide`]) or its requester taking it back
//! ([`withdraw`]). Each is audited first, then moved in the shared store, where one move wins
//! across replicas.

use super::execute::spawn_execute;
use crate::incidents::EventKind;
use crate::policy::Human;
use crate::server::{AppState, replicas};
use serde_json::json;
use std::sync::Arc;

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
    replicas::sync(st).await.map_err(|e| {
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
    // request's answer; the event below is best effort.
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

/// A requester takes back their pending request.
pub async fn withdraw(
    st: &Arc<AppState>,
    request: &str,
    human: &Human,
    reason: &str,
) -> Result<crate::desk::State, DecideError> {
    use crate::desk::DeskError;
    replicas::sync(st).await.map_err(|e| {
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
    let _ = replicas::sync(st).await;
    Err(match moved {
        Err(_) => DecideError::Unavailable(why),
        Ok(_) => DecideError::Conflict(why),
    })
}
