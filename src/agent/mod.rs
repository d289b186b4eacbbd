//! The investigation loop: one report in, one evidence-backed answer out.
//!
//! Flow: read the report (triage hints) -> offer the registry's tools and the board tools to the
//! model (or the offline reasoner, through the same interface) -> run the tools it asks for
//! (in parallel), each answer compacted to evidence, capped and fenced as data -> the board
//! decides status and ranking from cited evidence -> after `max_steps` the tools are withdrawn
//! and the model must answer -> triage, stabilizing proposals and next steps come from the
//! board's findings -> [`render`] prints the hypothesis-driven debug log.
//!
//! What keeps it safe and bounded: unknown tools, unparsable or invalid arguments and repeated
//! identical calls go back to the model as tool errors; live actions are refused by the registry
//! and filed as requests for a human; the prompt stays within the token budget (old outputs are
//! elided first); a model endpoint that stays unavailable hands the investigation to the offline
//! reasoner, and the answer says so.

pub mod board;
pub mod board_tools;
pub mod events;
pub mod evidence;
pub mod next_steps;
pub mod prompts;
pub mod render;
pub mod triage;

mod dispatch;
mod run;

use crate::collectors::outputs::UseSnapshot;
use crate::config::Config;
use crate::llm::tokens::{TokenCounter, TokenReport};
use crate::llm::{ChatModel, LlmError};
use crate::registry::Registry;
use board::{Board, Hypothesis, HypothesisStatus};
use chrono::{DateTime, Utc};
use events::{Event, EventSink};
use next_steps::{NextStep, ProposedAction};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use triage::Triage;

/// Why an investigation could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "the report is empty: describe the symptom, e.g. oncall triage \"p99 latency > 2s on /api/checkout\""
    )]
    EmptyReport,
    #[error("{0}")]
    Model(#[from] LlmError),
    #[error("{0}")]
    Prompt(#[from] prompts::PromptError),
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
    /// The model step that asked for it.
    pub step: u32,
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
    /// Which reasoner produced the board (`offline`, `openai:<model>`, `replay:<file>`).
    pub reasoner: String,
    pub triage: Triage,
    /// Stabilizing actions proposed first for user-facing impact; none is executed.
    pub stabilize: Vec<ProposedAction>,
    pub debug_log: Vec<LogLine>,
    /// Ranked best first, by the board.
    pub hypotheses: Vec<Hypothesis>,
    /// True when no hypothesis reached the confidence threshold: "no fault found".
    pub abstained: bool,
    pub conclusion: String,
    /// The reasoner's own words (its conclude summary or final answer), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    pub next_steps: Vec<NextStep>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub confidence_threshold: f64,
    pub tokens: TokenReport,
    /// Model steps taken.
    pub steps: u32,
    /// Retries, refusals, elisions: what the responder should know about how the answer was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// Set when the model endpoint failed and the offline reasoner finished the investigation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// Mutable state of one investigation.
struct Run<'a> {
    config: &'a Config,
    registry: &'a Registry,
    events: &'a dyn EventSink,
    counter: TokenCounter,
    prompts: prompts::Prompts,
    board: Board,
    calls: Vec<ToolCallRecord>,
    /// tool + canonical args -> call id, to refuse identical calls.
    seen: HashMap<String, String>,
    tokens: TokenReport,
    notices: Vec<String>,
    requested: Vec<ProposedAction>,
    concluded: Option<(String, bool)>,
    answer: Option<String>,
    steps: u32,
    reasoner_name: String,
    /// When the model's time for this investigation ends (`llm.investigation_deadline_s`).
    model_until: std::time::Instant,
}

/// Investigates a report with `model`; if a model endpoint fails, `fallback` (the offline
/// reasoner, which [`crate::reasoner::investigate`] passes as `standby`) answers instead, and the log says why.
pub async fn investigate(
    report: &str,
    registry: &Registry,
    config: &Config,
    model: &dyn ChatModel,
    standby: &dyn ChatModel,
    events: &dyn EventSink,
) -> Result<Investigation, AgentError> {
    use tracing::Instrument;
    use tracing::field::Empty;
    // One span per investigation: its model and tool calls are its children. Names and numbers
    // only: the report stays out of it.
    let span = tracing::info_span!(
        "investigation",
        reasoner = %model.name(),
        steps = Empty,
        tools = Empty,
        prompt_tokens = Empty,
        completion_tokens = Empty,
        abstained = Empty,
    );
    let out = investigate_in_span(report, registry, config, model, standby, events)
        .instrument(span.clone())
        .await;
    if let Ok(inv) = &out {
        span.record("steps", inv.steps);
        span.record("tools", inv.tool_calls.len());
        span.record("prompt_tokens", inv.tokens.prompt_tokens);
        span.record("completion_tokens", inv.tokens.completion_tokens);
        span.record("abstained", inv.abstained);
    }
    out
}

async fn investigate_in_span(
    report: &str,
    registry: &Registry,
    config: &Config,
    model: &dyn ChatModel,
    standby: &dyn ChatModel,
    events: &dyn EventSink,
) -> Result<Investigation, AgentError> {
    // The report is redacted once, here: the answer, the debug log, every event and every prompt
    // only ever hold the redacted text.
    let redacted = crate::redact::redact(report.trim());
    let report = redacted.as_str();
    if report.is_empty() {
        return Err(AgentError::EmptyReport);
    }
    let t0 = Utc::now();
    let clock = std::time::Instant::now();
    let th = &config.thresholds;
    let hints = triage::read_report(report);
    let mut run = Run {
        config,
        registry,
        events,
        counter: TokenCounter::for_settings(&config.llm)?,
        prompts: prompts::Prompts::load(&config.llm.prompts_dir),
        board: Board::new(th.confirm, th.reject),
        calls: vec![],
        seen: HashMap::new(),
        tokens: TokenReport::default(),
        notices: vec![],
        requested: vec![],
        concluded: None,
        answer: None,
        steps: 0,
        reasoner_name: String::new(),
        model_until: std::time::Instant::now()
            + std::time::Duration::from_secs(config.llm.investigation_deadline_s),
    };
    run.tokens.encoding = run.counter.encoding.to_string();
    let mut reasoner = model.name();
    events.emit(&Event::Started {
        incident: format!("{}", t0.format("%Y-%m-%d-%H%M")),
        reasoner: reasoner.clone(),
    });
    let mut fallback = None;
    if let Err(e) = run.run_loop(model, report, &hints).await {
        if model.is_offline() {
            run.notice(format!("the offline reasoner stopped: {e}"));
        } else {
            let why = match e {
                LlmError::OutOfTime(_) => format!(
                    "{e} after {} model step(s); this answer comes from the offline reasoner",
                    run.steps
                ),
                e => format!(
                    "the model endpoint failed ({e}); this answer comes from the offline reasoner"
                ),
            };
            run.notice(why.clone());
            fallback = Some(why);
            run.board = Board::new(th.confirm, th.reject);
            run.seen.clear();
            run.concluded = None;
            run.answer = None;
            reasoner = format!("{} (fell back from {reasoner})", standby.name());
            if let Err(e) = run.run_loop(standby, report, &hints).await {
                run.notice(format!("the offline reasoner stopped too: {e}"));
            }
        }
    }

    let snapshot: Option<UseSnapshot> = run
        .calls
        .iter()
        .rev()
        .filter(|c| c.tool == "host.use_snapshot" && c.ok)
        .find_map(|c| {
            c.output
                .clone()
                .and_then(|v| serde_json::from_value(v).ok())
        });
    let findings = run.board.findings(th.confidence);
    let abstained = findings.is_empty();
    let host = snapshot
        .as_ref()
        .map(|s| s.host.clone())
        .unwrap_or_else(|| "this host".into());
    let conclusion = match findings.first() {
        Some(top) => format!("Most likely: {} ({}, confidence {:.2}): {}", top.category, top.component, top.confidence, top.statement),
        None => match &snapshot {
            Some(s) => format!(
                "No fault found on this host: nothing above confidence {:.2} (looked at {} resources: {}).",
                th.confidence,
                s.resources.len(),
                s.resources.iter().map(|r| r.resource.as_str()).collect::<Vec<_>>().join(", ")
            ),
            None => "No fault found: no hypothesis reached the confidence threshold, and the host was not measured.".into(),
        },
    };
    let debug_log = render::debug_log(
        t0,
        report,
        &run.board,
        &run.calls,
        &run.requested,
        &conclusion,
    );
    let triage = triage::assess(&hints, snapshot.as_ref(), &findings);
    let mut stabilize = next_steps::stabilize(&hints, &findings);
    for r in &run.requested {
        if !stabilize
            .iter()
            .any(|s| s.tool == r.tool && s.args == r.args)
        {
            stabilize.push(r.clone());
        }
    }
    // Say which view of the system was measured: the fleet (Prometheus) or this host.
    if let Some(c) = run
        .calls
        .iter()
        .find(|c| c.tool.starts_with("fleet.") && c.ok)
    {
        let source = c
            .output
            .as_ref()
            .and_then(|o| o["source"].as_str())
            .unwrap_or("Prometheus")
            .to_string();
        run.notices.push(format!(
            "Measured the fleet through {source} (fleet tools), not only this host."
        ));
    } else if run.calls.iter().any(|c| c.tool == "host.use_snapshot") {
        run.notices.push(format!(
            "Measured this host ({host}) with the host tools; set [prometheus] url to measure the fleet."
        ));
    }
    let mut next = next_steps::next_steps(&hints, &findings);
    next.extend(next_steps::from_memory(&run.calls));
    run.tokens.wall_ms = clock.elapsed().as_millis() as u64;
    events.emit(&Event::Finished {
        conclusion: conclusion.clone(),
    });
    Ok(Investigation {
        incident: format!("{}-{}", t0.format("%Y-%m-%d-%H%M"), host),
        report: report.to_string(),
        t0,
        host,
        reasoner,
        triage,
        stabilize,
        debug_log,
        hypotheses: run.board.ranked(),
        abstained,
        conclusion,
        answer: run.answer,
        next_steps: next,
        tool_calls: run.calls,
        confidence_threshold: th.confidence,
        tokens: run.tokens,
        steps: run.steps,
        notices: run.notices,
        fallback,
    })
}

/// The status word of the debug log.
pub fn outcome_word(h: &Hypothesis) -> &'static str {
    match h.status {
        HypothesisStatus::Confirmed => "CONFIRMED",
        HypothesisStatus::Rejected => "REJECTED",
        HypothesisStatus::Proposed if h.evidence.is_empty() => "UNTESTED",
        HypothesisStatus::Proposed => "INCONCLUSIVE",
    }
}
