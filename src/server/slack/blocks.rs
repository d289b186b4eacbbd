//! Block Kit messages: progress and results for the incident thread ([`text_message`]), the
//! approval message with its Approve and Deny buttons, and its replacement once decided. All
//! untrusted text goes through [`escape`] and is clipped to what Slack accepts.

use serde_json::{Value, json};

/// Slack refuses section text over 3000 characters; stay under it.
const MAX_SECTION_CHARS: usize = 2900;

/// A message ready for [`SlackClient::post_message`](super::SlackClient::post_message) /
/// [`SlackClient::update_message`](super::SlackClient::update_message):
/// fallback `text` (notifications) and Block Kit `blocks`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub blocks: Value,
}

/// Escapes untrusted text for Slack: `&`, `<`, `>` as entities (so no `<!channel>`, `<@U..>`
/// or links), and breaks bare `@channel`, `@here`, `@everyone` with a zero-width space.
pub fn escape(text: &str) -> String {
    escape_limited(text, usize::MAX)
}

/// [`escape`] keeping at most `limit` output characters; never cuts an entity.
fn escape_limited(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit) + 8);
    let mut count = 0;
    let mut buf = [0u8; 4];
    for (i, c) in text.char_indices() {
        let broadcast = || {
            let rest = &text.as_bytes()[i + 1..];
            ["channel", "here", "everyone"].iter().any(|w| {
                rest.get(..w.len())
                    .is_some_and(|r| r.eq_ignore_ascii_case(w.as_bytes()))
            })
        };
        let piece: &str = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '@' if broadcast() => "@\u{200B}",
            c => c.encode_utf8(&mut buf),
        };
        count += piece.chars().count();
        if count > limit {
            break;
        }
        out.push_str(piece);
    }
    out
}

/// [`escape`], clipped to `max_chars` characters with an ellipsis.
fn escape_clipped(text: &str, max_chars: usize) -> String {
    let full = escape(text);
    if full.chars().count() <= max_chars {
        return full;
    }
    let mut s = escape_limited(text, max_chars.saturating_sub(1));
    s.push('…');
    s
}

/// A code block of untrusted text: escaped, clipped, and unable to close its own fence.
fn code_block(text: &str) -> String {
    let body = escape_clipped(&text.replace("```", "`\u{200B}``"), MAX_SECTION_CHARS - 200);
    format!("```\n{body}\n```")
}

/// Inline code of untrusted text (backticks replaced so it cannot end early).
fn inline_code(text: &str) -> String {
    format!("`{}`", escape_clipped(&text.replace('`', "'"), 200))
}

/// A Slack mention of a user id; anything that is not a plain id is shown escaped instead.
fn mention(user: &str) -> String {
    // Only Slack user ids (U... or W..., upper-case letters and digits) become mentions; an
    // oncall name is shown as text.
    if user.len() > 1
        && (user.starts_with('U') || user.starts_with('W'))
        && user
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        format!("<@{user}>")
    } else {
        escape(user)
    }
}

fn section(mrkdwn: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}})
}

fn pretty(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// Progress or result text for the incident thread (escaped, clipped to one section).
pub fn text_message(text: &str) -> Message {
    let escaped = escape_clipped(&crate::redact::redact(text), MAX_SECTION_CHARS);
    Message {
        blocks: json!([section(escaped.clone())]),
        text: escaped,
    }
}

/// What an approval message shows.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalView<'a> {
    pub request_id: &'a str,
    pub tool: &'a str,
    pub args: &'a Value,
    /// The dry run: exact argv or HTTP request (a string is shown as is, else pretty JSON).
    pub plan: &'a Value,
    pub why: &'a str,
}

/// How an approval was decided, for [`decided_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Approved { by: String },
    Denied { by: String, reason: Option<String> },
}

fn approval_blocks(view: &ApprovalView<'_>) -> Vec<Value> {
    // Shown redacted: the desk keeps the exact arguments, whose hash the approval binds.
    use crate::redact::{redact, redacted};
    let (args, plan, why) = (redacted(view.args), redacted(view.plan), redact(view.why));
    let mut blocks = vec![section(format!(
        "*Approval needed:* {}",
        inline_code(view.tool)
    ))];
    if !why.trim().is_empty() {
        blocks.push(section(format!("*Why:* {}", escape_clipped(&why, 1000))));
    }
    blocks.push(section(format!(
        "*Arguments*\n{}",
        code_block(&pretty(&args))
    )));
    blocks.push(section(format!(
        "*Dry run*\n{}",
        code_block(&pretty(&plan))
    )));
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("request {}", inline_code(view.request_id))}
    ]}));
    blocks
}

/// The approval message: tool, arguments, the dry-run plan in code blocks, and the buttons
/// `Approve` (primary, `approve`) and `Deny` (danger, `deny`), both carrying
/// the request id as their value.
pub fn approval_message(view: &ApprovalView<'_>) -> Message {
    let mut blocks = approval_blocks(view);
    blocks.push(json!({
        "type": "actions",
        "block_id": "oncall_approval",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "action_id": "approve",
                "value": view.request_id
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "action_id": "deny",
                "value": view.request_id
            }
        ]
    }));
    Message {
        text: format!(
            "Approval needed: {} (request {})",
            escape(view.tool),
            escape(view.request_id)
        ),
        blocks: Value::Array(blocks),
    }
}

/// The replacement for a decided approval message: the same content, buttons removed, and who
/// approved (`approved by <@U..>`) or denied it.
pub fn decided_message(view: &ApprovalView<'_>, outcome: &Outcome) -> Message {
    let line = match outcome {
        Outcome::Approved { by } => format!(":white_check_mark: approved by {}", mention(by)),
        Outcome::Denied { by, reason } => {
            let mut s = format!(":no_entry: denied by {}", mention(by));
            if let Some(r) = reason.as_deref().filter(|r| !r.trim().is_empty()) {
                s.push_str(": ");
                s.push_str(&escape_clipped(r, 1000));
            }
            s
        }
    };
    let mut blocks = approval_blocks(view);
    blocks.push(section(line.clone()));
    Message {
        text: format!("{} {line}", escape(view.tool)),
        blocks: Value::Array(blocks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralizes_markup_and_broadcasts() {
        assert_eq!(escape("a & b < c > d"), "a &amp; b &lt; c &gt; d");
        let out = escape("full <!channel> <!here|here> <@U1> <https://evil|x> @here @Channel");
        assert!(!out.contains('<') && !out.contains('>'), "{out}");
        assert!(
            !out.contains("@here") && !out.to_lowercase().contains("@channel"),
            "{out}"
        );
        assert!(out.contains("&lt;!channel&gt;"));
        assert_eq!(mention("U123ABC"), "<@U123ABC>");
        assert_eq!(mention("<!channel>"), "&lt;!channel&gt;");
        assert_eq!(escape_clipped("a<b", 3), "a…", "an entity is never cut");
    }

    fn view<'a>(args: &'a Value, plan: &'a Value) -> ApprovalView<'a> {
        let why = "error rate <!channel> 40%";
        ApprovalView {
            request_id: "9f1c",
            tool: "flag.disable",
            args,
            plan,
            why,
        }
    }

    #[test]
    fn approval_message_has_code_blocks_and_two_buttons() {
        let args = json!({"flag": "new-checkout"});
        let plan = json!("curl -X POST https://flags/new-checkout/disable <!here>\n```\n@channel");
        let m = approval_message(&view(&args, &plan));
        let all = m.blocks.to_string();
        assert!(
            !all.contains("<!channel>") && !all.contains("<!here>"),
            "{all}"
        );
        let blocks = m.blocks.as_array().unwrap();
        let plan_text = blocks[3]["text"]["text"].as_str().unwrap();
        assert!(
            plan_text.starts_with("*Dry run*\n```\ncurl -X POST"),
            "{plan_text}"
        );
        assert_eq!(
            plan_text.matches("```").count(),
            2,
            "the plan cannot close its fence"
        );
        let args_text = blocks[2]["text"]["text"].as_str().unwrap();
        assert!(
            args_text.contains("\"flag\": \"new-checkout\""),
            "{args_text}"
        );
        let buttons = blocks.last().unwrap()["elements"].as_array().unwrap();
        let fields = |b: &Value| {
            let f = |k: &str| {
                b.pointer(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            [f("/text/text"), f("/style"), f("/action_id"), f("/value")]
        };
        assert_eq!(
            fields(&buttons[0]),
            ["Approve", "primary", "approve", "9f1c"]
        );
        assert_eq!(fields(&buttons[1]), ["Deny", "danger", "deny", "9f1c"]);
        assert_eq!(buttons.len(), 2);
        assert_eq!(m.text, "Approval needed: flag.disable (request 9f1c)");
    }

    #[test]
    fn decided_message_removes_buttons_and_names_the_decider() {
        let (args, plan) = (json!({}), json!(["kill", "-TERM", "4242"]));
        let approved = Outcome::Approved {
            by: "U2CERLKJA".into(),
        };
        let m = decided_message(&view(&args, &plan), &approved);
        assert!(
            m.blocks
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["type"] != "actions")
        );
        assert!(m.blocks.to_string().contains("approved by <@U2CERLKJA>"));
        let reason = Some("not during <!everyone> peak".to_owned());
        let denied = Outcome::Denied {
            by: "U1".into(),
            reason,
        };
        let m = decided_message(&view(&args, &plan), &denied);
        let last = &m.blocks.as_array().unwrap().last().unwrap()["text"]["text"];
        assert_eq!(
            last,
            ":no_entry: denied by <@U1>: not during &lt;!everyone&gt; peak"
        );
    }

    #[test]
    fn text_messages_are_escaped_and_clipped() {
        let m = text_message(&format!("<!channel> {}", "x".repeat(5000)));
        assert!(m.text.starts_with("&lt;!channel&gt;"));
        let shown = m.blocks[0]["text"]["text"].as_str().unwrap();
        assert_eq!(shown.chars().count(), MAX_SECTION_CHARS);
        assert!(shown.ends_with('…'));
    }
}
