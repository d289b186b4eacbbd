//! Slash commands (`POST /slack/commands`): the form Slack sends, its text decoded.

use super::{SlackError, malformed};
use serde::Deserialize;

/// A slash command (`POST /slack/commands`, form-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    pub channel_id: String,
    pub response_url: String,
    #[serde(default)]
    pub trigger_id: String,
    #[serde(default)]
    pub team_id: String,
}

/// Parses a slash command form body; `text` comes back with Slack's entities decoded.
pub fn parse_command(body: &[u8]) -> Result<SlashCommand, SlackError> {
    let mut c: SlashCommand = serde_urlencoded::from_bytes(body)
        .map_err(|e| malformed("slash command", e.to_string()))?;
    c.text = unescape(&c.text);
    Ok(c)
}

/// Decodes the three entities Slack escapes in user text (`&lt;`, `&gt;`, `&amp;`).
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The body of Slack's own worked example from "Verifying requests from Slack"
    // (https://api.slack.com/authentication/verifying-requests-from-slack), as in `signature`.
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    #[test]
    fn parses_slash_commands() {
        let c = parse_command(BODY.as_bytes()).unwrap();
        assert_eq!(
            (c.command.as_str(), c.text.as_str()),
            ("/webhook-collect", "")
        );
        assert_eq!(
            (c.user_id.as_str(), c.user_name.as_str()),
            ("U2CERLKJA", "roadrunner")
        );
        assert_eq!(
            (c.channel_id.as_str(), c.team_id.as_str()),
            ("G8PSS9T3V", "T1DC2JH3J")
        );
        assert!(
            c.response_url
                .starts_with("https://hooks.slack.com/commands/T1DC2JH3J/")
        );
        assert!(c.trigger_id.starts_with("398738663015."));
        let form = "command=%2Foncall&text=p99+%26gt%3B+2s+%26amp%3Blt%3B&user_id=U1&channel_id=C1&response_url=x";
        assert_eq!(
            parse_command(form.as_bytes()).unwrap().text,
            "p99 > 2s &lt;"
        );
        let e = parse_command(b"command=%2Foncall&user_id=U1&response_url=x").unwrap_err();
        assert!(e.to_string().contains("channel_id"), "{e}");
    }
}
