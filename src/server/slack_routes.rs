//! Slack's requests: `/oncall <report>` and app mentions open or continue an incident in a
//! thread; Approve / Deny buttons decide an action request (only mapped approvers can).
//!
//! Every Slack request is verified ([`slack::verify`], then replay refusal) before anything
//! else, acknowledged at once, and handled in the background, so the acknowledgement stays well
//! inside Slack's 3 seconds whatever the investigation does. Events Slack resends (same
//! `event_id`) are acknowledged and not acted on twice. The router registers these handlers in
//! the group whose operations the OpenAPI document marks `slack-signature`.

use super::slack::{self, Interaction};
use super::slack_bridge::Bridge;
use super::{AppState, api, limits, runner};
use crate::policy::{Human, Role};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// A slash command as Slack posts it (form-encoded).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents what Slack sends
pub(crate) struct SlackCommand {
    #[schema(example = "/oncall")]
    command: String,
    /// The report: what is wrong, in plain words (empty: a usage note).
    text: Option<String>,
    user_id: String,
    user_name: Option<String>,
    channel_id: String,
    response_url: String,
    trigger_id: Option<String>,
    team_id: Option<String>,
}

/// The reply Slack shows the person who typed the command.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"response_type": "in_channel", "text": "Incident 2026-11-27-01 opened; oncall is investigating. Follow the thread."}))]
pub(crate) struct SlackReply {
    /// `in_channel` (everyone sees it) or `ephemeral` (only the person who typed it).
    #[schema(pattern = "^(in_channel|ephemeral)$")]
    response_type: &'static str,
    text: String,
}

impl SlackReply {
    fn ephemeral(text: impl Into<String>) -> Response {
        Json(SlackReply {
            response_type: "ephemeral",
            text: text.into(),
        })
        .into_response()
    }
}

/// An Events API envelope: `url_verification` {challenge}, or `event_callback` {event_id,
/// event: {type: app_mention, user, channel, ts, thread_ts?, text}, authorizations: [{user_id}]}.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents what Slack sends
#[schema(example = json!({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}))]
pub(crate) struct SlackEventsRequest {
    /// `url_verification` or `event_callback`.
    #[schema(rename = "type")]
    kind: String,
    challenge: Option<String>,
    event_id: Option<String>,
    event: Option<serde_json::Value>,
    authorizations: Option<Vec<serde_json::Value>>,
}

/// A button press as Slack posts it (form-encoded).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents what Slack sends
pub(crate) struct SlackInteraction {
    /// The interaction as JSON: `{"type": "block_actions", "actions": [{"action_id":
    /// "approve"|"deny", "value": "<request id>"}], "user": {"id"}, "channel": {"id"},
    /// "message": {"ts", "thread_ts"}, ...}`.
    #[schema(content_media_type = "application/json")]
    payload: String,
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The bridge and a verified request, or the refusal. A signature is refused as a replay when
/// this replica or any other sharing its store saw it within [`slack::REPLAY_WINDOW_SECS`].
async fn verified<'a>(
    st: &'a AppState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
) -> Result<&'a Bridge, Box<Response>> {
    let b = verified_here(st, headers, body, endpoint)?;
    let sig = headers
        .get(slack::HEADER_SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match st
        .store
        .seen_first(&format!("slack:sig:{sig}"), slack::REPLAY_WINDOW_SECS)
        .await
    {
        Ok(true) => Ok(b),
        Ok(false) => {
            st.metrics.count(
                &st.metrics.slack_requests,
                &[("endpoint", endpoint), ("outcome", "refused")],
            );
            Err(Box::new(plain(
                StatusCode::UNAUTHORIZED,
                slack::SlackError::Replay.to_string(),
            )))
        }
        Err(e) => Err(Box::new(store_down(&e))),
    }
}

/// 503 when the shared store cannot tell whether a request was seen: Slack retries it.
fn store_down(e: &crate::incidents::StoreError) -> Response {
    tracing::error!("Slack: the incident store is unavailable: {e}");
    let mut r = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "the incident store is unavailable; retry".into(),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}

/// [`verified`]'s checks that need no store: the signature, this replica's replay memory and
/// the rate limit.
fn verified_here<'a>(
    st: &'a AppState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
) -> Result<&'a Bridge, Box<Response>> {
    let Some(b) = st.slack.as_deref() else {
        return Err(Box::new(plain(
            StatusCode::NOT_FOUND,
            "Slack is not configured on this server (set the signing secret's variable, [slack] signing_secret_env)".into(),
        )));
    };
    if let Err(e) = b.check(headers, body) {
        st.metrics.count(
            &st.metrics.slack_requests,
            &[("endpoint", endpoint), ("outcome", "refused")],
        );
        return Err(Box::new(plain(StatusCode::UNAUTHORIZED, e.to_string())));
    }
    // Slack's requests share one budget: a flood of valid ones is slowed, never crashes us.
    if !st.limiter.allow("slack") {
        st.metrics.count(
            &st.metrics.slack_requests,
            &[("endpoint", endpoint), ("outcome", "limited")],
        );
        let mut r = plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from Slack; retry".into(),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return Err(Box::new(r));
    }
    st.metrics.count(
        &st.metrics.slack_requests,
        &[("endpoint", endpoint), ("outcome", "accepted")],
    );
    Ok(b)
}

/// Slack slash command `/oncall <report>`
///
/// Opens an incident (source `slack`) from the command text and, when a bot token is set, a
/// thread for it in the channel; its investigation starts once the thread exists. An empty
/// text answers a usage note (ephemeral), and so does a refusal (a text over its maximum, the
/// person at `[server] max_investigations_per_user`).
#[utoipa::path(
    post,
    path = "/slack/commands",
    operation_id = "slackCommand",
    tag = "slack",
    request_body(content = SlackCommand, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The reply Slack shows.", body = SlackReply),
        (status = 400, description = "The body is not what Slack sends to this endpoint.", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn command(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bridge = match verified(&st, &headers, &body, "commands").await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let cmd = match slack::parse_command(&body) {
        Ok(c) => c,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if cmd.text.trim().is_empty() {
        return SlackReply::ephemeral(
            "Usage: /oncall <what is wrong, in plain words>, e.g. /oncall checkout p99 > 2s since the deploy",
        );
    }
    let ephemeral = SlackReply::ephemeral;
    if let Err(e) = st.check(limits::chars("text", &cmd.text, limits::SLACK_TEXT_CHARS)) {
        return ephemeral(e.message());
    }
    let actor = format!("slack:{}", cmd.user_id);
    // The person's investigation slot before the incident exists: a refusal opens nothing.
    let slot = match st.investigation_slot(&actor, "a new incident") {
        Ok(s) => s,
        Err(e) => return ephemeral(e.to_string()),
    };
    let id = match api::open_incident(&st, &cmd.text, None, "slack", &actor).await {
        Ok(id) => id,
        Err(e) => return ephemeral(e.message()),
    };
    slot.relabel(&format!("incident {id}"));
    // The thread is made in the background (posting to Slack must not delay the
    // acknowledgement), and the investigation starts once the incident has its thread.
    let (st2, id2) = (st.clone(), id.clone());
    let channel = cmd.channel_id.clone();
    let opener = format!(
        "Incident *{id}* opened by <@{}>: {}\nInvestigating; progress follows in this thread.",
        cmd.user_id,
        slack::escape(&crate::redact::redact(&cmd.text))
    );
    let has_client = bridge.client.is_some();
    tokio::spawn(async move {
        if has_client && let Some(b) = st2.slack.as_deref() {
            let m = slack::Message {
                text: opener.clone(),
                blocks: json!([{"type": "section", "text": {"type": "mrkdwn", "text": opener}}]),
            };
            if let Some(ts) = b.post(&channel, None, m).await {
                let _ = st2
                    .store
                    .set_slack_thread(&id2, &format!("{channel}/{ts}"))
                    .await;
            }
        }
        super::start_round_holding(&st2, &id2, slot);
    });
    Json(SlackReply {
        response_type: "in_channel",
        text: format!("Incident {id} opened; oncall is investigating. Follow the thread."),
    })
    .into_response()
}

/// Slack Events API
///
/// `url_verification` answers the challenge; an `app_mention` opens an incident in a thread, or
/// continues the incident whose thread it is in. Other events, bots' mentions and Slack's
/// retries of an event already handled (on any replica) are acknowledged and ignored.
#[utoipa::path(
    post,
    path = "/slack/events",
    operation_id = "slackEvents",
    tag = "slack",
    request_body = SlackEventsRequest,
    responses(
        (status = 200, description = "Acknowledged: the challenge for url_verification (text/plain), else an empty body.", body = String, content_type = "text/plain"),
        (status = 400, description = "The body is not what Slack sends to this endpoint.", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bridge = match verified(&st, &headers, &body, "events").await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let ev = match slack::parse_event(&body) {
        Ok(e) => e,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let m = match ev {
        slack::Event::UrlVerification { challenge } => return plain(StatusCode::OK, challenge),
        slack::Event::Ignored { .. } => return StatusCode::OK.into_response(),
        slack::Event::Mention(m) => m,
    };
    if !bridge
        .events
        .first_time(&m.event_id, chrono::Utc::now().timestamp())
    {
        // A retry of an event already handled.
        return StatusCode::OK.into_response();
    }
    // ... here or on any replica sharing the store (Slack's retry may reach another one).
    match st
        .store
        .seen_first(
            &format!("slack:event:{}", m.event_id),
            slack::REPLAY_WINDOW_SECS,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return StatusCode::OK.into_response(),
        Err(e) => return store_down(&e),
    }
    tokio::spawn(async move {
        let thread = format!("{}/{}", m.channel, m.reply_thread());
        let actor = format!("slack:{}", m.user);
        // A refusal is answered in the thread (best effort), never stored.
        let refuse = |why: String| {
            let (st, channel, ts) = (st.clone(), m.channel.clone(), m.reply_thread().to_string());
            async move {
                tracing::warn!("Slack mention refused: {why}");
                if let Some(b) = st.slack.as_deref() {
                    b.post(&channel, Some(&ts), slack::text_message(&why)).await;
                }
            }
        };
        if let Err(e) = st.check(limits::chars("text", &m.text, limits::SLACK_TEXT_CHARS)) {
            return refuse(e.message()).await;
        }
        let existing = st.store.by_slack_thread(&thread).await.ok().flatten();
        match existing {
            Some(inc) => match api::post_message(&st, &inc.id, &m.text, &actor).await {
                Ok(_) => {}
                Err(e @ (super::ApiError::OverCap(_) | super::ApiError::TooLong(_))) => {
                    refuse(e.message()).await
                }
                Err(e) => tracing::warn!("Slack mention in {}: {e:?}", inc.id),
            },
            None => {
                let slot = match st.investigation_slot(&actor, "a new incident") {
                    Ok(s) => s,
                    Err(e) => return refuse(e.to_string()).await,
                };
                match api::open_incident(&st, &m.text, None, "slack", &actor).await {
                    Ok(id) => {
                        slot.relabel(&format!("incident {id}"));
                        let _ = st.store.set_slack_thread(&id, &thread).await;
                        super::start_round_holding(&st, &id, slot);
                        if let Some(b) = st.slack.as_deref() {
                            b.say(
                                &st,
                                &id,
                                &format!(
                                    "Incident *{id}* opened; investigating. Progress follows here."
                                ),
                            )
                            .await;
                        }
                    }
                    Err(e) => refuse(e.message()).await,
                }
            }
        }
    });
    StatusCode::OK.into_response()
}

/// Slack interactivity (Approve / Deny buttons)
///
/// A `block_actions` press on an approval message's Approve or Deny button. Only Slack users
/// mapped in `[slack.approvers]` decide (as that oncall approver); anyone else gets a note in
/// the thread. Other interactions are acknowledged and ignored.
#[utoipa::path(
    post,
    path = "/slack/interactions",
    operation_id = "slackInteraction",
    tag = "slack",
    request_body(content = SlackInteraction, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Acknowledged (empty body); the decision is made in the background."),
        (status = 400, description = "The body is not what Slack sends to this endpoint.", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn interaction(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bridge = match verified(&st, &headers, &body, "interactions").await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let press = match slack::parse_interaction(&body) {
        Ok(Interaction::Button(p)) => p,
        Ok(Interaction::Ignored { .. }) => return StatusCode::OK.into_response(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(name) = slack::approver_name(&bridge.approvers, &press.user_id).map(str::to_string)
    else {
        let note = format!(
            "<@{}> is not mapped to an oncall approver ([slack.approvers]); nothing was decided.",
            press.user_id
        );
        let thread = press.thread_ts.clone().unwrap_or(press.message_ts.clone());
        tokio::spawn(async move {
            if let Some(b) = st.slack.as_deref() {
                b.post(&press.channel_id, Some(&thread), slack::text_message(&note))
                    .await;
            }
        });
        return StatusCode::OK.into_response();
    };
    if let Ok(mut map) = bridge.approval_messages.lock() {
        map.entry(press.request_id.clone())
            .or_insert((press.channel_id.clone(), press.message_ts.clone()));
    }
    tokio::spawn(async move {
        let human = Human::with_role(&name, Role::Approver);
        let reason = if press.approve {
            String::new()
        } else {
            format!("denied in Slack by {name}")
        };
        if let Err(e) = runner::decide(&st, &press.request_id, &human, press.approve, &reason).await
        {
            let why = match e {
                runner::DecideError::NotFound(m)
                | runner::DecideError::Forbidden(m)
                | runner::DecideError::Conflict(m)
                | runner::DecideError::Internal(m)
                | runner::DecideError::Unavailable(m) => m,
            };
            let thread = press.thread_ts.clone().unwrap_or(press.message_ts.clone());
            if let Some(b) = st.slack.as_deref() {
                b.post(
                    &press.channel_id,
                    Some(&thread),
                    slack::text_message(&format!("Not decided: {why}")),
                )
                .await;
            }
        }
    });
    StatusCode::OK.into_response()
}
