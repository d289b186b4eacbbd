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

use crate::policy::audit::AuditLog;
use crate::policy::rules::{Actor, Effect};
use crate::policy::{
    ActionRequest, Approval, Human, Identities, PolicyError, approve, canonical_hash,
};
use crate::registry::Registry;
use crate::tool::{EffectCheck, RiskClass, ToolError};
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

/// The shared store's side of an execution, when several replicas share one store: the claim
/// (`approved` -> `executing`, one in flight per incident) is what makes a request run once
/// across replicas; the desk's own checks and its audit records stay as they are.
#[async_trait::async_trait]
pub trait Shared: Send + Sync {
    /// Claims `request` for `executor`: it runs here, and nowhere else.
    async fn claim(&self, request: &str, executor: &str) -> Result<Claim, String>;
    /// Gives a claimed request back (`approved`, as `state`): nothing was run.
    async fn unclaim(&self, request: &str, state: &State) -> Result<(), String>;
    /// Records a claimed request's result (`executed`); it stays in flight.
    async fn finished(&self, request: &str, state: &State) -> Result<(), String>;
    /// Its effect is recorded: the incident's next action may run.
    async fn release(&self, request: &str) -> Result<(), String>;
}

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

/// A request (pending) from its record: an audit `request` record's data, or the `request` of
/// a shared store's row (the same fields, with the exact arguments).
fn entry_of(d: &Value, at: DateTime<Utc>) -> Entry {
    let request = ActionRequest {
        id: d["request"].as_str().unwrap_or_default().to_string(),
        tool: d["tool"].as_str().unwrap_or_default().to_string(),
        args: d["args"].clone(),
        requested_by: d["requested_by"].as_str().unwrap_or_default().to_string(),
        on_behalf_of: d["on_behalf_of"].as_str().map(str::to_string),
        evidence_hash: d["evidence_hash"].as_str().unwrap_or_default().to_string(),
        created_at: at,
    };
    // Audit records are redacted. A request whose requester or arguments lost a secret to
    // redaction cannot be restored faithfully: it could be approved by its own requester, or run
    // with arguments nobody checked. It comes back denied. A store row whose arguments do not
    // match the hash filed with them is refused the same way.
    let intact = d["args_hash"].as_str() == Some(&canonical_hash(&request.args))
        && d["requester_hash"].as_str() == Some(&canonical_hash(&json!(request.requested_by)))
        && !request.requested_by.contains("[REDACTED:")
        && d["on_behalf_of_hash"]
            .as_str()
            .unwrap_or(&canonical_hash(&Value::Null))
            == canonical_hash(&json!(request.on_behalf_of))
        && !request
            .on_behalf_of
            .as_deref()
            .unwrap_or_default()
            .contains("[REDACTED:");
    Entry {
        incident: d["incident"].as_str().unwrap_or_default().to_string(),
        request,
        state: if intact {
            State::Pending
        } else {
            State::Denied {
                by: "oncall".into(),
                reason: "restored from a redacted or altered record; request it again".into(),
            }
        },
        plan: Some(d["plan"].clone()).filter(|p| !p.is_null()),
        approval: None,
    }
}

/// The record a request is filed with (audit `request` record, shared store row).
fn request_record(
    incident: &str,
    req: &ActionRequest,
    actor: Option<Actor>,
    plan: &Option<Value>,
) -> Value {
    json!({"request": req.id, "incident": incident, "tool": req.tool, "args": req.args,
           "args_hash": canonical_hash(&req.args),
           "requested_by": req.requested_by, "requester_hash": canonical_hash(&json!(req.requested_by)),
           "on_behalf_of": req.on_behalf_of,
           "on_behalf_of_hash": canonical_hash(&json!(req.on_behalf_of)),
           "as": actor, "evidence_hash": req.evidence_hash, "plan": plan})
}

/// Rebuilds the requests and where they stand from audit records.
fn restore(records: &[crate::policy::audit::Record]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = vec![];
    for r in records {
        let d = &r.data;
        let id = d["request"].as_str().unwrap_or_default();
        match r.kind.as_str() {
            "request" => entries.push(entry_of(d, r.at)),
            "decision" => {
                let Some(e) = entries
                    .iter_mut()
                    .find(|e| e.request.id == id && e.state == State::Pending)
                else {
                    continue;
                };
                let by = d["by"].as_str().unwrap_or_default().to_string();
                if d["approved"] == json!(true) {
                    let expires_at = d["expires_at"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(r.at);
                    e.approval = Some(Approval::restored(&e.request, by.clone(), expires_at));
                    e.state = State::Approved { by };
                } else {
                    e.state = State::Denied {
                        by,
                        reason: d["reason"].as_str().unwrap_or_default().to_string(),
                    };
                }
            }
            "withdrawal" => {
                if let Some(e) = entries
                    .iter_mut()
                    .find(|e| e.request.id == id && e.state == State::Pending)
                {
                    e.state = State::Withdrawn {
                        by: d["by"].as_str().unwrap_or_default().to_string(),
                    };
                }
            }
            // Written before the action ran. With no `execution` after it, oncall stopped in
            // between: whether the action ran is unknown, and it is never run again.
            "executing" => {
                if let Some(e) = entries.iter_mut().find(|e| e.request.id == id) {
                    e.state = State::OutcomeUnknown {
                        approved_by: d["approved_by"].as_str().unwrap_or_default().to_string(),
                        since: r.at,
                        verify: d["verify"].as_str().unwrap_or_default().to_string(),
                    };
                }
            }
            "execution" => {
                if let Some(e) = entries.iter_mut().find(|e| e.request.id == id) {
                    e.state = State::Executed {
                        ok: d["ok"] == json!(true),
                    };
                }
            }
            _ => {}
        }
    }
    entries
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

    /// Gives a claimed request back to the shared store (nothing ran).
    async fn unclaim(&self, request: &str, state: &State) {
        if let Some(sh) = &self.shared
            && let Err(e) = sh.unclaim(request, state).await
        {
            tracing::error!("request {request}: could not give it back in the shared store: {e}");
        }
    }

    /// Records a claimed request's result in the shared store.
    async fn shared_finished(&self, request: &str, state: State) {
        if let Some(sh) = &self.shared
            && let Err(e) = sh.finished(request, &state).await
        {
            tracing::error!("request {request}: its result is not in the shared store: {e}");
        }
    }

    /// Frees the incident's shared slot once the request's effect is recorded.
    async fn shared_release(&self, request: &str) {
        if let Some(sh) = &self.shared
            && let Err(e) = sh.release(request).await
        {
            tracing::error!(
                "request {request}: its in-flight mark is still in the shared store: {e}"
            );
        }
    }

    /// Result and release at once (a request that ended without running).
    async fn shared_done(&self, request: &str, state: State) {
        self.shared_finished(request, state).await;
        self.shared_release(request).await;
    }

    /// Frees the incident's slot and wakes executions waiting for it.
    fn release(&self, incident: &str) {
        if let Ok(mut flight) = self.in_flight.lock() {
            flight.remove(incident);
        }
        self.turn.notify_waiters();
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

    /// Files a request for `tool` with `args`, by `who` acting as `actor`.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        reg: &Registry,
        incident: &str,
        tool: &str,
        args: Value,
        who: &str,
        actor: Actor,
        evidence: &[Value],
    ) -> Result<ActionRequest, DeskError> {
        self.request_for(reg, incident, tool, args, who, actor, None, evidence)
    }

    /// [`Desk::request`], filed for `on_behalf_of`: the human who asked for or is driving the
    /// investigation whose model (`who` = [`crate::policy::MODEL`]) proposed it. Under a `two_person`
    /// rule that person cannot approve it.
    #[allow(clippy::too_many_arguments)]
    pub fn request_for(
        &self,
        reg: &Registry,
        incident: &str,
        tool: &str,
        args: Value,
        who: &str,
        actor: Actor,
        on_behalf_of: Option<&str>,
        evidence: &[Value],
    ) -> Result<ActionRequest, DeskError> {
        let spec = reg
            .spec(tool)
            .ok_or_else(|| self.refuse("-", format!("no tool named `{tool}`")))?;
        if spec.risk == RiskClass::Read {
            return Err(self.refuse(
                "-",
                format!("`{tool}` only reads: it runs without a request"),
            ));
        }
        let (policy, env) = reg.policy();
        if let Some(p) = policy {
            let d = p
                .may_request(&spec, env, who, actor)
                .map_err(|r| self.refuse("-", r.to_string()))?;
            if d.effect != Effect::Approve {
                return Err(self.refuse(
                    "-",
                    format!("`{tool}` needs no approval in {env}; no request was filed"),
                ));
            }
        }
        // The arguments are checked now, not at execution: a bad value never becomes a request.
        let args = match reg.bind(tool, args) {
            Ok(a) => a,
            Err(e) => return Err(self.refuse("-", format!("{e}"))),
        };
        let plan = match reg.dry_run(tool, &args) {
            Ok(p) => Some(p),
            Err(ToolError::BadArguments { message, .. }) => {
                return Err(self.refuse("-", format!("bad arguments for `{tool}`: {message}")));
            }
            Err(_) => None,
        };
        let req = ActionRequest::new(tool, args, who, evidence).for_person(on_behalf_of);
        self.log(
            "request",
            request_record(incident, &req, Some(actor), &plan),
        )?;
        lock(&self.entries)?.push(Entry {
            incident: incident.to_string(),
            request: req.clone(),
            state: State::Pending,
            plan,
            approval: None,
        });
        Ok(req)
    }

    /// Whether `human` may decide `request`: the policy's approver roles, never the requester
    /// (as a person, whatever name they use), and under a `two_person` rule (when `approving`)
    /// never the person the request was made for. Refusals are audited.
    pub fn check_approver(
        &self,
        reg: &Registry,
        request: &ActionRequest,
        human: &Human,
        approving: bool,
    ) -> Result<(), DeskError> {
        let id = request.id.as_str();
        if self.people.same(&human.name, &request.requested_by) {
            let err = PolicyError::SelfApproval {
                who: human.name.clone(),
            };
            let _ = self.log("refusal", json!({"request": id, "why": err.to_string()}));
            return Err(err.into());
        }
        let spec = reg
            .spec(&request.tool)
            .ok_or_else(|| self.refuse(id, format!("`{}` no longer exists", request.tool)))?;
        let (policy, env) = reg.policy();
        if let Some(p) = policy {
            p.may_approve(&spec, env, human)
                .map_err(|r| self.refuse(id, r.to_string()))?;
            if approving
                && p.two_person(&spec, env)
                && let Some(person) = &request.on_behalf_of
                && self.people.same(&human.name, person)
            {
                let err = PolicyError::TwoPerson {
                    who: human.name.clone(),
                    requested: request.requester(),
                };
                let _ = self.log("refusal", json!({"request": id, "why": err.to_string()}));
                return Err(err.into());
            }
        }
        Ok(())
    }

    /// Takes back a pending request: only its requester (or the person it was filed for) may.
    pub fn withdraw(&self, request: &str, human: &Human, reason: &str) -> Result<State, DeskError> {
        let mut entries = lock(&self.entries)?;
        let e = entries
            .iter_mut()
            .find(|e| e.request.id == request)
            .ok_or_else(|| DeskError::NoSuchRequest(request.into()))?;
        let theirs = self.people.same(&human.name, &e.request.requested_by)
            || e.request
                .on_behalf_of
                .as_deref()
                .is_some_and(|p| self.people.same(&human.name, p));
        if !theirs {
            return Err(self.refuse(
                request,
                format!(
                    "{} did not request {request} (requested by {}); an approver can deny it instead",
                    human.name,
                    e.request.requester()
                ),
            ));
        }
        if e.state != State::Pending {
            return Err(self.refuse(
                request,
                format!(
                    "request {request} is no longer pending ({:?}); only a pending request can be withdrawn",
                    e.state
                ),
            ));
        }
        self.log(
            "withdrawal",
            json!({"request": request, "by": human.name, "reason": reason}),
        )?;
        e.state = State::Withdrawn {
            by: human.name.clone(),
        };
        Ok(e.state.clone())
    }

    /// Approves or denies a pending request.
    pub fn decide(
        &self,
        reg: &Registry,
        request: &str,
        human: &Human,
        yes: bool,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<State, DeskError> {
        let d = self.prepare_decision(reg, request, human, yes, reason, now)?;
        self.record_decision(&d)
    }

    /// Checks a decision (pending, not expired, an approver who may decide it) without
    /// recording it: the first half of [`Desk::decide`]. Refusals are audited.
    pub fn prepare_decision(
        &self,
        reg: &Registry,
        request: &str,
        human: &Human,
        yes: bool,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Decision, DeskError> {
        let e = self
            .entry(request)
            .ok_or_else(|| DeskError::NoSuchRequest(request.into()))?;
        if e.state != State::Pending {
            return Err(self.refuse(
                request,
                format!("request {request} was already decided ({:?})", e.state),
            ));
        }
        if now >= e.request.created_at + self.ttl {
            return Err(self.refuse(
                request,
                format!("request {request} expired; ask for it again if it is still needed"),
            ));
        }
        // Denying needs the approver role too, but anyone but the requester may say no.
        self.check_approver(reg, &e.request, human, yes)?;
        let approval = if yes {
            Some(approve(&e.request, human, self.ttl, now).map_err(|err| {
                let _ = self.log(
                    "refusal",
                    json!({"request": request, "why": err.to_string()}),
                );
                DeskError::Policy(err)
            })?)
        } else {
            None
        };
        Ok(Decision {
            request: request.to_string(),
            by: human.name.clone(),
            approve: yes,
            reason: reason.to_string(),
            expires_at: now + self.ttl,
            approval,
        })
    }

    /// Records a decision [`Desk::prepare_decision`] checked: its audit record, then its state
    /// here. Refused if the request stopped being pending here meanwhile.
    pub fn record_decision(&self, d: &Decision) -> Result<State, DeskError> {
        let mut entries = lock(&self.entries)?;
        let e = entries
            .iter_mut()
            .find(|e| e.request.id == d.request)
            .ok_or_else(|| DeskError::NoSuchRequest(d.request.clone()))?;
        if e.state != State::Pending {
            let why = format!("request {} was already decided ({:?})", d.request, e.state);
            drop(entries);
            return Err(self.refuse(&d.request, why));
        }
        if d.approve {
            self.log(
                "decision",
                json!({"request": d.request, "approved": true, "by": d.by, "expires_at": d.expires_at}),
            )?;
            e.approval = d.approval.clone();
        } else {
            self.log(
                "decision",
                json!({"request": d.request, "approved": false, "by": d.by, "reason": d.reason}),
            )?;
        }
        e.state = d.state();
        Ok(e.state.clone())
    }

    /// A decision recorded here that did not take in the shared store (another replica decided
    /// first, or the store failed): audited as such. The caller then reads the store's state.
    pub fn decision_not_taken(&self, request: &str, why: &str) -> DeskError {
        self.refuse(request, why.to_string())
    }

    /// A request filed here that could not be shared with the other replicas: it is denied
    /// here (audited), so it never runs. The caller reports `why`.
    pub fn abandon(&self, request: &str, why: &str) -> DeskError {
        self.set_state(
            request,
            State::Denied {
                by: "oncall".into(),
                reason: why.to_string(),
            },
        );
        self.refuse(request, why.to_string())
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

    /// Runs an approved request: `tool` and `args` are what the caller is about to run, and must
    /// be exactly what was approved.
    pub async fn execute(
        &self,
        reg: &Registry,
        request: &str,
        tool: &str,
        args: &Value,
        executor: &str,
    ) -> Result<Execution, DeskError> {
        self.execute_reporting(reg, request, tool, args, executor, None, None)
            .await
    }

    /// [`Desk::execute`], calling `starting` once the `executing` record is durable (an error
    /// there runs nothing) and telling `ran` what the action returned the moment it returned,
    /// before the effect is measured (which waits for the system to settle).
    #[allow(clippy::too_many_arguments)]
    pub async fn execute_reporting(
        &self,
        reg: &Registry,
        request: &str,
        tool: &str,
        args: &Value,
        executor: &str,
        starting: Option<Starting>,
        ran: Option<Ran>,
    ) -> Result<Execution, DeskError> {
        let (incident, evidence_hash, approval) = {
            let entries = lock(&self.entries)?;
            let e = entries
                .iter()
                .find(|e| e.request.id == request)
                .ok_or_else(|| DeskError::NoSuchRequest(request.into()))?;
            if lock(&self.executed)?.contains(request) {
                return Err(self.refuse(
                    request,
                    format!("request {request} already ran; an approval runs at most once"),
                ));
            }
            let approval = match (&e.state, &e.approval) {
                (State::Approved { .. }, Some(a)) => a.clone(),
                (s, _) => {
                    return Err(self.refuse(
                        request,
                        format!("request {request} is not approved ({s:?}); nothing was run"),
                    ));
                }
            };
            if tool != e.request.tool {
                return Err(self.refuse(
                    request,
                    format!(
                        "request {request} approved `{}`, not `{tool}`; nothing was run",
                        e.request.tool
                    ),
                ));
            }
            if canonical_hash(args) != canonical_hash(&e.request.args) {
                return Err(self.refuse(
                    request,
                    format!(
                        "the arguments differ from the approved ones ({} approved, {args} presented); nothing was run",
                        e.request.args
                    ),
                ));
            }
            if approval.evidence_hash() != e.request.evidence_hash {
                return Err(self.refuse(
                    request,
                    format!(
                        "request {request}'s approval was made on other evidence; nothing was run"
                    ),
                ));
            }
            if let Err(why) = approval.covers(tool, args, Utc::now()) {
                return Err(self.refuse(request, format!("{why}; nothing was run")));
            }
            (
                e.incident.clone(),
                e.request.evidence_hash.clone(),
                approval,
            )
        };
        let deadline = tokio::time::Instant::now() + self.wait;
        let busy = |other: &str| {
            format!(
                "request {other} is still in flight in incident {incident}; one live action at a time: wait until its effect is recorded"
            )
        };
        loop {
            let woken = self.turn.notified();
            // None: taken here; Some: the request in flight in this incident here.
            let taken: Result<Option<String>, String> = {
                let mut flight = lock(&self.in_flight)?;
                match flight.get(&incident) {
                    None => {
                        let mut done = lock(&self.executed)?;
                        if done.contains(request) {
                            Err(format!(
                                "request {request} already ran; an approval runs at most once"
                            ))
                        } else {
                            flight.insert(incident.clone(), request.to_string());
                            done.insert(request.to_string());
                            Ok(None)
                        }
                    }
                    Some(other) => Ok(Some(other.clone())),
                }
            };
            match taken {
                Err(why) => return Err(self.refuse(request, why)),
                Ok(Some(other)) if tokio::time::Instant::now() >= deadline => {
                    return Err(self.refuse(request, busy(&other)));
                }
                Ok(Some(_)) => {
                    // The next one waits until the last one's effect is recorded.
                    let _ = tokio::time::timeout_at(deadline, woken).await;
                    continue;
                }
                Ok(None) => {}
            }
            // Taken here; with replicas, the shared store decides whether it runs here at all.
            let Some(shared) = &self.shared else {
                break;
            };
            let undo = |ran_elsewhere: bool| {
                if !ran_elsewhere && let Ok(mut done) = self.executed.lock() {
                    done.remove(request);
                }
                self.release(&incident);
            };
            match shared.claim(request, executor).await {
                Ok(Claim::Claimed) => break,
                Ok(Claim::Busy(other)) => {
                    undo(false);
                    if tokio::time::Instant::now() >= deadline {
                        return Err(self.refuse(request, busy(&other)));
                    }
                    // Another replica's action is in flight: look again shortly.
                    let pause = std::time::Duration::from_millis(250)
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                    tokio::time::sleep(pause).await;
                }
                Ok(Claim::Gone(phase)) => {
                    let ran =
                        matches!(phase.as_str(), "executing" | "executed" | "outcome_unknown");
                    undo(ran);
                    return Err(self.refuse(
                        request,
                        format!(
                            "request {request} is {phase} {CLAIMED_ELSEWHERE}: an approval runs at most once, on one replica; nothing was run here"
                        ),
                    ));
                }
                Err(e) => {
                    undo(false);
                    return Err(self.refuse(
                        request,
                        format!(
                            "the shared store could not claim request {request} ({e}); nothing was run"
                        ),
                    ));
                }
            }
        }
        let approved = State::Approved {
            by: approval.approved_by().to_string(),
        };
        // The approval may have expired while this one waited.
        if let Err(why) = approval.covers(tool, args, Utc::now()) {
            self.unclaim(request, &approved).await;
            self.release(&incident);
            if let Ok(mut done) = self.executed.lock() {
                done.remove(request);
            }
            return Err(self.refuse(request, format!("{why}; nothing was run")));
        }
        // Write-ahead: the intent to run is durable before anything runs. If oncall dies between
        // this record and the `execution` one, a restart shows the outcome as unknown and never
        // runs it again.
        let verify = verify_by_hand(reg, tool, args);
        if let Err(e) = self.log(
            "executing",
            json!({"request": request, "incident": incident, "tool": tool, "args": args,
                   "args_hash": canonical_hash(args), "evidence_hash": evidence_hash,
                   "approved_by": approval.approved_by(), "by": executor, "verify": verify}),
        ) {
            self.unclaim(request, &approved).await;
            self.release(&incident);
            if let Ok(mut done) = self.executed.lock() {
                done.remove(request);
            }
            return Err(e);
        }
        self.set_state(
            request,
            State::Executing {
                by: executor.to_string(),
            },
        );
        if let Some(starting) = starting
            && let Err(e) = starting().await
        {
            // Recorded as not run, for good: the `executing` record must not read as unknown.
            let why = format!("its start could not be recorded ({e}); nothing was run");
            let _ = self.log(
                "execution",
                json!({"request": request, "incident": incident, "tool": tool, "args": args,
                       "by": executor, "approved_by": approval.approved_by(), "ok": false,
                       "ran": false, "error": why}),
            );
            self.set_state(request, State::Executed { ok: false });
            self.shared_done(request, State::Executed { ok: false })
                .await;
            self.release(&incident);
            return Err(DeskError::Refused(why));
        }
        fault_point("executing").await;
        let check = reg.effect_of(tool, args);
        let before = match &check {
            Some(c) => Some(measure(reg, c).await),
            None => None,
        };
        // A tool that panics must not keep the incident's slot forever.
        let called = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(reg.call(
            tool,
            args.clone(),
            Some(&approval),
        )))
        .await
        .unwrap_or_else(|_| {
            Err(ToolError::Failed {
                tool: tool.to_string(),
                message: "the action panicked".into(),
            })
        });
        let output = match called {
            // The registry's own checks (the policy again, the approval) refused it: not run.
            // The `executing` record is closed as not run, and it stays spent.
            Err(
                e @ (ToolError::Forbidden { .. }
                | ToolError::ApprovalMismatch { .. }
                | ToolError::ApprovalRequired { .. }),
            ) => {
                let _ = self.log(
                    "execution",
                    json!({"request": request, "incident": incident, "tool": tool, "args": args,
                           "by": executor, "approved_by": approval.approved_by(), "ok": false,
                           "ran": false, "error": e.to_string()}),
                );
                self.set_state(request, State::Executed { ok: false });
                self.shared_done(request, State::Executed { ok: false })
                    .await;
                self.release(&incident);
                return Err(self.refuse(request, format!("{e}")));
            }
            other => other.map_err(|e| e.to_string()),
        };
        fault_point("executed").await;
        let logged = self.log(
            "execution",
            json!({"request": request, "incident": incident, "tool": tool, "args": args,
                   "by": executor, "approved_by": approval.approved_by(), "ok": output.is_ok(),
                   "output": output.as_ref().ok(), "error": output.as_ref().err()}),
        );
        self.set_state(request, State::Executed { ok: output.is_ok() });
        self.shared_finished(request, State::Executed { ok: output.is_ok() })
            .await;
        if let Some(ran) = ran {
            ran(&output);
        }
        let effect = match (&check, before) {
            // No baseline: waiting to measure again would show nothing.
            (Some(_), Some(Err(e))) if output.is_ok() => format!("could not be measured: {e}"),
            (Some(c), Some(b)) if output.is_ok() => {
                tokio::time::sleep(std::time::Duration::from_secs(c.settle_s)).await;
                let after = measure(reg, c).await;
                compare(c, &b, &after)
            }
            (_, _) if output.is_err() => "not measured: the action failed".to_string(),
            _ => "not measured: the action names no collector to check".to_string(),
        };
        let logged = logged.and(self.log(
            "effect",
            json!({"request": request, "incident": incident, "effect": effect}),
        ));
        self.shared_release(request).await;
        self.release(&incident);
        logged.map_err(|e| match e {
            DeskError::Audit(m) => DeskError::AuditAfterRun(m),
            other => other,
        })?;
        Ok(Execution {
            request: request.to_string(),
            output,
            effect,
        })
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

/// TEST-ONLY fault hook, for the crash tests: with `OC_TEST_PAUSE_AT=<point>:<marker file>` in
/// the environment, oncall writes the marker file when it reaches `<point>` (`executing`: the
/// record is durable and the action has not run; `executed`: the action returned and its result
/// is not recorded) and then waits there, so a test can kill it at exactly that moment. Unset (as
/// everywhere but those tests) it does nothing.
async fn fault_point(point: &str) {
    let Ok(spec) = std::env::var("OC_TEST_PAUSE_AT") else {
        return;
    };
    if let Some((at, marker)) = spec.split_once(':')
        && at == point
    {
        let _ = std::fs::write(marker, point);
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}

/// What a person should check, and how, when an action's outcome is unknown.
pub fn verify_by_hand(reg: &Registry, tool: &str, args: &Value) -> String {
    let num = |k: &str| args[k].as_i64().map(|n| n.to_string());
    let specific = match tool {
        "host.signal_process" => num("pid").map(|pid| {
            format!(
                "check whether process {pid} still runs and is the approved one: `ps -o pid,lstart,args -p {pid}` (approved: start time {}, executable {})",
                args["start_time"], args["exe"]
            )
        }),
        "postgres.cancel_backend" | "postgres.terminate_backend" => num("pid").map(|pid| {
            format!(
                "check the backend in database {}: `SELECT pid, state, backend_start, query_start, left(query, 80) FROM pg_stat_activity WHERE pid = {pid};`",
                args["database"].as_str().unwrap_or("(the only one configured)")
            )
        }),
        _ => None,
    };
    let effect = reg.effect_of(tool, args).map(|c| {
        format!(
            "run the `{}` tool with {} and look at {}",
            c.tool,
            c.args,
            c.measure.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    });
    let how = match (specific, effect) {
        (Some(s), Some(e)) => format!("{s}; or {e}"),
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => format!("check by hand whether `{tool}` {args} took effect"),
    };
    format!(
        "outcome unknown: oncall stopped while `{tool}` was running. Verify by hand before asking for it again: {how}"
    )
}

async fn measure(reg: &Registry, c: &EffectCheck) -> Result<Value, String> {
    reg.call(&c.tool, c.args.clone(), None)
        .await
        .map_err(|e| e.to_string())
}

/// "label: before -> after" for what changed, "no change" when nothing did.
fn compare(
    c: &EffectCheck,
    before: &Result<Value, String>,
    after: &Result<Value, String>,
) -> String {
    let (b, a) = match (before, after) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => return format!("could not be measured: {e}"),
    };
    let show = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(x)) => format!("{} item(s)", x.len()),
        Some(other) => other.to_string(),
        None => "n/a".into(),
    };
    let changed: Vec<String> = c
        .measure
        .iter()
        .filter_map(|(label, ptr)| {
            let (x, y) = (b.pointer(ptr), a.pointer(ptr));
            (x != y).then(|| format!("{label}: {} -> {}", show(x), show(y)))
        })
        .collect();
    if changed.is_empty() {
        format!(
            "no change in {} ({})",
            c.tool,
            c.measure.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    } else {
        changed.join("; ")
    }
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
