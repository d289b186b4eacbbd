//! `[slack]`: the slash command, app mentions and approval buttons.

use serde::{Deserialize, Serialize};

/// Slack settings. Slack is on when the signing secret's variable is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// Variable holding the app's signing secret (verifies every request from Slack).
    pub signing_secret_env: String,
    /// Variable holding the bot token (`xoxb-...`) used to post into threads.
    pub bot_token_env: String,
    /// The Web API base URL (tests point it at a local capture server).
    pub api_base: String,
    /// Slack user id -> oncall name, for the people who may press Approve. Nobody else can.
    pub approvers: std::collections::BTreeMap<String, String>,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            signing_secret_env: "SLACK_SIGNING_SECRET".into(),
            bot_token_env: "SLACK_BOT_TOKEN".into(),
            api_base: "https://slack.com/api".into(),
            approvers: Default::default(),
        }
    }
}
