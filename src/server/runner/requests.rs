//! Filing action requests at the approval desk, people's and the agent's alike: each is shared
//! through the store before it is announced in the incident's log.

use crate::incidents::EventKind;
use crate::policy::rules::Actor;
use crate::server::{AppState, replicas};
use crate::tool::RiskClass;
use serde_json::{Value, json};
use std::sync::Arc;

/// Why a request was not filed, or was filed and not announced.
pub enum FileError {
    /// The desk refused it (policy, arguments) or could not audit it: it does not exist.
    Desk(crate::desk::DeskError),
    /// It exists at the desk, but its `action_requested` event could not be stored.
    Store(crate::incidents::StoreError),
}

/// Files a request for `tool` at the desk and announces it: the `action_requested` event with
/// its dry run, and the metric (the event's subscribers, Slack among them, show it). Shared by
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
pub(super) async fn file_request(
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
    if let Err(e) = replicas::sync(st).await {
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
