//! The offline reasoner: a [`ChatModel`] made of rules. It needs no network and no key, and it
//! works through exactly the interface a model uses: it asks for the same tools, reads their
//! fenced answers from the conversation, proposes hypotheses on the board, cites the tool call
//! that decides each, and concludes. So the loop, the board's rules and the token accounting
//! are the same whichever reasoner runs.
//!
//! It is stateless: each turn it reads the conversation and takes the next step of the protocol
//! (measure, propose, cite, conclude). Rules live per area ([`host`] today).

pub mod host;

use super::{ChatModel, ChatReply, ChatRequest, LlmError, Role, ToolCallRequest};
use crate::agent::board_tools::{CONCLUDE, EVIDENCE, PROPOSE};
use crate::agent::evidence::{SeenCall, transcript};
use crate::agent::triage::{ReportHints, read_report};
use crate::collectors::host::UseSnapshot;
use crate::config::Thresholds;
use crate::taxonomy::Category;
use async_trait::async_trait;
use serde_json::{Value, json};

/// The host categories in the order the USE sweep checks them, with the report's suspects first.
pub fn host_order(hints: &ReportHints) -> Vec<Category> {
    let mut order: Vec<Category> = hints
        .suspects
        .iter()
        .copied()
        .filter(|c| host::COVERS.contains(c))
        .collect();
    for c in host::COVERS {
        if !order.contains(&c) {
            order.push(c);
        }
    }
    order
}

/// The built-in reasoner.
pub struct OfflineModel {
    thresholds: Thresholds,
}

impl OfflineModel {
    pub fn new(thresholds: Thresholds) -> OfflineModel {
        OfflineModel { thresholds }
    }
}

fn report_of(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .filter(|m| m.role == Role::User)
        .find_map(|m| {
            let c = m.content.as_deref()?;
            let start = c.find("<report>")? + "<report>".len();
            let end = c[start..].find("</report>")? + start;
            Some(c[start..end].trim().to_string())
        })
        .unwrap_or_default()
}

fn calls_named<'a>(seen: &'a [SeenCall], name: &str) -> Vec<&'a SeenCall> {
    seen.iter().filter(|c| c.name == name).collect()
}

fn reply(content: Option<String>, calls: Vec<(&str, Value)>, seen: usize) -> ChatReply {
    ChatReply {
        content,
        tool_calls: calls
            .into_iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCallRequest {
                id: format!("offline-{}", seen + i + 1),
                name: name.to_string(),
                arguments: args.to_string(),
            })
            .collect(),
        usage: None,
        finish_reason: Some("tool_calls".into()),
    }
}

/// The snapshot (and the id of the call that took it), or why there is none.
fn snapshot_of(seen: &[SeenCall]) -> Result<(String, UseSnapshot), String> {
    let call = seen
        .iter()
        .rev()
        .find(|c| c.name == "host.use_snapshot")
        .ok_or("host.use_snapshot was not called")?;
    let f = call
        .result
        .as_ref()
        .ok_or("host.use_snapshot has not answered")?;
    if f.status != "ok" {
        return Err(format!("host.use_snapshot failed: {}", f.body));
    }
    let snap = crate::agent::evidence::read_snapshot(&f.body)
        .map_err(|e| format!("the snapshot could not be read: {e}"))?;
    Ok((f.call.clone(), snap))
}

#[async_trait]
impl ChatModel for OfflineModel {
    fn name(&self) -> String {
        "offline".into()
    }

    fn is_offline(&self) -> bool {
        true
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        let seen = transcript(&req.messages);
        let n = seen.len();
        let hints = read_report(&report_of(req));
        let th = &self.thresholds;
        let proposals = calls_named(&seen, PROPOSE);
        let summary = || conclusion(&seen, th.confidence);
        if req.tools.is_empty() {
            return Ok(ChatReply {
                content: Some(summary().0),
                ..Default::default()
            });
        }
        // 1. Measure: the USE sweep of this host.
        if calls_named(&seen, "host.use_snapshot").is_empty() {
            return Ok(reply(None, vec![("host.use_snapshot", json!({}))], n));
        }
        let snapshot = snapshot_of(&seen);
        // 2. Hypothesize: one hypothesis per host category, in the order the report suggests.
        if proposals.is_empty() {
            let calls = host_order(&hints)
                .into_iter()
                .map(|category| {
                    let title = host::title(category);
                    let v = match &snapshot {
                        Ok((_, s)) => host::judge(category, s, th),
                        Err(why) => Err(why.clone()),
                    };
                    let args = match v {
                        // A rejected hypothesis is still stated as the hypothesis, not its negation.
                        Ok(v) => json!({
                            "statement": if v.supports { v.statement } else { title.to_string() },
                            "category": category,
                            "component": v.component,
                            "culprit": v.culprit.map(|c| match c.pid { Some(p) => format!("{} (pid {p})", c.name), None => c.name }),
                        }),
                        Err(why) => json!({"statement": format!("{title} (untested: {why})"), "category": category, "component": "host"}),
                    };
                    (PROPOSE, args)
                })
                .collect();
            return Ok(reply(None, calls, n));
        }
        // 3. Cite: the snapshot call for or against each hypothesis.
        if calls_named(&seen, EVIDENCE).is_empty()
            && let Ok((call_id, s)) = &snapshot
        {
            let calls: Vec<(&str, Value)> = proposals
                .iter()
                .filter_map(|p| {
                    let args: Value = serde_json::from_str(&p.arguments).ok()?;
                    let category: Category = serde_json::from_value(args.get("category")?.clone()).ok()?;
                    let hyp: Value = serde_json::from_str(&p.result.as_ref()?.body).ok()?;
                    let v = host::judge(category, s, th).ok()?;
                    Some((
                        EVIDENCE,
                        json!({"hypothesis": hyp.get("hypothesis")?, "call": call_id, "supports": v.supports, "strength": v.strength, "note": v.note}),
                    ))
                })
                .collect();
            if !calls.is_empty() {
                return Ok(reply(None, calls, n));
            }
        }
        // 4. Conclude.
        if calls_named(&seen, CONCLUDE).is_empty() {
            let (text, abstain) = summary();
            return Ok(reply(
                Some(text.clone()),
                vec![(CONCLUDE, json!({"summary": text, "abstain": abstain}))],
                n,
            ));
        }
        Ok(ChatReply {
            content: Some(summary().0),
            ..Default::default()
        })
    }
}

/// A summary from the board's answers in the conversation, and whether to abstain.
fn conclusion(seen: &[SeenCall], threshold: f64) -> (String, bool) {
    let statements: Vec<(String, String)> = calls_named(seen, PROPOSE)
        .iter()
        .filter_map(|p| {
            let args: Value = serde_json::from_str(&p.arguments).ok()?;
            let hyp: Value = serde_json::from_str(&p.result.as_ref()?.body).ok()?;
            Some((
                hyp.get("hypothesis")?.as_str()?.to_string(),
                args.get("statement")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut best: Option<(f64, String, String)> = None;
    for e in calls_named(seen, EVIDENCE) {
        let Some(r) = e
            .result
            .as_ref()
            .and_then(|f| serde_json::from_str::<Value>(&f.body).ok())
        else {
            continue;
        };
        let (Some(id), Some(conf), Some(status)) = (
            r["hypothesis"].as_str(),
            r["confidence"].as_f64(),
            r["status"].as_str(),
        ) else {
            continue;
        };
        if conf >= threshold && best.as_ref().is_none_or(|b| conf > b.0) {
            best = Some((conf, id.to_string(), status.to_string()));
        }
    }
    match best {
        Some((conf, id, status)) => {
            let st = statements.iter().find(|(h, _)| *h == id).map(|(_, s)| s.as_str()).unwrap_or("");
            (format!("{id} is {status} at confidence {conf:.2}: {st}."), false)
        }
        None => ("No fault found on this host: every hypothesis was rejected or stayed below the confidence threshold.".into(), true),
    }
}
