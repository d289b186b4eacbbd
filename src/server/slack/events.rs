//! The Events API (`POST /slack/events`): Slack's URL check, and the bot's mentions with the
//! mention removed and Slack's entities decoded; any other event is acknowledged and ignored.

use super::{SlackError, malformed, opt, req, unescape};
use serde_json::Value;

/// An Events API request (`POST /slack/events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Slack checks the URL: answer 200 with this challenge.
    UrlVerification { challenge: String },
    /// Someone mentioned the bot.
    Mention(Mention),
    /// Anything else (other event types, bots mentioning us): acknowledge and ignore.
    Ignored {
        event_id: Option<String>,
        kind: String,
    },
}

/// An `app_mention` inside an `event_callback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The envelope's id, the same across Slack's retries: the [`Dedup`](super::Dedup) key.
    pub event_id: String,
    pub user: String,
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    /// The message text with the bot's `<@BOTID>` mention removed and entities decoded.
    pub text: String,
}

impl Mention {
    /// The thread to answer in: the mention's thread, or a new thread under the mention.
    pub fn reply_thread(&self) -> &str {
        self.thread_ts.as_deref().unwrap_or(&self.ts)
    }
}

/// Parses an Events API JSON body.
pub fn parse_event(body: &[u8]) -> Result<Event, SlackError> {
    const WHAT: &str = "Events API request";
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(WHAT, e.to_string()))?;
    match req(&v, "/type", WHAT)? {
        "url_verification" => Ok(Event::UrlVerification {
            challenge: req(&v, "/challenge", WHAT)?.to_owned(),
        }),
        "event_callback" => {
            let event_id = req(&v, "/event_id", WHAT)?.to_owned();
            let kind = req(&v, "/event/type", WHAT)?;
            if kind != "app_mention" {
                return Ok(Event::Ignored {
                    event_id: Some(event_id),
                    kind: kind.to_owned(),
                });
            }
            if v.pointer("/event/bot_id").is_some_and(|b| !b.is_null()) {
                return Ok(Event::Ignored {
                    event_id: Some(event_id),
                    kind: "app_mention from a bot".to_owned(),
                });
            }
            let bot = opt(&v, "/authorizations/0/user_id");
            Ok(Event::Mention(Mention {
                user: req(&v, "/event/user", WHAT)?.to_owned(),
                channel: req(&v, "/event/channel", WHAT)?.to_owned(),
                ts: req(&v, "/event/ts", WHAT)?.to_owned(),
                thread_ts: opt(&v, "/event/thread_ts"),
                text: unescape(&strip_mention(
                    v.pointer("/event/text")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    bot.as_deref(),
                )),
                event_id,
            }))
        }
        other => Ok(Event::Ignored {
            event_id: opt(&v, "/event_id"),
            kind: other.to_owned(),
        }),
    }
}

/// Removes the bot's `<@BOTID>` mentions from `text` when the bot's user id is known (the
/// envelope's `authorizations`), else the leading mention only; trims the result.
pub fn strip_mention(text: &str, bot_user_id: Option<&str>) -> String {
    match bot_user_id.filter(|id| !id.is_empty()) {
        Some(id) => text.replace(&format!("<@{id}>"), "").trim().to_owned(),
        None => {
            let t = text.trim();
            t.strip_prefix("<@")
                .and_then(|r| r.find('>').map(|i| r[i + 1..].trim()))
                .unwrap_or(t)
                .to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> Result<Event, SlackError> {
        parse_event(v.to_string().as_bytes())
    }

    #[test]
    fn parses_url_verification_and_app_mentions() {
        let e = event(json!({"token": "t", "challenge": "3eZbrw1a", "type": "url_verification"}));
        assert_eq!(
            e,
            Ok(Event::UrlVerification {
                challenge: "3eZbrw1a".into()
            })
        );
        let Ok(Event::Mention(m)) = event(json!({
            "type": "event_callback", "event_id": "Ev0PV52K21",
            "authorizations": [{"user_id": "UBOT", "is_bot": true}],
            "event": {"type": "app_mention", "user": "U061F7AUR", "channel": "C0LAN2Q65",
                "text": "<@UBOT> why is p99 &gt; 2s? ask <@U2>", "ts": "1515449522.000016",
                "thread_ts": "1515449000.000001"}
        })) else {
            panic!("not a mention")
        };
        assert_eq!(m.text, "why is p99 > 2s? ask <@U2>");
        assert_eq!(
            (m.event_id.as_str(), m.user.as_str()),
            ("Ev0PV52K21", "U061F7AUR")
        );
        assert_eq!(
            (m.channel.as_str(), m.ts.as_str()),
            ("C0LAN2Q65", "1515449522.000016")
        );
        assert_eq!(m.reply_thread(), "1515449000.000001");
        assert_eq!(strip_mention("  <@U9> status", None), "status");
        assert_eq!(strip_mention("status <@U9>", None), "status <@U9>");
    }

    #[test]
    fn other_events_are_ignored_and_gaps_named() {
        let other = json!({"type": "event_callback", "event_id": "Ev1",
            "event": {"type": "reaction_added"}});
        let kind = "reaction_added".to_owned();
        assert_eq!(
            event(other),
            Ok(Event::Ignored {
                event_id: Some("Ev1".into()),
                kind
            })
        );
        let mut mention = json!({"type": "event_callback", "event_id": "Ev2",
            "event": {"type": "app_mention", "bot_id": "B1", "channel": "C", "ts": "1"}});
        assert!(
            matches!(event(mention.clone()), Ok(Event::Ignored { .. })),
            "bots are ignored"
        );
        mention["event"].as_object_mut().unwrap().remove("bot_id");
        let e = event(mention).unwrap_err();
        assert!(e.to_string().contains("`event.user` is missing"), "{e}");
        let e = event(json!({"challenge": "x"})).unwrap_err();
        assert!(e.to_string().contains("`type` is missing"), "{e}");
        assert!(parse_event(b"not json").is_err());
    }
}
