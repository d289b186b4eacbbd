//! Filing a request, withdrawing it, and an approver's decision on it.

use super::records::request_record;
use super::{Decision, Desk, DeskError, Entry, State, lock};
use crate::policy::rules::{Actor, Effect};
use crate::policy::{ActionRequest, Human, PolicyError, approve};
use crate::registry::Registry;
use crate::tool::{RiskClass, ToolError};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

impl Desk {
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
}
