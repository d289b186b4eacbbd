//! Replicas sharing one store: claiming an execution there, and taking the store's word for
//! each request's state.

use super::records::{entry_of, request_record};
use super::{Desk, Entry, State};
use crate::policy::{Approval, canonical_hash};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;

/// Part of the refusal of an execution another replica claimed (or ran) first.
pub const CLAIMED_ELSEWHERE: &str = "in the shared store, not approved";

/// What [`Shared::claim`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This desk runs it: no other desk can any more.
    Claimed,
    /// Another request of the same incident is in flight (its id), maybe on another replica.
    Busy(String),
    /// It is no longer approved in the shared store: its phase there (e.g. `executing` on
    /// another replica, `executed`, `outcome_unknown`).
    Gone(String),
}

/// Why the shared store did not take a step of an execution.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(transparent)]
    Store(#[from] crate::incidents::StoreError),
    /// The request was not in the phase this replica left it in.
    #[error("it was no longer executing here ({0}): another replica took this one for dead")]
    TakenOver(String),
}

/// The shared store's side of an execution, when several replicas share one store: the claim
/// (`approved` -> `executing`, one in flight per incident) is what makes a request run once
/// across replicas; the desk's own checks and its audit records stay as they are.
#[async_trait::async_trait]
pub trait Shared: Send + Sync {
    /// Claims `request` for `executor`: it runs here, and nowhere else.
    async fn claim(&self, request: &str, executor: &str) -> Result<Claim, SharedError>;
    /// Gives a claimed request back (`approved`, as `state`): nothing was run.
    async fn unclaim(&self, request: &str, state: &State) -> Result<(), SharedError>;
    /// Records a claimed request's result (`executed`); it stays in flight.
    async fn finished(&self, request: &str, state: &State) -> Result<(), SharedError>;
    /// Its effect is recorded: the incident's next action may run.
    async fn release(&self, request: &str) -> Result<(), SharedError>;
}

impl Desk {
    /// Gives a claimed request back to the shared store (nothing ran).
    pub(super) async fn unclaim(&self, request: &str, state: &State) {
        if let Some(sh) = &self.shared
            && let Err(e) = sh.unclaim(request, state).await
        {
            tracing::error!("request {request}: could not give it back in the shared store: {e}");
        }
    }

    /// Records a claimed request's result in the shared store.
    pub(super) async fn shared_finished(&self, request: &str, state: State) {
        if let Some(sh) = &self.shared
            && let Err(e) = sh.finished(request, &state).await
        {
            tracing::error!("request {request}: its result is not in the shared store: {e}");
        }
    }

    /// Frees the incident's shared slot once the request's effect is recorded.
    pub(super) async fn shared_release(&self, request: &str) {
        if let Some(sh) = &self.shared
            && let Err(e) = sh.release(request).await
        {
            tracing::error!(
                "request {request}: its in-flight mark is still in the shared store: {e}"
            );
        }
    }

    /// Result and release at once (a request that ended without running).
    pub(super) async fn shared_done(&self, request: &str, state: State) {
        self.shared_finished(request, state).await;
        self.shared_release(request).await;
    }

    /// Where this desk is one of several sharing a store: executions are claimed there.
    pub fn with_shared(mut self, shared: Arc<dyn Shared>) -> Desk {
        self.shared = Some(shared);
        self
    }

    /// The shared store's row for a request this desk knows, as it stands here.
    pub fn row(&self, id: &str) -> Option<crate::incidents::ApprovalRow> {
        let e = self.entry(id)?;
        let state = serde_json::to_value(&e.state).unwrap_or(Value::Null);
        Some(crate::incidents::ApprovalRow {
            id: e.request.id.clone(),
            incident: e.incident.clone(),
            request: request_record(&e.incident, &e.request, None, &e.plan),
            created_at: e.request.created_at,
            phase: crate::incidents::phase_of(&state),
            state,
            approval: e
                .approval
                .as_ref()
                .map(|a| json!({"approved_by": a.approved_by(), "expires_at": a.expires_at()})),
            replica: None,
            in_flight: false,
        })
    }

    /// Every request this desk knows, as shared store rows.
    pub fn rows(&self) -> Vec<crate::incidents::ApprovalRow> {
        self.entries()
            .iter()
            .filter_map(|e| self.row(&e.request.id))
            .collect()
    }

    /// Takes the shared store's word for every request in `rows`: requests filed on other
    /// replicas appear here, and each request's state is the store's. The request itself (tool,
    /// exact arguments, requester) is checked against the hashes filed with it, as a restore from
    /// the audit log is; an altered one comes back denied.
    pub fn merge(&self, rows: &[crate::incidents::ApprovalRow]) {
        let (Ok(mut entries), Ok(mut executed)) = (self.entries.lock(), self.executed.lock())
        else {
            return;
        };
        for row in rows {
            let fresh = entry_of(&row.request, row.created_at);
            if fresh.request.id != row.id {
                continue;
            }
            let state = if matches!(fresh.state, State::Denied { .. }) {
                fresh.state.clone()
            } else {
                serde_json::from_value::<State>(row.state.clone()).unwrap_or(State::Denied {
                    by: "oncall".into(),
                    reason: "its state in the shared store is unreadable; request it again".into(),
                })
            };
            if matches!(
                state,
                State::Executing { .. } | State::Executed { .. } | State::OutcomeUnknown { .. }
            ) {
                executed.insert(row.id.clone());
            }
            let at = entries.iter().position(|e| e.request.id == row.id);
            let request = match at {
                Some(i) => entries[i].request.clone(),
                None => fresh.request.clone(),
            };
            // The approval binds this request's own tool, exact arguments and evidence.
            let approval = match (&state, &row.approval) {
                (State::Approved { by }, Some(a)) => a["expires_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| Approval::restored(&request, by.clone(), t.with_timezone(&Utc))),
                _ => None,
            };
            match at {
                // Known here: the store decides where it stands (same request: same id).
                Some(i) => {
                    if canonical_hash(&entries[i].request.args)
                        != canonical_hash(&fresh.request.args)
                        || entries[i].request.tool != fresh.request.tool
                    {
                        continue;
                    }
                    entries[i].state = state;
                    entries[i].approval = approval;
                }
                None => entries.push(Entry {
                    state,
                    approval,
                    ..fresh
                }),
            }
        }
    }
}
