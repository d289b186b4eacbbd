//! Slack wired to incidents: the bridge (signing secret, Web API client, approvers) and the
//! subscriber that posts an incident's events into its thread: the investigation's result,
//! each action request with Approve / Deny buttons that only mapped approvers can use, what
//! was decided and what the action did. Slack's requests are `super::slack_routes`.

use super::AppState;
use super::slack::{self, SlackClient};
use crate::incidents::{Event, EventKind};
use axum::http::HeaderMap;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::error::RecvError;

/// Slack's side of the server: the signing secret, the Web API client, who may approve.
pub struct Bridge {
    secret: String,
    pub(super) client: Option<SlackClient>,
    pub(super) approvers: BTreeMap<String, String>,
    replays: slack::Dedup,
    pub(super) events: slack::Dedup,
    /// request id -> (channel, ts) of its approval message, to replace it once decided.
    pub(super) approval_messages: Mutex<HashMap<String, (String, String)>>,
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

    pub(super) async fn post(
        &self,
        channel: &str,
        thread: Option<&str>,
        m: slack::Message,
    ) -> Option<String> {
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
                // What the round cost: model calls, tokens, time and money.
                if !s("spend").is_empty() {
                    text.push_str(&format!("\n_{}_", s("spend")));
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
    pub(super) fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), slack::SlackError> {
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
    // Two steps, so a slow Slack never makes the bus drop an event Slack must post: a reader that
    // only sorts (and so keeps up with the bus) queues the events a thread shows, and a poster
    // works through that queue in order.
    let (tx, mut queue) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(p) => {
                    if let Some(e) = p.event.filter(|e| posted(&e.kind))
                        && tx.send((p.incident, e)).is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("Slack fell behind the bus and skipped {n} incident event(s)");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let st = Arc::downgrade(st);
    tokio::spawn(async move {
        while let Some((incident, e)) = queue.recv().await {
            let Some(st) = st.upgrade() else { return };
            bridge.on_event(&st, &incident, &e).await;
        }
    });
}

/// The kinds of event a Slack thread shows (see `Bridge::on_event`).
fn posted(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::InvestigationFinished
            | EventKind::ActionRequested
            | EventKind::ActionApproved
            | EventKind::ActionDenied
            | EventKind::ActionVerified
            | EventKind::ActionWithdrawn
            | EventKind::ActionOutcomeUnknown
            | EventKind::PostmortemDrafted
    )
}
