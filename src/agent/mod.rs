//! The investigation: one report in, one evidence-backed answer out.
//!
//! Flow: read the report (triage hints) -> call the tools through the registry (each call gets an
//! id the board can cite) -> the reasoner proposes hypotheses and cites calls -> the board decides
//! status and ranking -> triage, stabilizing proposals and next steps are derived from the
//! findings -> [`render`] prints the hypothesis-driven debug log. A failed tool call is recorded
//! with its error and the investigation carries on with what it has.

pub mod board;
pub mod next_steps;
pub mod render;
pub mod triage;

use crate::collectors::host::UseSnapshot;
use crate::config::Config;
use crate::llm::offline;
use crate::tool::Registry;
use board::{Board, Hypothesis, HypothesisStatus};
use chrono::{DateTime, Utc};
use next_steps::{NextStep, ProposedAction};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Instant;
use triage::Triage;

/// Why an investigation could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "the report is empty: describe the symptom, e.g. oncall triage \"p99 latency > 2s on /api/checkout\""
    )]
    EmptyReport,
}

/// One tool call as the answer shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The id hypotheses cite (`c1`, `c2`, ...).
    pub id: String,
    pub tool: String,
    pub args: Value,
    pub ok: bool,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One line of the hypothesis-driven debug log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub text: String,
}

/// The whole answer to one report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Investigation {
    /// `YYYY-MM-DD-HHMM` of T0 plus the host.
    pub incident: String,
    pub report: String,
    pub t0: DateTime<Utc>,
    pub host: String,
    /// Which reasoner moved the board (`offline` today).
    pub reasoner: String,
    pub triage: Triage,
    /// Stabilizing actions proposed first for user-facing impact; none is executed.
    pub stabilize: Vec<ProposedAction>,
    pub debug_log: Vec<LogLine>,
    /// Ranked best first.
    pub hypotheses: Vec<Hypothesis>,
    /// True when no hypothesis reached the confidence threshold: "no fault found on this host".
    pub abstained: bool,
    pub conclusion: String,
    pub next_steps: Vec<NextStep>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub confidence_threshold: f64,
}

/// Runs a tool through the registry and records the call.
async fn call_tool(
    registry: &Registry,
    calls: &mut Vec<ToolCallRecord>,
    board: &mut Board,
    tool: &str,
    args: Value,
) -> Option<Value> {
    let id = format!("c{}", calls.len() + 1);
    let started = Instant::now();
    let result = registry.call(tool, args.clone(), None).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(call = %id, tool, duration_ms, ok = result.is_ok(), "tool call");
    board.record_call(&id, tool);
    let (ok, output, error) = match result {
        Ok(v) => (true, Some(v), None),
        Err(e) => (false, None, Some(e.to_string())),
    };
    calls.push(ToolCallRecord {
        id,
        tool: tool.to_string(),
        args,
        ok,
        duration_ms,
        output: output.clone(),
        error,
    });
    output
}

/// Investigates a report on this host with the offline reasoner.
pub async fn investigate(
    report: &str,
    registry: &Registry,
    config: &Config,
) -> Result<Investigation, AgentError> {
    let report = report.trim();
    if report.is_empty() {
        return Err(AgentError::EmptyReport);
    }
    let t0 = Utc::now();
    let th = &config.thresholds;
    let hints = triage::read_report(report);
    let mut board = Board::new(th.confirm, th.reject);
    let mut calls = vec![];
    let mut log = vec![LogLine {
        at: t0,
        text: format!("Report: {report}"),
    }];

    // Measure: the USE sweep of this host.
    let snap_value = call_tool(
        registry,
        &mut calls,
        &mut board,
        "host.use_snapshot",
        Value::Object(Default::default()),
    )
    .await;
    let snapshot: Option<UseSnapshot> = snap_value.and_then(|v| serde_json::from_value(v).ok());
    let call_id = calls.last().map(|c| c.id.clone()).unwrap_or_default();
    let call_error = calls.last().and_then(|c| c.error.clone());

    // Hypothesize and decide, one category at a time, in the order the report suggests.
    for category in offline::host_order(&hints) {
        let prior = if hints.suspects.contains(&category) {
            0.3
        } else {
            0.2
        };
        let title = offline::host::title(category);
        let id = board.propose(title, category, "host", prior);
        let verdict = match &snapshot {
            Some(s) => offline::host::judge(category, s, th),
            None => Err(call_error.clone().unwrap_or_else(|| "no snapshot".into())),
        };
        let line = match verdict {
            Ok(v) => {
                let _ = board.restate(&id, &v.statement, &v.component, v.culprit.clone());
                let _ = board.cite(&id, &call_id, v.supports, v.weight, &v.note);
                let h = board.in_order().iter().find(|h| h.id == id);
                let outcome = match h.map(|h| h.status) {
                    Some(HypothesisStatus::Confirmed) => "CONFIRMED",
                    Some(HypothesisStatus::Rejected) => "REJECTED",
                    _ => "INCONCLUSIVE",
                };
                let conf = h.map(|h| h.confidence).unwrap_or_default();
                format!(
                    "{id}: {title} -> host.use_snapshot [{call_id}] -> {outcome} ({}; confidence {conf:.2})",
                    v.note
                )
            }
            Err(why) => {
                format!("{id}: {title} -> host.use_snapshot -> UNTESTED (could not measure: {why})")
            }
        };
        log.push(LogLine {
            at: Utc::now(),
            text: line,
        });
    }

    let findings = board.findings(th.confidence);
    let abstained = findings.is_empty();
    let host = snapshot
        .as_ref()
        .map(|s| s.host.clone())
        .unwrap_or_else(|| "this host".into());
    let conclusion = match findings.first() {
        Some(top) => format!(
            "Most likely: {} ({}, confidence {:.2}): {}",
            top.category, top.component, top.confidence, top.statement
        ),
        None => match &snapshot {
            Some(s) => format!(
                "No fault found on this host: nothing above confidence {:.2} (looked at {} resources: {}).",
                th.confidence,
                s.resources.len(),
                s.resources
                    .iter()
                    .map(|r| r.resource.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!(
                "No conclusion: the host could not be measured ({}).",
                call_error.as_deref().unwrap_or("no snapshot")
            ),
        },
    };
    log.push(LogLine {
        at: Utc::now(),
        text: format!("Conclusion: {conclusion}"),
    });
    let triage = triage::assess(&hints, snapshot.as_ref(), &findings);
    let stabilize = next_steps::stabilize(&hints, &findings);
    let next = next_steps::next_steps(&hints, &findings);
    Ok(Investigation {
        incident: format!("{}-{}", t0.format("%Y-%m-%d-%H%M"), host),
        report: report.to_string(),
        t0,
        host,
        reasoner: "offline".into(),
        triage,
        stabilize,
        debug_log: log,
        hypotheses: board.ranked(),
        abstained,
        conclusion,
        next_steps: next,
        tool_calls: calls,
        confidence_threshold: th.confidence,
    })
}
