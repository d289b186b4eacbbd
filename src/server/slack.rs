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

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The header carrying the Unix time (seconds) at which Slack signed the request.
pub const HEADER_TIMESTAMP: &str = "x-slack-request-timestamp";
/// The header carrying `v0=<hex HMAC-SHA256>`.
pub const HEADER_SIGNATURE: &str = "x-slack-signature";
/// The header Slack adds when it resends an Events API request (1, 2, 3).
pub const HEADER_RETRY_NUM: &str = "x-slack-retry-num";
/// How far a request timestamp may be from this server's clock, either way.
pub const MAX_SKEW_SECS: i64 = 300;
/// How long a signature stays acceptable (a timestamp is fresh for `MAX_SKEW_SECS` either way),
/// and so how long [`Dedup`] must remember signatures and event ids.
pub const REPLAY_WINDOW_SECS: i64 = 2 * MAX_SKEW_SECS;
/// The timeout of every Web API call.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Slack refuses section text over 3000 characters; stay under it.
const MAX_SECTION_CHARS: usize = 2900;

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
// Verification

/// Slack's signature of `body` at `timestamp`: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub fn sign(signing_secret: &str, timestamp: &str, body: &[u8]) -> Result<String, SlackError> {
    if signing_secret.is_empty() {
        return Err(SlackError::NoSecret);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes())
        .map_err(|_| SlackError::NoSecret)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    Ok(format!("v0={}", hex::encode(mac.finalize().into_bytes())))
}

/// Checks a request exactly as Slack signs it: both headers present, a numeric timestamp within
/// [`MAX_SKEW_SECS`] of `now_unix`, the `v0=` version, and the HMAC (compared in constant time).
/// Pass `""` for an absent header.
pub fn verify(
    signing_secret: &str,
    headers_timestamp: &str,
    headers_signature: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SlackError> {
    let ts = headers_timestamp.trim();
    let sig = headers_signature.trim();
    if ts.is_empty() {
        return Err(SlackError::MissingHeader("X-Slack-Request-Timestamp"));
    }
    if sig.is_empty() {
        return Err(SlackError::MissingHeader("X-Slack-Signature"));
    }
    let bad_ts = || SlackError::BadTimestamp(ts.chars().take(40).collect());
    if !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_ts());
    }
    let at: i64 = ts.parse().map_err(|_| bad_ts())?;
    let skew = now_unix.saturating_sub(at);
    if skew.unsigned_abs() > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SlackError::StaleTimestamp { skew });
    }
    if !sig.starts_with("v0=") {
        return Err(SlackError::BadVersion);
    }
    let expected = sign(signing_secret, ts, body)?;
    if bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
        Ok(())
    } else {
        Err(SlackError::BadSignature)
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup

/// A bounded, time-windowed set of keys: Events API `event_id`s (Slack retries) and signatures
/// (replays). Keys are forgotten after the window or, when full, oldest first. Thread-safe.
#[derive(Debug)]
pub struct Dedup {
    window_secs: i64,
    capacity: usize,
    inner: Mutex<DedupInner>,
}

#[derive(Debug, Default)]
struct DedupInner {
    seen: HashMap<String, i64>,
    /// Insertion order; an entry whose time differs from `seen` is stale and skipped.
    order: VecDeque<(i64, String)>,
}

impl DedupInner {
    fn pop_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front()
            && self.seen.get(&key) == Some(&at)
        {
            self.seen.remove(&key);
        }
    }
}

impl Default for Dedup {
    /// [`REPLAY_WINDOW_SECS`] and 10 000 keys.
    fn default() -> Self {
        Self::new(REPLAY_WINDOW_SECS, 10_000)
    }
}

impl Dedup {
    /// Remembers at most `capacity` keys (at least 1) for `window_secs` each.
    pub fn new(window_secs: i64, capacity: usize) -> Self {
        Self {
            window_secs,
            capacity: capacity.max(1),
            inner: Mutex::new(DedupInner::default()),
        }
    }

    /// `true` the first time `key` is seen within the window (and remembers it), `false` after.
    pub fn first_time(&self, key: &str, now_unix: i64) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *guard;
        while let Some((at, _)) = inner.order.front() {
            if now_unix.saturating_sub(*at) < self.window_secs {
                break;
            }
            inner.pop_oldest();
        }
        if let Some(&at) = inner.seen.get(key)
            && now_unix.saturating_sub(at) < self.window_secs
        {
            return false;
        }
        inner.seen.insert(key.to_owned(), now_unix);
        inner.order.push_back((now_unix, key.to_owned()));
        while inner.order.len() > self.capacity {
            inner.pop_oldest();
        }
        true
    }

    /// [`SlackError::Replay`] when this (already verified) signature was seen within the window.
    pub fn refuse_replay(&self, signature: &str, now_unix: i64) -> Result<(), SlackError> {
        if self.first_time(&format!("sig:{signature}"), now_unix) {
            Ok(())
        } else {
            Err(SlackError::Replay)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

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
    /// The envelope's id, the same across Slack's retries: the [`Dedup`] key.
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

/// An interactivity request (`POST /slack/interactions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// Approve or Deny pressed on an approval message.
    Button(ButtonPress),
    /// Another interaction type or action: acknowledge and ignore.
    Ignored { kind: String },
}

/// A press on one of the [`approval_message`] buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonPress {
    /// `true` for `approve`, `false` for `deny`.
    pub approve: bool,
    /// The approval request id (the button's value).
    pub request_id: String,
    /// The Slack user who pressed: map with [`approver_name`].
    pub user_id: String,
    pub channel_id: String,
    /// The approval message, to replace with [`decided_message`].
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
// Messages

/// A message ready for [`SlackClient::post_message`] / [`SlackClient::update_message`]:
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

// ---------------------------------------------------------------------------------------------
// Approvers

/// The oncall approver a Slack user id maps to in the config; unmapped users cannot approve.
pub fn approver_name<'a>(map: &'a BTreeMap<String, String>, slack_user: &str) -> Option<&'a str> {
    map.get(slack_user)
        .map(String::as_str)
        .filter(|name| !name.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Web API client

/// A minimal Slack Web API client (bot token, JSON bodies, [`TIMEOUT`] per call).
#[derive(Clone)]
pub struct SlackClient {
    /// `https://slack.com/api` unless pointed at a test double.
    pub base_url: String,
    pub bot_token: String,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackClient")
            .field("base_url", &self.base_url)
            .field("bot_token", &"<redacted>")
            .finish()
    }
}

impl SlackClient {
    /// The Web API of Slack's cloud.
    pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";

    /// A client for Slack's cloud with its own HTTP connection pool.
    pub fn new(bot_token: impl Into<String>) -> Result<Self, SlackError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| SlackError::Http {
                method: "client setup",
                reason: e.to_string(),
            })?;
        Ok(Self {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            bot_token: bot_token.into(),
            http,
        })
    }

    /// Posts a message, in a thread when `thread_ts` is given; returns the new message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<Value>,
    ) -> Result<String, SlackError> {
        let mut body = json!({
            "channel": channel,
            "text": crate::redact::redact(text),
            "link_names": false,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(t) = thread_ts {
            body["thread_ts"] = json!(t);
        }
        if let Some(mut b) = blocks {
            crate::redact::redact_value(&mut b);
            body["blocks"] = b;
        }
        let answer = self.call("chat.postMessage", &body).await?;
        opt(&answer, "/ts").ok_or_else(|| malformed("chat.postMessage answer", "`ts` is missing"))
    }

    /// Replaces the message `ts` in `channel` (e.g. with a [`decided_message`]).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<Value>,
    ) -> Result<(), SlackError> {
        let text = crate::redact::redact(text);
        let mut body = json!({"channel": channel, "ts": ts, "text": text, "link_names": false});
        if let Some(mut b) = blocks {
            crate::redact::redact_value(&mut b);
            body["blocks"] = b;
        }
        self.call("chat.update", &body).await.map(drop)
    }

    async fn call(&self, method: &'static str, body: &Value) -> Result<Value, SlackError> {
        let http_err = |reason: String| SlackError::Http { method, reason };
        let url = format!("{}/{method}", self.base_url.trim_end_matches('/'));
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.bot_token)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string())
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                http_err(if e.is_timeout() {
                    format!("no answer within {} s", TIMEOUT.as_secs())
                } else {
                    e.to_string()
                })
            })?;
        let status = resp.status();
        if !status.is_success() {
            let retry = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|s| format!(" (retry after {s} s)"))
                .unwrap_or_default();
            return Err(http_err(format!("HTTP {status}{retry}")));
        }
        let bytes = resp.bytes().await.map_err(|e| http_err(e.to_string()))?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| http_err(format!("the answer is not JSON: {e}")))?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(answer)
        } else {
            let error = opt(&answer, "/error").unwrap_or_else(|| "unknown_error".to_owned());
            tracing::warn!(method, %error, "Slack Web API call failed");
            Err(SlackError::Api { method, error })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    // Slack's own worked example from "Verifying requests from Slack"
    // (https://api.slack.com/authentication/verifying-requests-from-slack).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const NOW: i64 = 1_531_420_618;
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn check(secret: &str, ts: &str, sig: &str, body: &str, now: i64) -> Result<(), SlackError> {
        verify(secret, ts, sig, body.as_bytes(), now)
    }

    #[test]
    fn slacks_documented_example_verifies() {
        assert_eq!(sign(SECRET, TS, BODY.as_bytes()).unwrap(), SIG);
        assert_eq!(check(SECRET, TS, SIG, BODY, NOW), Ok(()));
    }

    #[test]
    fn forged_signature_and_wrong_secret_are_refused() {
        let forged = format!("v0={}", "0".repeat(64));
        assert_eq!(
            check(SECRET, TS, &forged, BODY, NOW),
            Err(SlackError::BadSignature)
        );
        assert_eq!(
            check("other", TS, SIG, BODY, NOW),
            Err(SlackError::BadSignature)
        );
        assert_eq!(
            check(SECRET, TS, &SIG[..20], BODY, NOW),
            Err(SlackError::BadSignature)
        );
        assert_eq!(check("", TS, SIG, BODY, NOW), Err(SlackError::NoSecret));
    }

    #[test]
    fn tampered_body_is_refused() {
        let tampered = BODY.replace("roadrunner", "coyote");
        let err = check(SECRET, TS, SIG, &tampered, NOW).unwrap_err();
        assert_eq!(err, SlackError::BadSignature);
        assert!(err.to_string().contains("body was altered"), "{err}");
    }

    #[test]
    fn stale_timestamps_are_refused_both_ways() {
        let past = check(SECRET, TS, SIG, BODY, NOW + 301).unwrap_err();
        assert_eq!(past, SlackError::StaleTimestamp { skew: 301 });
        assert!(past.to_string().contains("301 s away"), "{past}");
        let future = check(SECRET, TS, SIG, BODY, NOW - 301).unwrap_err();
        assert_eq!(future, SlackError::StaleTimestamp { skew: -301 });
        assert_eq!(
            check(SECRET, TS, SIG, BODY, NOW + 300),
            Ok(()),
            "5 min is still fresh"
        );
        assert_eq!(check(SECRET, TS, SIG, BODY, NOW - 300), Ok(()));
    }

    #[test]
    fn missing_headers_bad_timestamps_and_versions_are_refused() {
        let e = check(SECRET, "", SIG, BODY, NOW).unwrap_err();
        assert_eq!(e, SlackError::MissingHeader("X-Slack-Request-Timestamp"));
        assert!(
            e.to_string()
                .starts_with("missing X-Slack-Request-Timestamp header")
        );
        let e = check(SECRET, TS, " ", BODY, NOW).unwrap_err();
        assert_eq!(e, SlackError::MissingHeader("X-Slack-Signature"));
        for ts in [
            "abc",
            "-1531420618",
            "+1531420618",
            "1531420618.5",
            "99999999999999999999",
        ] {
            let e = check(SECRET, ts, SIG, BODY, NOW).unwrap_err();
            assert!(matches!(e, SlackError::BadTimestamp(_)), "{ts}: {e}");
        }
        let v1 = SIG.replacen("v0=", "v1=", 1);
        assert_eq!(
            check(SECRET, TS, &v1, BODY, NOW),
            Err(SlackError::BadVersion)
        );
    }

    #[test]
    fn dedup_remembers_keys_within_the_window_only() {
        let d = Dedup::new(600, 100);
        assert!(d.first_time("Ev1", 1000));
        assert!(
            !d.first_time("Ev1", 1001),
            "a retry within the window is a duplicate"
        );
        assert!(d.first_time("Ev2", 1001));
        assert!(!d.first_time("Ev1", 1599));
        assert!(d.first_time("Ev1", 1600), "forgotten after the window");
        assert_eq!(d.refuse_replay(SIG, 1600), Ok(()));
        assert_eq!(d.refuse_replay(SIG, 1700), Err(SlackError::Replay));
    }

    #[test]
    fn dedup_is_bounded() {
        let d = Dedup::new(600, 3);
        for k in ["a", "b", "c", "d"] {
            assert!(d.first_time(k, 10));
        }
        assert!(d.first_time("a", 11), "the oldest key was evicted");
        assert!(!d.first_time("d", 11));
        let inner = d.inner.lock().unwrap();
        assert!(inner.order.len() <= 3 && inner.seen.len() <= 3);
    }

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

    #[test]
    fn only_mapped_slack_users_are_approvers() {
        let map = BTreeMap::from([("U2CERLKJA".into(), "ana".into()), ("U9".into(), "".into())]);
        assert_eq!(approver_name(&map, "U2CERLKJA"), Some("ana"));
        assert_eq!(approver_name(&map, "U404"), None);
        assert_eq!(approver_name(&map, "U9"), None);
    }

    /// One request received by the test double.
    #[derive(Debug, Clone)]
    struct Captured {
        path: String,
        auth: String,
        content_type: String,
        body: Value,
    }

    type Log = Arc<Mutex<Vec<Captured>>>;

    /// A test double for Slack's cloud: a local axum server on 127.0.0.1:0 that records every
    /// request and answers each with `status` and `reply`; returns a client pointed at it.
    async fn fake_slack(status: u16, reply: Value) -> (SlackClient, Log) {
        use axum::http::{HeaderMap, StatusCode, Uri};
        let log = Log::default();
        let seen = log.clone();
        let handler = move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| async move {
            let h = |n| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            seen.lock().unwrap().push(Captured {
                path: uri.path().to_owned(),
                auth: h("authorization"),
                content_type: h("content-type"),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            let status = StatusCode::from_u16(status).unwrap();
            (status, [("retry-after", "30")], axum::Json(reply))
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut client = SlackClient::new("xoxb-test-token").unwrap();
        client.base_url = format!("http://{addr}/api");
        (client, log)
    }

    #[tokio::test]
    async fn post_message_sends_a_bearer_json_request_and_returns_ts() {
        let (client, log) = fake_slack(200, json!({"ok": true, "ts": "1700000000.000200"})).await;
        let m = text_message("investigating <checkout>");
        let blocks = Some(m.blocks.clone());
        let ts = client
            .post_message("C1", Some("1700.1"), &m.text, blocks)
            .await
            .unwrap();
        assert_eq!(ts, "1700000000.000200");
        let got = log.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/api/chat.postMessage");
        assert_eq!(got[0].auth, "Bearer xoxb-test-token");
        assert_eq!(got[0].content_type, "application/json; charset=utf-8");
        assert_eq!(
            (&got[0].body["channel"], &got[0].body["thread_ts"]),
            (&json!("C1"), &json!("1700.1"))
        );
        assert_eq!(got[0].body["text"], "investigating &lt;checkout&gt;");
        assert_eq!(got[0].body["blocks"], m.blocks);
        assert!(
            !format!("{client:?}").contains("xoxb"),
            "the token is never printed"
        );
    }

    #[tokio::test]
    async fn slack_failures_name_slacks_error_code_or_the_http_status() {
        let (client, log) =
            fake_slack(200, json!({"ok": false, "error": "message_not_found"})).await;
        let e = client
            .update_message("C1", "1700.2", "done", Some(json!([])))
            .await
            .unwrap_err();
        let want = SlackError::Api {
            method: "chat.update",
            error: "message_not_found".into(),
        };
        assert_eq!(e, want);
        assert!(e.to_string().contains("message_not_found"), "{e}");
        let got = log.lock().unwrap().clone();
        assert_eq!(
            (got[0].path.as_str(), &got[0].body["ts"]),
            ("/api/chat.update", &json!("1700.2"))
        );
        let (client, _) = fake_slack(429, json!({"ok": false, "error": "ratelimited"})).await;
        let e = client
            .post_message("C1", None, "x", None)
            .await
            .unwrap_err();
        let SlackError::Http { reason, .. } = &e else {
            panic!("{e}")
        };
        assert!(
            reason.contains("429") && reason.contains("retry after 30"),
            "{e}"
        );
    }
}
