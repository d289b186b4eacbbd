//! Requests to and from their records: the audit log's `request` records and the shared
//! store's rows, and the desk rebuilt from the audit log at start.

use super::{Entry, State};
use crate::policy::rules::Actor;
use crate::policy::{ActionRequest, Approval, canonical_hash};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// A request (pending) from its record: an audit `request` record's data, or the `request` of
/// a shared store's row (the same fields, with the exact arguments).
pub(super) fn entry_of(d: &Value, at: DateTime<Utc>) -> Entry {
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
pub(super) fn request_record(
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
pub(super) fn restore(records: &[crate::policy::audit::Record]) -> Vec<Entry> {
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
