//! Interactivity (`POST /slack/interactions`): Approve or Deny pressed on an approval message
//! (`block_actions`), and which Slack users may press them; any other interaction
//! (`view_submission`, other actions) is acknowledged and ignored.

use super::{SlackError, malformed, opt, req};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// An interactivity request (`POST /slack/interactions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// Approve or Deny pressed on an approval message.
    Button(ButtonPress),
    /// Another interaction type or action: acknowledge and ignore.
    Ignored { kind: String },
}

/// A press on one of the [`approval_message`](super::approval_message) buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonPress {
    /// `true` for `approve`, `false` for `deny`.
    pub approve: bool,
    /// The approval request id (the button's value).
    pub request_id: String,
    /// The Slack user who pressed: map with [`approver_name`].
    pub user_id: String,
    pub channel_id: String,
    /// The approval message, to replace with [`decided_message`](super::decided_message).
    pub message_ts: String,
    pub thread_ts: Option<String>,
    pub response_url: Option<String>,
}

/// Parses an interactivity form body (field `payload` holding JSON).
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, SlackError> {
    const WHAT: &str = "interaction";
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let form: Form =
        serde_urlencoded::from_bytes(body).map_err(|e| malformed(WHAT, e.to_string()))?;
    let v: Value = serde_json::from_str(&form.payload)
        .map_err(|e| malformed(WHAT, format!("`payload` is not JSON: {e}")))?;
    let kind = req(&v, "/type", WHAT)?;
    if kind != "block_actions" {
        return Ok(Interaction::Ignored {
            kind: kind.to_owned(),
        });
    }
    let action = req(&v, "/actions/0/action_id", WHAT)?;
    let approve = match action {
        "approve" => true,
        "deny" => false,
        other => {
            return Ok(Interaction::Ignored {
                kind: format!("block_actions/{other}"),
            });
        }
    };
    Ok(Interaction::Button(ButtonPress {
        approve,
        request_id: req(&v, "/actions/0/value", WHAT)?.to_owned(),
        user_id: req(&v, "/user/id", WHAT)?.to_owned(),
        channel_id: req(&v, "/channel/id", WHAT)?.to_owned(),
        message_ts: req(&v, "/message/ts", WHAT)?.to_owned(),
        thread_ts: opt(&v, "/container/thread_ts").or_else(|| opt(&v, "/message/thread_ts")),
        response_url: opt(&v, "/response_url"),
    }))
}

// ---------------------------------------------------------------------------------------------
// Approvers

/// The oncall approver a Slack user id maps to in the config; unmapped users cannot approve.
pub fn approver_name<'a>(map: &'a BTreeMap<String, String>, slack_user: &str) -> Option<&'a str> {
    map.get(slack_user)
        .map(String::as_str)
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(payload: &Value) -> Vec<u8> {
        serde_urlencoded::to_string([("payload", payload.to_string())])
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn parses_approve_and_deny_buttons() {
        let mut p = json!({
            "type": "block_actions", "user": {"id": "U2CERLKJA", "username": "ana"},
            "container": {"type": "message", "message_ts": "1700.2", "thread_ts": "1700.1"},
            "channel": {"id": "C1"}, "message": {"ts": "1700.2", "text": "Approval needed"},
            "response_url": "https://hooks.slack.com/actions/T1/1/x",
            "actions": [{"action_id": "approve", "value": "9f1c", "type": "button"}]
        });
        let Ok(Interaction::Button(b)) = parse_interaction(&form(&p)) else {
            panic!("no button")
        };
        assert!(b.approve);
        assert_eq!(
            (b.request_id.as_str(), b.user_id.as_str()),
            ("9f1c", "U2CERLKJA")
        );
        assert_eq!(
            (b.channel_id.as_str(), b.message_ts.as_str()),
            ("C1", "1700.2")
        );
        assert_eq!(b.thread_ts.as_deref(), Some("1700.1"));
        assert_eq!(
            b.response_url.as_deref(),
            Some("https://hooks.slack.com/actions/T1/1/x")
        );
        p["actions"][0]["action_id"] = json!("deny");
        let Ok(Interaction::Button(b)) = parse_interaction(&form(&p)) else {
            panic!("no button")
        };
        assert!(!b.approve);
        p["actions"][0].as_object_mut().unwrap().remove("value");
        let e = parse_interaction(&form(&p)).unwrap_err();
        assert!(
            e.to_string().contains("`actions.0.value` is missing"),
            "{e}"
        );
    }

    #[test]
    fn malformed_interactions_say_what_is_missing() {
        let e = parse_interaction(b"foo=bar").unwrap_err();
        assert!(e.to_string().contains("payload"), "{e}");
        let no_actions = json!({"type": "block_actions", "actions": []});
        let e = parse_interaction(&form(&no_actions)).unwrap_err();
        assert!(e.to_string().contains("actions.0.action_id"), "{e}");
        let e = parse_interaction(b"payload=%7Bnope").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let modal = parse_interaction(&form(&json!({"type": "view_submission"})));
        assert_eq!(
            modal,
            Ok(Interaction::Ignored {
                kind: "view_submission".into()
            })
        );
    }

    #[test]
    fn only_mapped_slack_users_are_approvers() {
        let map = BTreeMap::from([("U2CERLKJA".into(), "ana".into()), ("U9".into(), "".into())]);
        assert_eq!(approver_name(&map, "U2CERLKJA"), Some("ana"));
        assert_eq!(approver_name(&map, "U404"), None);
        assert_eq!(approver_name(&map, "U9"), None);
    }
}
