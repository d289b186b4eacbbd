//! Slack: request verification, retry/replay dedup, payload parsing, Block Kit messages and a
//! small Web API client. Pure functions plus [`SlackClient`]; the routes live in the server.
//!
//! How the three Slack routes of the API contract use this module (every route reads the raw
//! body bytes first: the signature covers the exact bytes Slack sent):
//!
//! 1. [`verify`]`(secret, ts_header, sig_header, body, now)` with the headers
//!    [`HEADER_TIMESTAMP`] and [`HEADER_SIGNATURE`] (pass `""` when a header is absent). An error
//!    is a 401 whose message is the error's text.
//! 2. [`Dedup::refuse_replay`]`(sig_header, now)` on a shared [`Dedup`]: the same signature twice
//!    within [`REPLAY_WINDOW_SECS`] is a replay (401).
//! 3. Parse, then act:
//!    - `POST /slack/commands`: [`parse_command`] -> [`SlashCommand`].
//!    - `POST /slack/events`: [`parse_event`] -> [`Event`]. Answer `UrlVerification` with its
//!      `challenge` as `text/plain`. Slack resends an event it thinks was lost (header
//!      [`HEADER_RETRY_NUM`]) with a new signature but the same `event_id`: call
//!      [`Dedup::first_time`] with the `event_id` and acknowledge (200) without acting when it
//!      says `false`. Always answer within 3 s and do the work in the background.
//!    - `POST /slack/interactions`: [`parse_interaction`] -> [`Interaction`]. A [`ButtonPress`]
//!      counts only when [`approver_name`] maps its Slack user to an approver; then
//!      [`decided_message`] replaces the approval message via [`SlackClient::update_message`].
//!
//! Messages: [`text_message`] (progress and results, posted in the incident thread),
//! [`approval_message`] and [`decided_message`]. All text that reaches Slack goes through
//! [`escape`]: telemetry and model output are untrusted and must never mention `<!channel>`.
//! Secrets never reach Slack: text and arguments are redacted before they are escaped, and
//! every message is redacted once more as it is sent ([`SlackClient::post_message`],
//! [`SlackClient::update_message`]).
//! Malformed input gives [`SlackError::Malformed`], which names what was missing.

mod blocks;
mod client;
mod commands;
mod events;
mod interactions;
mod signature;

pub use blocks::{
    ApprovalView, Message, Outcome, approval_message, decided_message, escape, text_message,
};
pub use client::{SlackClient, TIMEOUT};
pub use commands::{SlashCommand, parse_command, unescape};
pub use events::{Event, Mention, parse_event, strip_mention};
pub use interactions::{ButtonPress, Interaction, approver_name, parse_interaction};
pub use signature::{
    Dedup, HEADER_RETRY_NUM, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_SKEW_SECS, REPLAY_WINDOW_SECS,
    sign, verify,
};

use serde_json::Value;

/// Everything that can go wrong in this module; each message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error("missing {0} header: Slack signs every request, so this one is not from Slack")]
    MissingHeader(&'static str),
    #[error("X-Slack-Request-Timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    #[error(
        "X-Slack-Request-Timestamp is {skew} s away from this server's clock (at most {MAX_SKEW_SECS} s allowed): a replayed request or a wrong clock"
    )]
    StaleTimestamp {
        /// `now - timestamp`: positive for the past, negative for the future.
        skew: i64,
    },
    #[error("X-Slack-Signature must start with the version prefix \"v0=\"")]
    BadVersion,
    #[error(
        "X-Slack-Signature does not match the body: wrong signing secret, or the body was altered"
    )]
    BadSignature,
    #[error("this X-Slack-Signature was already used within {REPLAY_WINDOW_SECS} s: a replay")]
    Replay,
    #[error("the Slack signing secret is empty: set it in the configuration")]
    NoSecret,
    #[error("malformed Slack {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("Slack {method} failed with error code {error:?}")]
    Api { method: &'static str, error: String },
    #[error("cannot call Slack {method}: {reason}")]
    Http {
        method: &'static str,
        reason: String,
    },
}

fn malformed(what: &'static str, reason: impl Into<String>) -> SlackError {
    SlackError::Malformed {
        what,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON fields, for the parsers and the client

fn req<'a>(v: &'a Value, pointer: &str, what: &'static str) -> Result<&'a str, SlackError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            let name = pointer.trim_start_matches('/').replace('/', ".");
            malformed(what, format!("`{name}` is missing or not a string"))
        })
}

fn opt(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
