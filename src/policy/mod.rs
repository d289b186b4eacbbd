//! The policy layer: who may approve what, and the approvals that let a risky tool run.
//!
//! The model (or the offline reasoner) can only *request* an action. A human with the approver
//! role who is not the requester turns a request into an [`Approval`]; the approval binds the
//! tool, a hash of its exact arguments and a hash of the evidence the request was made on, and it
//! expires. [`Approval`] has private fields and only [`approve`] creates one, so no other code can
//! forge it; the tool registry checks it and spends it (it runs at most once).
//!
//! This module never runs an action; it only decides whether one may run. [`crate::redact`] keeps
//! secrets out of everything that reaches a model.

pub mod audit;
pub mod rules;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Roles a person can hold, weakest first; each role can do what the ones before it can.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum Role {
    Viewer,
    Responder,
    Approver,
}

/// An authenticated person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Human {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Human {
    /// A person holding `role` and every weaker one.
    pub fn with_role(name: &str, role: Role) -> Human {
        Human {
            name: name.to_string(),
            roles: [Role::Viewer, Role::Responder, Role::Approver]
                .into_iter()
                .filter(|r| *r <= role)
                .collect(),
        }
    }
}

/// Why an approval was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("{who} does not hold the approver role; ask an approver to decide this request")]
    NotApprover { who: String },
    #[error("{who} requested this action and cannot approve it; another approver must decide")]
    SelfApproval { who: String },
    #[error(
        "two-person rule: {who} is the person this action was requested for ({requested}); a different approver must decide"
    )]
    TwoPerson { who: String, requested: String },
}

/// Names that belong to one person: a Slack user mapped to an oncall user is that user. The
/// approval checks compare people, not names, so one person cannot approve their own request
/// by switching from the web page to Slack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identities {
    /// alias -> the person's oncall name.
    alias: std::collections::BTreeMap<String, String>,
}

impl Identities {
    /// From (alias, oncall name) pairs, e.g. `("slack:U2CERLKJA", "ana")`.
    pub fn new<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Identities {
        Identities {
            alias: pairs.into_iter().collect(),
        }
    }

    /// The person a name belongs to (the name itself when it is no one's alias).
    pub fn person<'a>(&'a self, name: &'a str) -> &'a str {
        self.alias.get(name).map(String::as_str).unwrap_or(name)
    }

    /// Whether two names are the same person.
    pub fn same(&self, a: &str, b: &str) -> bool {
        self.person(a) == self.person(b)
    }
}

/// Who files a request an investigation's model proposes: the model, never a person.
pub const MODEL: &str = "model";

/// A request to run a risky tool with exact arguments, made on some evidence.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRequest {
    pub id: String,
    pub tool: String,
    pub args: Value,
    pub requested_by: String,
    /// For a request the model filed: the human who asked for or is driving the investigation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// sha256 of the evidence (tool outputs) the request was made on.
    pub evidence_hash: String,
    pub created_at: DateTime<Utc>,
}

impl ActionRequest {
    /// Creates a request. The id is derived from its content, so it is stable across processes.
    pub fn new(tool: &str, args: Value, requested_by: &str, evidence: &[Value]) -> ActionRequest {
        let created_at = Utc::now();
        let evidence_hash = sha256_hex(&Value::Array(evidence.to_vec()).to_string());
        let id = sha256_hex(&format!(
            "{tool}\n{}\n{requested_by}\n{evidence_hash}\n{}",
            canonical_hash(&args),
            created_at.timestamp_nanos_opt().unwrap_or_default()
        ))[..16]
            .to_string();
        ActionRequest {
            id,
            tool: tool.to_string(),
            args,
            requested_by: requested_by.to_string(),
            on_behalf_of: None,
            evidence_hash,
            created_at,
        }
    }

    /// The same request, filed for `person` (the human driving the investigation).
    pub fn for_person(mut self, person: Option<&str>) -> ActionRequest {
        self.on_behalf_of = person.map(str::to_string);
        self
    }

    /// "ana", or "model, on behalf of ana".
    pub fn requester(&self) -> String {
        match &self.on_behalf_of {
            Some(p) => format!("{}, on behalf of {p}", self.requested_by),
            None => self.requested_by.clone(),
        }
    }
}

/// A human's yes to one request. Only [`approve`] makes one.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    id: String,
    tool: String,
    args_hash: String,
    evidence_hash: String,
    requested_by: String,
    approved_by: String,
    expires_at: DateTime<Utc>,
}

impl Approval {
    /// The approval a recorded human decision made (an audit record or the shared store's row),
    /// re-created for `request` when the desk restores its state. Bound, like any approval, to
    /// the request's own tool, exact arguments and evidence. Only the desk calls this.
    pub(crate) fn restored(
        request: &ActionRequest,
        approved_by: String,
        expires_at: DateTime<Utc>,
    ) -> Approval {
        Approval {
            id: request.id.clone(),
            tool: request.tool.clone(),
            args_hash: canonical_hash(&request.args),
            evidence_hash: request.evidence_hash.clone(),
            requested_by: request.requested_by.clone(),
            approved_by,
            expires_at,
        }
    }

    /// The request id this approval answers (an approval is spent once per id).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The hash of the evidence the request was made on (the desk refuses an approval whose
    /// evidence differs from the request's).
    pub fn evidence_hash(&self) -> &str {
        &self.evidence_hash
    }

    pub fn approved_by(&self) -> &str {
        &self.approved_by
    }

    /// When it stops covering its request.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Checks that this approval covers calling `tool` with `args` at `now`.
    pub fn covers(&self, tool: &str, args: &Value, now: DateTime<Utc>) -> Result<(), NotCovered> {
        if self.tool != tool {
            return Err(NotCovered::OtherTool {
                approved: self.tool.clone(),
                called: tool.to_string(),
            });
        }
        if self.args_hash != canonical_hash(args) {
            return Err(NotCovered::OtherArguments);
        }
        if now >= self.expires_at {
            return Err(NotCovered::Expired(self.expires_at));
        }
        Ok(())
    }
}

/// Why an approval does not cover a call: it is bound to one tool, its exact arguments and a
/// time limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotCovered {
    #[error("it approves `{approved}`, not `{called}`")]
    OtherTool { approved: String, called: String },
    #[error("the arguments differ from the ones that were approved")]
    OtherArguments,
    #[error("it expired at {}", .0.to_rfc3339())]
    Expired(DateTime<Utc>),
}

/// Turns a request into an approval, if `approver` may approve it.
pub fn approve(
    request: &ActionRequest,
    approver: &Human,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Approval, PolicyError> {
    if !approver.roles.contains(&Role::Approver) {
        return Err(PolicyError::NotApprover {
            who: approver.name.clone(),
        });
    }
    if approver.name == request.requested_by {
        return Err(PolicyError::SelfApproval {
            who: approver.name.clone(),
        });
    }
    Ok(Approval {
        id: request.id.clone(),
        tool: request.tool.clone(),
        args_hash: canonical_hash(&request.args),
        evidence_hash: request.evidence_hash.clone(),
        requested_by: request.requested_by.clone(),
        approved_by: approver.name.clone(),
        expires_at: now + ttl,
    })
}

/// sha256 of a JSON value in canonical form (serde_json's maps keep keys sorted).
pub fn canonical_hash(v: &Value) -> String {
    sha256_hex(&v.to_string())
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn human(name: &str, roles: &[Role]) -> Human {
        Human {
            name: name.into(),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn approver_binds_tool_and_exact_args() {
        let req = ActionRequest::new(
            "host.signal_process",
            json!({"pid": 42, "signal": "TERM"}),
            "oncall",
            &[],
        );
        let ok = approve(
            &req,
            &human("ana", &[Role::Approver]),
            Duration::minutes(5),
            Utc::now(),
        )
        .unwrap();
        let now = Utc::now();
        assert!(
            ok.covers(
                "host.signal_process",
                &json!({"signal": "TERM", "pid": 42}),
                now
            )
            .is_ok()
        );
        assert!(
            ok.covers(
                "host.signal_process",
                &json!({"pid": 43, "signal": "TERM"}),
                now
            )
            .is_err()
        );
        assert!(
            ok.covers(
                "host.signal_process",
                &json!({"pid": 42, "signal": "KILL"}),
                now
            )
            .is_err()
        );
        assert!(
            ok.covers(
                "deploy.rollback",
                &json!({"pid": 42, "signal": "TERM"}),
                now
            )
            .is_err()
        );
        let later = now + Duration::minutes(6);
        assert!(
            ok.covers(
                "host.signal_process",
                &json!({"pid": 42, "signal": "TERM"}),
                later
            )
            .unwrap_err()
            .to_string()
            .contains("expired")
        );
    }

    #[test]
    fn responders_and_requesters_cannot_approve() {
        let req = ActionRequest::new("host.signal_process", json!({"pid": 1}), "bo", &[]);
        assert!(matches!(
            approve(
                &req,
                &human("cy", &[Role::Responder]),
                Duration::minutes(5),
                Utc::now()
            ),
            Err(PolicyError::NotApprover { .. })
        ));
        assert!(matches!(
            approve(
                &req,
                &human("bo", &[Role::Approver]),
                Duration::minutes(5),
                Utc::now()
            ),
            Err(PolicyError::SelfApproval { .. })
        ));
    }
}
