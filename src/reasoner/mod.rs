//! The offline reasoner: a [`ChatModel`] made of rules. It needs no network and no key, and it
//! works through exactly the interface a model uses: it asks for the same tools, reads their
//! fenced answers from the conversation, proposes hypotheses on the board, cites the tool call
//! that decides each, and concludes. So the loop, the board's rules and the token accounting
//! are the same whichever reasoner runs.
//!
//! It is stateless: each turn it reads the conversation and takes the next step of the protocol
//! (measure, propose, cite, conclude). Rules live per area: [`host`], [`postgres`], [`traces`],
//! [`fleet`], [`changes`].
//!
//! It is a peer of the model transport in [`crate::llm`], behind the same [`ChatModel`] trait:
//! it never calls a collector, it reads tool outputs from the conversation as data (through the
//! tools' published output types).

pub mod changes;
pub mod fleet;
pub mod host;
pub mod postgres;
pub mod traces;

mod read;
mod subject;

use crate::agent::board_tools::{CONCLUDE, EVIDENCE, PROPOSE};
use crate::agent::evidence::{SeenCall, transcript};
use crate::agent::triage::{ReportHints, read_report};
use crate::config::Thresholds;
use crate::llm::{ChatModel, ChatReply, ChatRequest, LlmError, ToolCallRequest};
use crate::taxonomy::Category;
use async_trait::async_trait;
use read::{
    DB_TOOLS, calls_named, db_evidence, fleet_evidence, offered_databases, report_of, snapshot_of,
    trace_evidence,
};
use serde_json::{Value, json};
use subject::{Judged, Subject, change_judged, explain_by_database, judge, subjects};

/// Investigates `report` with `model`, this offline reasoner standing by: if the model endpoint
/// fails, the reasoner answers instead and the log says why. With `model` itself offline, no
/// fallback is needed.
pub async fn investigate(
    report: &str,
    registry: &crate::registry::Registry,
    config: &crate::config::Config,
    model: &dyn ChatModel,
    events: &dyn crate::agent::events::EventSink,
) -> Result<crate::agent::Investigation, crate::agent::AgentError> {
    let offline = OfflineModel::new(config.thresholds.clone());
    crate::agent::investigate(report, registry, config, model, &offline, events).await
}

/// A citation of one tool call for or against a hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Citation {
    pub call: String,
    pub supports: bool,
    pub strength: crate::agent::board::Strength,
    pub note: String,
}

pub fn cite(
    call: &str,
    supports: bool,
    strength: crate::agent::board::Strength,
    note: impl Into<String>,
) -> Citation {
    Citation {
        call: call.to_string(),
        supports,
        strength,
        note: note.into(),
    }
}

/// What a rule concluded about one hypothesis: how to state it, what it blames, and the calls
/// that decide it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub statement: String,
    pub component: String,
    pub culprit: Option<crate::agent::board::Culprit>,
    pub citations: Vec<Citation>,
}

impl Finding {
    /// A hypothesis that the answer of `call` rules out: stated as the hypothesis, blaming
    /// nothing, with that answer cited strongly against it.
    pub fn ruled_out(
        statement: impl Into<String>,
        component: impl Into<String>,
        call: &str,
        note: impl Into<String>,
    ) -> Finding {
        Finding {
            statement: statement.into(),
            component: component.into(),
            culprit: None,
            citations: vec![cite(
                call,
                false,
                crate::agent::board::Strength::Strong,
                note,
            )],
        }
    }
}

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

/// The incident-memory tool.
const MEMORY: &str = "memory.similar";
/// The fleet tools (offered when Prometheus is configured).
const FLEET_USE: &str = "fleet.use_by_instance";
const FLEET_RED: &str = "fleet.red_by_service";

/// The built-in reasoner.
pub struct OfflineModel {
    thresholds: Thresholds,
}

impl OfflineModel {
    pub fn new(thresholds: Thresholds) -> OfflineModel {
        OfflineModel { thresholds }
    }
}

/// The change log's tool.
const CHANGES: &str = "changes.recent";

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
        let report = report_of(req);
        let hints = read_report(&report);
        let th = &self.thresholds;
        let proposals = calls_named(&seen, PROPOSE);
        let summary = || conclusion(&seen, th.confidence);
        if req.tools.is_empty() {
            return Ok(ChatReply {
                content: Some(summary().0),
                ..Default::default()
            });
        }
        let databases = offered_databases(req);
        let traces_offered = req.tools.iter().any(|t| t.name == "traces.critical_path");
        let changes_offered = req.tools.iter().any(|t| t.name == CHANGES);
        let fleet_offered = req.tools.iter().any(|t| t.name == FLEET_USE);
        // 1. Measure: the USE sweep of this host (or of the fleet through Prometheus), and each
        // database's own views, in parallel.
        if calls_named(&seen, "host.use_snapshot").is_empty()
            && calls_named(&seen, FLEET_USE).is_empty()
        {
            let mut calls = if fleet_offered {
                vec![(FLEET_USE, json!({})), (FLEET_RED, json!({}))]
            } else {
                vec![("host.use_snapshot", json!({}))]
            };
            for db in &databases {
                calls.extend(DB_TOOLS.iter().map(|t| (*t, json!({"database": db}))));
            }
            if traces_offered {
                calls.extend(
                    ["traces.red", "traces.critical_path", "traces.errors"].map(|t| (t, json!({}))),
                );
            }
            if changes_offered {
                calls.push((CHANGES, json!({"since_minutes": 180})));
            }
            return Ok(reply(None, calls, n));
        }
        let snapshot = snapshot_of(&seen);
        let dbs: Vec<postgres::DbEvidence> =
            databases.iter().map(|d| db_evidence(&seen, d)).collect();
        // 2. Drill down once: the plan and the tables of a statement that dominates.
        if proposals.is_empty() && calls_named(&seen, "postgres.explain").is_empty() {
            let mut calls = vec![];
            for e in &dbs {
                if let Some(q) = e
                    .top_queries
                    .as_ref()
                    .and_then(|(_, a)| a.data.as_ref())
                    .and_then(|t| postgres::suspect(t, th))
                {
                    calls.push((
                        "postgres.explain",
                        json!({"database": e.database, "queryid": q.queryid}),
                    ));
                    calls.push(("postgres.table_stats", json!({"database": e.database, "tables": crate::collectors::outputs::tables_in(&q.query)})));
                }
            }
            if !calls.is_empty() {
                return Ok(reply(None, calls, n));
            }
        }
        let tr = trace_evidence(&seen, traces_offered);
        let fl = fleet_offered.then(|| fleet_evidence(&seen));
        let host_report = host::Report {
            text: &report,
            suspects: &hints.suspects,
        };
        let mut judged: Vec<(Subject, Judged)> =
            subjects(&hints, &report, &dbs, tr.as_ref(), fl.as_ref())
                .into_iter()
                .map(|s| {
                    let j = judge(
                        &s,
                        &snapshot,
                        &dbs,
                        tr.as_ref(),
                        fl.as_ref(),
                        th,
                        &host_report,
                    );
                    (s, j)
                })
                .collect();
        explain_by_database(&mut judged);
        if let Some(c) = change_judged(&seen, &judged, th) {
            judged.insert(0, c);
        }
        // 2b. Remember: past incidents like this one, searched with the report and what the
        // measurements found abnormal. A lead for the responder, never evidence on the board.
        if proposals.is_empty()
            && req.tools.iter().any(|t| t.name == MEMORY)
            && calls_named(&seen, MEMORY).is_empty()
        {
            let signals: Vec<String> = judged
                .iter()
                .filter(|(_, j)| j.citations.iter().any(|c| c.1))
                .take(4)
                .map(|(subject, j)| {
                    format!(
                        "{} {}: {}",
                        subject.category().label(),
                        j.component,
                        j.statement
                    )
                })
                .collect();
            let text = format!("{report}\n{}", signals.join("\n"));
            return Ok(reply(
                None,
                vec![(MEMORY, json!({"text": text, "limit": 3}))],
                n,
            ));
        }
        // 3. Hypothesize, cite and conclude in one reply: one hypothesis per subject (the board
        // numbers them H1, H2, ... in order), the calls that decide each, for or against, then
        // the conclusion, left to the board. One round trip instead of three.
        if proposals.is_empty() {
            let mut calls: Vec<(&str, Value)> = vec![];
            let mut citations: Vec<(&str, Value)> = vec![];
            let mut on_board: Vec<(Category, String)> = vec![];
            for (subject, j) in &judged {
                let key = (subject.category(), j.component.trim().to_string());
                let index = match on_board.iter().position(|k| *k == key) {
                    Some(i) => i,
                    None => {
                        on_board.push(key);
                        on_board.len() - 1
                    }
                };
                calls.push((PROPOSE, json!({"statement": j.statement, "category": subject.category(), "component": j.component, "culprit": j.culprit})));
                let id = format!("H{}", index + 1);
                for (call, supports, strength, note) in &j.citations {
                    citations.push((EVIDENCE, json!({"hypothesis": id, "call": call, "supports": supports, "strength": strength, "note": note})));
                }
            }
            calls.extend(citations);
            calls.push((CONCLUDE, json!({})));
            return Ok(reply(None, calls, n));
        }
        // 4. Cite: the calls that decide each hypothesis, for or against.
        if calls_named(&seen, EVIDENCE).is_empty() {
            let mut calls: Vec<(&str, Value)> = vec![];
            for p in &proposals {
                let (Some(args), Some(hyp)) = (
                    serde_json::from_str::<Value>(&p.arguments).ok(),
                    p.result
                        .as_ref()
                        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok()),
                ) else {
                    continue;
                };
                let Some(category) = args
                    .get("category")
                    .and_then(|c| serde_json::from_value::<Category>(c.clone()).ok())
                else {
                    continue;
                };
                let subject = Subject::of(
                    category,
                    args.get("component").and_then(Value::as_str).unwrap_or(""),
                );
                let (Some(id), Some((_, j))) = (
                    hyp.get("hypothesis").cloned(),
                    judged.iter().find(|(s, _)| *s == subject),
                ) else {
                    continue;
                };
                for (call, supports, strength, note) in &j.citations {
                    calls.push((EVIDENCE, json!({"hypothesis": id, "call": call, "supports": supports, "strength": strength, "note": note})));
                }
            }
            if !calls.is_empty() {
                return Ok(reply(None, calls, n));
            }
        }
        // 5. Conclude.
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
