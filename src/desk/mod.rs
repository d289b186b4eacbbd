//! The approval desk: where a request for a live action becomes, at most once, an execution.
//!
//! 1. `request`: the agent or a person asks for a tool with exact arguments. The policy must let
//!    them ask; the arguments are checked (the action's dry run) before the request exists. The
//!    request binds the tool, the arguments, the requester and a hash of the evidence.
//! 2. `decide`: an authenticated human approves or denies it. They must hold a role the policy
//!    names as approver for this tool here, and must not be the requester. Requests expire.
//! 3. `execute`: the call presented must be the approved one (same tool, same arguments). The
//!    policy is checked again (by the registry), the approval is spent, the action runs once. The
//!    action's collector is run before and after, and the measured effect is recorded. One live
//!    action is in flight per incident: the next waits (see [`Desk::waiting`]) until the last
//!    one's effect is in, and is refused if that takes too long.
//!
//! Every step, and every refusal, is appended to the audit log. Before an action runs, an
//! `executing` record (tool, exact arguments, evidence hash, approver) is made durable; a restart
//! that finds one with no `execution` after it never runs the request again: it shows
//! [`State::OutcomeUnknown`] with what to check by hand. A requester may withdraw a pending
//! request. Names are compared as people ([`Identities`]): a Slack user mapped to an oncall user
//! is that user.

mod execute;
mod records;
mod request;
mod shared;

use records::restore;

pub use execute::verify_by_hand;
pub use shared::{CLAIMED_ELSEWHERE, Claim, Shared, SharedError};

use crate::policy::audit::AuditLog;
use crate::policy::{ActionRequest, Approval, Identities, PolicyError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
#[derive(utoipa::ToSchema)]
#[schema(as = ApprovalState)]
pub enum State {
    Pending,
    Approved {
        by: String,
    },
    Denied {
        by: String,
        reason: String,
    },
    /// The requester took it back before anyone decided.
    Withdrawn {
        by: String,
    },
    /// Running now: its `executing` record is durable, its result is not in yet.
    Executing {
        by: String,
    },
    Executed {
        ok: bool,
    },
    /// oncall stopped after the `executing` record and before the result: the action may or may
    /// not have run. It is never run again; a person checks by hand.
    OutcomeUnknown {
        approved_by: String,
        since: DateTime<Utc>,
        /// What to check, and how, before asking for it again.
        verify: String,
    },
}

/// A request and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub incident: String,
    pub request: ActionRequest,
    pub state: State,
    /// What the action would do (its dry run) when it was requested.
    pub plan: Option<Value>,
    #[serde(skip)]
    approval: Option<Approval>,
}

/// Told what an action returned, the moment it returned.
pub type Ran = Box<dyn FnOnce(&Result<Value, String>) + Send>;

/// Called once the `executing` record is durable and before the action runs: records the
/// start elsewhere (the incident store). An error stops the run: nothing is run.
pub type Starting =
    Box<dyn FnOnce() -> futures::future::BoxFuture<'static, Result<(), String>> + Send>;

/// A decision checked by [`Desk::prepare_decision`], not yet recorded.
#[derive(Debug, Clone)]
pub struct Decision {
    pub request: String,
    pub by: String,
    pub approve: bool,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
    approval: Option<Approval>,
}

impl Decision {
    /// The state it leads to.
    pub fn state(&self) -> State {
        if self.approve {
            State::Approved {
                by: self.by.clone(),
            }
        } else {
            State::Denied {
                by: self.by.clone(),
                reason: self.reason.clone(),
            }
        }
    }

    /// The approval as the shared store keeps it (`approved_by`, `expires_at`).
    pub fn approval_json(&self) -> Option<Value> {
        self.approve
            .then(|| json!({"approved_by": self.by, "expires_at": self.expires_at}))
    }
}

/// The outcome of an execution.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub request: String,
    pub output: Result<Value, String>,
    /// "error ratio: 0.5 -> 0.01", "no change", or why it could not be measured.
    pub effect: String,
}

/// Why the desk refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum DeskError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Refused(String),
    #[error("request {0} does not exist")]
    NoSuchRequest(String),
    #[error("the audit log could not be written: {0}; nothing was run")]
    Audit(String),
    #[error("the action RAN, but its audit record could not be written: {0}; do not run it again")]
    AuditAfterRun(String),
}

/// The desk. One per server (or per test).
pub struct Desk {
    audit: Arc<AuditLog>,
    ttl: Duration,
    entries: Mutex<Vec<Entry>>,
    /// incident -> the request whose effect is not measured yet.
    in_flight: Mutex<HashMap<String, String>>,
    /// Requests already executed, from this run and from the audit log.
    executed: Mutex<HashSet<String>>,
    /// Woken whenever an incident's action in flight is done.
    turn: tokio::sync::Notify,
    wait: std::time::Duration,
    /// Which names are one person.
    people: Identities,
    /// The store replicas share, when there is one (see [`Shared`]).
    shared: Option<Arc<dyn Shared>>,
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, DeskError> {
    m.lock()
        .map_err(|_| DeskError::Refused("the desk's state is unavailable".into()))
}

impl Desk {
    /// A desk writing to `audit`; requests and approvals live `ttl`.
    ///
    /// Requests, decisions and executions already in the audit log are read back, so a restarted
    /// server shows the same pending and approved requests and never runs an executed one again.
    pub fn new(audit: Arc<AuditLog>, ttl: Duration) -> Desk {
        let records = audit.records();
        let executed = records
            .iter()
            .filter(|r| r.kind == "execution" || r.kind == "executing")
            .filter_map(|r| r.data["request"].as_str().map(str::to_string))
            .collect();
        let entries = restore(&records);
        Desk {
            audit,
            ttl,
            entries: Mutex::new(entries),
            in_flight: Mutex::new(HashMap::new()),
            executed: Mutex::new(executed),
            turn: tokio::sync::Notify::new(),
            wait: std::time::Duration::ZERO,
            people: Identities::default(),
            shared: None,
        }
    }

    /// Which names are one person (e.g. Slack users mapped to oncall users).
    pub fn with_identities(mut self, people: Identities) -> Desk {
        self.people = people;
        self
    }

    /// How long an approved execution waits for the incident's action in flight to have its
    /// effect recorded, before it is refused. Zero (the default) refuses at once.
    pub fn waiting(mut self, wait: std::time::Duration) -> Desk {
        self.wait = wait;
        self
    }

    /// Whether the request already ran (in this run or before a restart).
    pub fn executed(&self, id: &str) -> bool {
        self.executed.lock().map(|e| e.contains(id)).unwrap_or(true)
    }

    /// The request with this id, if any.
    pub fn entry(&self, id: &str) -> Option<Entry> {
        self.entries
            .lock()
            .ok()
            .and_then(|e| e.iter().find(|e| e.request.id == id).cloned())
    }

    fn set_state(&self, request: &str, state: State) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.iter_mut().find(|e| e.request.id == request)
        {
            e.state = state;
        }
    }

    fn log(&self, kind: &str, data: Value) -> Result<(), DeskError> {
        self.audit
            .append(kind, data)
            .map(|_| ())
            .map_err(|e| DeskError::Audit(e.to_string()))
    }

    fn refuse(&self, request: &str, why: String) -> DeskError {
        // A refusal that cannot be logged is still a refusal. Its text can echo what a client
        // sent: the audit keeps a bounded copy, so refusals cannot grow it without bound.
        let _ = self.log(
            "refusal",
            json!({"request": clip(request, 64), "why": clip(&why, REFUSAL_CHARS)}),
        );
        DeskError::Refused(why)
    }

    /// All requests, newest last.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// The most of a refusal's text the audit log keeps.
const REFUSAL_CHARS: usize = 1024;

/// `text`, cut to `max` characters with a note of how much was left out.
fn clip(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}… ({} more characters)", n - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_a_bounded_copy_in_the_audit_log() {
        let desk = Desk::new(Arc::new(AuditLog::in_memory()), Duration::minutes(5));
        let huge = "x".repeat(100_000);
        let err = desk.refuse(&huge, format!("bad arguments: {huge}"));
        assert!(
            err.to_string().len() > 100_000,
            "the caller still sees it all"
        );
        let rec = desk.audit.records().pop().unwrap();
        let kept = rec.data.to_string();
        assert!(kept.len() < 1_300, "{}", kept.len());
        assert!(kept.contains("more characters"));
    }
}
