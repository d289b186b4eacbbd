//! Several `oncall serve` replicas behind one load balancer, sharing one store.
//!
//! What lives in the store, so that any replica can answer any request:
//! - incidents and their events (streams on one replica poll the store, so they show what
//!   another replica appends);
//! - action requests and where they stand (`approvals`): every decision and every execution
//!   goes through one conditional transition there ([`crate::incidents::Store::approval_move`]),
//!   so a request is decided once and runs once, on the one replica that claimed it, and one
//!   action is in flight per incident across replicas. The desk of each replica keeps a copy
//!   ([`crate::desk::Desk::merge`]) and still makes every check it makes alone;
//! - keys already seen, with their expiry: Slack retries (`event_id`) and replayed signatures,
//!   repeated Alertmanager notifications;
//! - heartbeats: each replica beats every `[server] replica_timeout_s / 5` seconds and records
//!   where its audit log stands. A replica silent for `replica_timeout_s` is dead: the first live
//!   replica to notice marks its investigations interrupted (each exactly once, with an
//!   `interrupted` event naming both) and its executions in flight `outcome_unknown` (never run
//!   again; a person verifies them).
//!
//! Each replica keeps its own hash-chained audit log (one writer per file); the heartbeat records
//! its last sequence number and hash, which `oncall audit verify --replicas` checks each file
//! against.

use super::AppState;
use crate::desk::{Claim, Shared, SharedError, State};
use crate::incidents::{ApprovalMove, EventKind, Moved, ReplicaRow, Status, Store, StoreError};
use serde_json::json;
use std::sync::Arc;

/// The desk's view of the shared store: claims, results and releases of executions.
pub(crate) struct StoreShared {
    pub store: Arc<dyn Store>,
    pub replica: String,
}

fn state_json(s: &State) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
}

#[async_trait::async_trait]
impl Shared for StoreShared {
    async fn claim(&self, request: &str, executor: &str) -> Result<Claim, SharedError> {
        let to = ApprovalMove {
            phase: "executing".into(),
            state: state_json(&State::Executing {
                by: executor.to_string(),
            }),
            approval: None,
            replica: Some(self.replica.clone()),
            in_flight: true,
        };
        match self.store.approval_move(request, &["approved"], &to).await {
            Ok(Moved::Moved) => Ok(Claim::Claimed),
            Ok(Moved::Busy(other)) => Ok(Claim::Busy(other)),
            Ok(Moved::Stale(phase)) => Ok(Claim::Gone(
                phase.unwrap_or_else(|| "not filed".to_string()),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn unclaim(&self, request: &str, state: &State) -> Result<(), SharedError> {
        let to = ApprovalMove {
            phase: "approved".into(),
            state: state_json(state),
            approval: None,
            replica: None,
            in_flight: false,
        };
        self.store
            .approval_move(request, &["executing"], &to)
            .await
            .map(|_| ())
            .map_err(SharedError::from)
    }

    async fn finished(&self, request: &str, state: &State) -> Result<(), SharedError> {
        let to = ApprovalMove {
            phase: "executed".into(),
            state: state_json(state),
            approval: None,
            replica: None,
            in_flight: true,
        };
        match self.store.approval_move(request, &["executing"], &to).await {
            Ok(Moved::Moved) => Ok(()),
            Ok(other) => Err(SharedError::TakenOver(format!("{other:?}"))),
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self, request: &str) -> Result<(), SharedError> {
        Ok(self.store.approval_release(request).await?)
    }
}

/// Reads every request's row from the store into this replica's desk.
pub(crate) async fn sync(st: &AppState) -> Result<(), StoreError> {
    let rows = st.store.approval_rows().await?;
    st.desk.merge(&rows);
    Ok(())
}

/// At start: requests this replica's audit log knows and the store does not (a log from before
/// the store kept them) are filed in the store as they stand here.
pub(crate) async fn backfill(st: &AppState) -> Result<usize, StoreError> {
    let mut n = 0;
    for row in st.desk.rows() {
        if st.store.approval_put(&row).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// This replica's heartbeat, with where its audit log stands.
pub(crate) async fn beat(st: &AppState) -> Result<(), StoreError> {
    let (seq, head) = st.audit.position();
    let file = st.audit.path().map(|p| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    });
    st.store
        .heartbeat(&ReplicaRow {
            name: st.replica.clone(),
            heartbeat: chrono::Utc::now().timestamp(),
            audit_file: file,
            audit_seq: seq as i64,
            audit_head: Some(head),
        })
        .await
}

/// Takes over what replica `dead` left unfinished: its investigations are marked interrupted
/// (once, whichever replica gets there first) and its executions in flight become
/// `outcome_unknown` (announced in their incidents; never run again). `dead` may be this
/// replica's own name, at its start after a crash. Returns how many investigations it marked.
pub(crate) async fn take_over(
    st: &Arc<AppState>,
    dead: &str,
    reason: &str,
) -> Result<usize, StoreError> {
    let stale = st.store.owned(dead, Status::Investigating).await?;
    let mut marked = 0;
    for inc in &stale {
        if st
            .store
            .interrupt(&inc.id, dead, reason, &st.replica)
            .await?
        {
            marked += 1;
            st.wake(&inc.id);
            tracing::warn!(
                "incident {}: its investigation on {dead} was interrupted; resume it to run it again",
                inc.id
            );
        }
    }
    let rows = st.store.approval_rows().await?;
    for row in rows
        .iter()
        .filter(|r| r.in_flight && r.replica.as_deref() == Some(dead))
    {
        match row.phase.as_str() {
            "executing" => {
                let tool = row.request["tool"].as_str().unwrap_or_default();
                let args = &row.request["args"];
                let verify = crate::desk::verify_by_hand(&st.registry, tool, args);
                let state = State::OutcomeUnknown {
                    approved_by: row
                        .approval
                        .as_ref()
                        .and_then(|a| a["approved_by"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    since: chrono::Utc::now(),
                    verify: verify.clone(),
                };
                let to = ApprovalMove {
                    phase: "outcome_unknown".into(),
                    state: state_json(&state),
                    approval: None,
                    replica: None,
                    in_flight: false,
                };
                let moved = st.store.approval_move(&row.id, &["executing"], &to).await?;
                if moved != Moved::Moved {
                    continue;
                }
                if let Err(e) = st.audit.append(
                    "outcome_unknown",
                    json!({"request": row.id, "incident": row.incident, "replica": dead,
                           "by": st.replica, "verify": verify}),
                ) {
                    tracing::error!("request {}: outcome_unknown not audited: {e}", row.id);
                }
                let _ = st
                    .publish(
                        &row.incident,
                        EventKind::ActionOutcomeUnknown,
                        "oncall",
                        json!({"request": row.id, "tool": tool, "verify": verify, "replica": dead}),
                    )
                    .await;
            }
            // It ran and its result is in: only the measure of its effect was cut.
            _ => {
                let _ = st.store.approval_release(&row.id).await;
            }
        }
    }
    sync(st).await?;
    Ok(marked)
}

/// Beats, forgets expired keys, and takes over from replicas that stopped beating, until the
/// process ends.
pub(crate) fn watch(st: Arc<AppState>) {
    let timeout = st.config.server.replica_timeout_s.max(1);
    let period = std::time::Duration::from_millis((timeout * 1000 / 5).max(500));
    tokio::spawn(async move {
        let mut round: u64 = 0;
        loop {
            if let Err(e) = beat(&st).await {
                tracing::warn!("replica heartbeat: {e}");
            }
            if round.is_multiple_of(60) {
                let _ = st.store.seen_purge().await;
            }
            round += 1;
            match st.store.replicas().await {
                Ok(all) => {
                    let now = chrono::Utc::now().timestamp();
                    for r in all
                        .iter()
                        .filter(|r| r.name != st.replica && now - r.heartbeat > timeout as i64)
                    {
                        let reason = format!(
                            "replica {} stopped during this investigation (no heartbeat for {} s); resume it to run it again",
                            r.name,
                            now - r.heartbeat
                        );
                        if let Err(e) = take_over(&st, &r.name, &reason).await {
                            tracing::warn!("taking over from replica {}: {e}", r.name);
                        }
                    }
                }
                Err(e) => tracing::warn!("replica heartbeats: {e}"),
            }
            tokio::time::sleep(period).await;
        }
    });
}
