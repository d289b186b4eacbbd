//! Slack wired to incidents: `/oncall <report>` and app mentions open or continue an incident in
//! a thread; the investigation posts its result there; each action request appears with
//! Approve / Deny buttons that only mapped approvers can use.
//!
//! Every Slack request is verified ([`slack::verify`], then replay refusal) before anything
//! else, acknowledged at once, and handled in the background, so the acknowledgement stays well
//! inside Slack's 3 seconds whatever the investigation does. Events Slack resends (same
//! `event_id`) are acknowledged and not acted on twice.

use super::slack::{self, Interaction, SlackClient};
use super::{AppState, api, limits, runner};
use crate::incidents::{Event, EventKind};
use crate::policy::{Human, Role};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::error::RecvError;

/// Slack's side of the server: the signing secret, the Web API client, who may approve.
pub struct Bridge {
    secret: String,
    client: Option<SlackClient>,
    approvers: BTreeMap<String, String>,
    replays: slack::Dedup,
    events: slack::Dedup,
    /// request id -> (channel, ts) of its approval message, to replace it once decided.
    approval_messages: Mutex<HashMap<String, (String, String)>>,
}

impl Bridge {
    /// Slack is on when the signing secret's variable is set. Without a bot token oncall still
    /// answers Slack's requests but cannot post into threads (it says so in the log).
    pub fn from_config(config: &crate::config::Config) -> Option<Bridge> {
        let c = &config.slack;
        let secret = std::env::var(&c.signing_secret_env)
            .ok()
            .filter(|s| !s.trim().is_empty())?;
        let client = match std::env::var(&c.bot_token_env) {
            Ok(t) if !t.trim().is_empty() => match SlackClient::new(t.trim()) {
                Ok(mut cl) => {
                    cl.base_url = c.api_base.trim_end_matches('/').to_string();
                    Some(cl)
                }
                Err(e) => {
                    tracing::warn!("Slack client: {e}");
                    None
                }
            },
            _ => {
                tracing::warn!(
                    "{} is not set: oncall verifies Slack's requests but cannot post into threads",
                    c.bot_token_env
                );
                None
            }
        };
        Some(Bridge {
            secret: secret.trim().to_string(),
            client,
            approvers: c.approvers.clone(),
            replays: slack::Dedup::default(),
            events: slack::Dedup::default(),
            approval_messages: Mutex::new(HashMap::new()),
        })
    }

    /// The incident's thread as (channel, ts).
    async fn thread(&self, st: &AppState, incident: &str) -> Option<(String, String)> {
        let inc = st.store.incident(incident).await.ok()??;
        let t = inc.slack_thread?;
        let (c, ts) = t.split_once('/')?;
        Some((c.to_string(), ts.to_string()))
    }

    async fn post(&self, channel: &str, thread: Option<&str>, m: slack::Message) -> Option<String> {
        let client = self.client.as_ref()?;
        match client
            .post_message(channel, thread, &m.text, Some(m.blocks))
            .await
        {
            Ok(ts) => Some(ts),
            Err(e) => {
                tracing::warn!("Slack post to {channel}: {e}");
                None
            }
        }
    }

    /// Posts `text` into the incident's thread, if it has one.
    pub async fn say(&self, st: &AppState, incident: &str, text: &str) {
        if let Some((c, ts)) = self.thread(st, incident).await {
            self.post(&c, Some(&ts), slack::text_message(text)).await;
        }
    }

    /// Posts what an incident event means for its thread: a round's result, an approval
    /// message with buttons, its replacement once decided, what an action did, a withdrawal,
    /// an action whose outcome is unknown, a post-mortem draft. Other events stay on the page.
    async fn on_event(&self, st: &AppState, incident: &str, e: &Event) {
        let d = &e.data;
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        match e.kind {
            EventKind::InvestigationFinished => {
                let hypotheses: Vec<crate::agent::board::Hypothesis> =
                    serde_json::from_value(d["hypotheses"].clone()).unwrap_or_default();
                let mut text = format!("*{}* {}\n{}", s("severity"), incident, s("conclusion"));
                for h in hypotheses.iter().take(3) {
                    text.push_str(&format!(
                        "\n• {} {} {:.2} `{}`: {}",
                        h.id,
                        crate::agent::outcome_word(h),
                        h.confidence,
                        h.category.label(),
                        h.statement
                    ));
                }
                self.say(st, incident, &text).await;
            }
            EventKind::ActionRequested => {
                self.approval_requested(st, incident, &s("request")).await
            }
            EventKind::ActionApproved | EventKind::ActionDenied => {
                let reason = Some(s("reason")).filter(|r| !r.is_empty());
                let approve = e.kind == EventKind::ActionApproved;
                self.decided(st, &s("request"), &s("by"), approve, reason)
                    .await;
            }
            EventKind::ActionVerified => {
                let done = if d["ok"] == Value::Bool(true) {
                    "ran"
                } else {
                    "failed"
                };
                let text = format!("{} {done}: {}", s("tool"), s("effect"));
                self.say(st, incident, &text).await;
            }
            EventKind::ActionWithdrawn => {
                let text = format!("{} withdrew the request for {}", s("by"), s("tool"));
                self.say(st, incident, &text).await;
            }
            EventKind::ActionOutcomeUnknown => {
                let text = format!("{} (request {}): {}", s("tool"), s("request"), s("verify"));
                self.say(st, incident, &text).await;
            }
            EventKind::PostmortemDrafted => {
                let mut text = s("brief");
                let findings = d["blameless_findings"].as_array().map_or(0, Vec::len);
                if findings > 0 {
                    text.push_str(&format!(
                        "\n_{findings} blameless-language finding(s) to fix before publishing._"
                    ));
                }
                self.say(st, incident, &text).await;
            }
            _ => {}
        }
    }

    /// An approval message with buttons, in the thread.
    async fn approval_requested(&self, st: &AppState, incident: &str, request: &str) {
        let Some((c, ts)) = self.thread(st, incident).await else {
            return;
        };
        let Some(e) = st.desk.entry(request) else {
            return;
        };
        let plan = e.plan.clone().unwrap_or(Value::Null);
        let why = format!(
            "requested by {}; only a mapped approver can decide",
            e.request.requester()
        );
        let m = slack::approval_message(&slack::ApprovalView {
            request_id: request,
            tool: &e.request.tool,
            args: &e.request.args,
            plan: &plan,
            why: &why,
        });
        if let Some(msg_ts) = self.post(&c, Some(&ts), m).await
            && let Ok(mut map) = self.approval_messages.lock()
        {
            map.insert(request.to_string(), (c, msg_ts));
        }
    }

    /// Replaces the approval message once the request is decided (from Slack or the web).
    async fn decided(
        &self,
        st: &AppState,
        request: &str,
        by: &str,
        approve: bool,
        reason: Option<String>,
    ) {
        let Some(client) = &self.client else { return };
        let at = self
            .approval_messages
            .lock()
            .ok()
            .and_then(|m| m.get(request).cloned());
        let (Some((channel, ts)), Some(e)) = (at, st.desk.entry(request)) else {
            return;
        };
        let plan = e.plan.clone().unwrap_or(Value::Null);
        let view = slack::ApprovalView {
            request_id: request,
            tool: &e.request.tool,
            args: &e.request.args,
            plan: &plan,
            why: "",
        };
        // The Slack user behind an oncall name, if mapped (then Slack shows a mention).
        let by = self
            .approvers
            .iter()
            .find(|(_, name)| name.as_str() == by)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| by.to_string());
        let outcome = if approve {
            slack::Outcome::Approved { by }
        } else {
            slack::Outcome::Denied { by, reason }
        };
        let m = slack::decided_message(&view, &outcome);
        if let Err(err) = client
            .update_message(&channel, &ts, &m.text, Some(m.blocks))
            .await
        {
            tracing::warn!("Slack update of the approval message: {err}");
        }
    }

    /// Verifies a request as Slack signs it, and refuses replays.
    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), slack::SlackError> {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let now = chrono::Utc::now().timestamp();
        let sig = h(slack::HEADER_SIGNATURE);
        slack::verify(&self.secret, &h(slack::HEADER_TIMESTAMP), &sig, body, now)?;
        self.replays.refuse_replay(&sig, now)
    }
}

/// Slack as a subscriber of the incident events this replica stores: each one that matters to
/// a thread is posted there, in order, in the background. Does nothing when Slack is off.
pub fn follow(st: &Arc<AppState>) {
    let Some(bridge) = st.slack.clone() else {
        return;
    };
    let mut rx = st.bus.subscribe();
    let st = Arc::downgrade(st);
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(p) => {
                    let (Some(e), Some(st)) = (p.event, st.upgrade()) else {
                        continue;
                    };
                    bridge.on_event(&st, &p.incident, &e).await;
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("Slack fell behind and did not post {n} incident event(s)");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// `/slack/commands`, `/slack/events`, `/slack/interactions`.
pub fn routes(_st: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/slack/commands", post(command))
        .route("/slack/events", post(events))
        .route("/slack/interactions", post(interaction))
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

/// `/oncall <report>`: opens an incident and a thread for it.
async fn command(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let bridge = match verified(&st, &headers, &body, "commands").await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let cmd = match slack::parse_command(&body) {
        Ok(c) => c,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if cmd.text.trim().is_empty() {
        return Json(json!({
            "response_type": "ephemeral",
            "text": "Usage: /oncall <what is wrong, in plain words>, e.g. /oncall checkout p99 > 2s since the deploy",
        }))
        .into_response();
    }
    let ephemeral =
        |text: String| Json(json!({"response_type": "ephemeral", "text": text})).into_response();
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
    Json(json!({
        "response_type": "in_channel",
        "text": format!("Incident {id} opened; oncall is investigating. Follow the thread."),
    }))
    .into_response()
}

/// Events API: URL verification, and app mentions (open an incident, or continue the
/// incident whose thread the mention is in).
async fn events(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
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

/// Approve / Deny buttons.
async fn interaction(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
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
