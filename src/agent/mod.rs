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

use crate::collectors::host::UseSnapshot;
use crate::config::Config;
use crate::llm::retry::{RetryPolicy, retry};
use crate::llm::tokens::{CountedBy, StepTokens, TokenCounter, TokenReport};
use crate::llm::{ChatModel, ChatRequest, LlmError, Message, ToolCallRequest, ToolDef};
use crate::registry::Registry;
use crate::tool::ToolError;
use board::{Board, Hypothesis, HypothesisStatus};
use board_tools::BoardOutcome;
use chrono::{DateTime, Utc};
use events::{Event, EventSink};
use next_steps::{NextStep, ProposedAction};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use triage::{ReportHints, Triage};

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
}

impl Run<'_> {
    fn notice(&mut self, message: String) {
        tracing::info!("{message}");
        self.events.emit(&Event::Notice {
            message: message.clone(),
        });
        self.notices.push(message);
    }

    fn hypothesis_event(&self, id: &str) {
        if let Some(h) = self.board.get(id) {
            self.events.emit(&Event::HypothesisChanged {
                id: h.id.clone(),
                category: h.category.to_string(),
                component: h.component.clone(),
                status: format!("{:?}", h.status).to_lowercase(),
                confidence: h.confidence,
                statement: h.statement.clone(),
            });
        }
    }

    fn tool_defs(&self) -> Vec<ToolDef> {
        let mut defs: Vec<ToolDef> = self
            .registry
            .specs()
            .into_iter()
            .filter(|s| !s.unavailable)
            .map(|s| ToolDef {
                name: s.name.to_string(),
                description: s.description.to_string(),
                parameters: s.parameters,
            })
            .collect();
        defs.extend(board_tools::defs());
        defs
    }

    /// Records a tool call (and tells the board, so it can be cited when it succeeded).
    fn record_call(
        &mut self,
        id: &str,
        tool: &str,
        args: Value,
        step: u32,
        duration_ms: u64,
        result: Result<Value, String>,
    ) {
        self.board.record_call(id, tool, result.is_ok());
        let (output, error) = match result {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        self.calls.push(ToolCallRecord {
            id: id.to_string(),
            tool: tool.to_string(),
            args,
            ok: error.is_none(),
            duration_ms,
            step,
            output,
            error,
        });
    }

    /// Runs the tool calls of one model turn; returns the model-facing answer for each, in order.
    async fn execute(
        &mut self,
        calls: &[ToolCallRequest],
        finish_reason: Option<&str>,
        step: u32,
    ) -> Vec<(String, String)> {
        enum Plan {
            Done(String),
            Registry(Value),
            Board(Value),
        }
        let cap = evidence::cap_for(self.config.llm.context_window);
        let known: Vec<String> = self.tool_defs().into_iter().map(|d| d.name).collect();
        let mut plans = vec![];
        for c in calls {
            let id = format!("c{}", self.calls.len() + plans.len() + 1);
            self.events.emit(&Event::ToolCalled {
                call: id.clone(),
                tool: c.name.clone(),
                args: c.arguments.clone(),
            });
            let plan = match serde_json::from_str::<Value>(if c.arguments.trim().is_empty() {
                "{}"
            } else {
                &c.arguments
            }) {
                Err(e) => {
                    let cut = if finish_reason == Some("length") {
                        " Your reply was cut off at the token limit: send a shorter call."
                    } else {
                        ""
                    };
                    Plan::Done(format!(
                        "arguments are not valid JSON ({e}).{cut} Send one JSON object that matches the tool's schema."
                    ))
                }
                Ok(args) if !known.contains(&c.name) => {
                    let _ = args;
                    Plan::Done(format!(
                        "unknown tool `{}`; available tools: {}",
                        c.name,
                        known.join(", ")
                    ))
                }
                Ok(args) => {
                    let key = format!("{} {}", c.name, args);
                    match self.seen.get(&key) {
                        Some(prev) => Plan::Done(format!(
                            "identical call already made as {prev}: not repeated. Reuse that output, or change the arguments."
                        )),
                        None => {
                            self.seen.insert(key, id.clone());
                            if c.name.starts_with("board.") {
                                Plan::Board(args)
                            } else {
                                Plan::Registry(args)
                            }
                        }
                    }
                }
            };
            plans.push((id, c, plan));
        }
        // Measuring tools run concurrently.
        let registry = self.registry;
        let futures = plans.iter().filter_map(|(_, c, p)| match p {
            Plan::Registry(args) => Some(async move {
                let started = Instant::now();
                let r = registry.call(&c.name, args.clone(), None).await;
                (r, started.elapsed().as_millis() as u64)
            }),
            _ => None,
        });
        let mut registry_results = futures::future::join_all(futures).await.into_iter();
        let mut answers = vec![];
        for (id, c, plan) in plans {
            let (status, body) = match plan {
                Plan::Done(err) => {
                    let args = serde_json::from_str(&c.arguments)
                        .unwrap_or(Value::String(c.arguments.clone()));
                    self.record_call(&id, &c.name, args, step, 0, Err(err.clone()));
                    ("error", err)
                }
                Plan::Registry(args) => {
                    let (result, ms) = registry_results.next().unwrap_or((
                        Err(ToolError::Failed {
                            tool: c.name.clone(),
                            message: "lost".into(),
                        }),
                        0,
                    ));
                    match result {
                        Ok(out) => {
                            // Secrets never reach the model: the output is redacted as a value
                            // (so it stays valid JSON) before it is compacted and capped.
                            let mut shown = out.clone();
                            crate::redact::redact_value(&mut shown);
                            let text = evidence::render(
                                &c.name,
                                &shown,
                                self.config.llm.evidence,
                                cap,
                                &self.counter,
                            );
                            self.record_call(&id, &c.name, args, step, ms, Ok(out));
                            ("ok", text)
                        }
                        Err(e) => {
                            let msg = match &e {
                                ToolError::ApprovalRequired { tool, .. } => {
                                    self.requested.push(ProposedAction {
                                        tool: tool.clone(),
                                        args: args.clone(),
                                        why: format!(
                                            "requested by {} at step {step}",
                                            self.reasoner_name
                                        ),
                                        needs_approval: true,
                                    });
                                    self.notice(format!("{tool} {args} was requested and NOT run: it needs a human approver"));
                                    format!(
                                        "not run: `{tool}` is a live action. Your request was filed for a human approver; it has not run and may never run. Continue the diagnosis."
                                    )
                                }
                                other => other.to_string(),
                            };
                            self.record_call(&id, &c.name, args, step, ms, Err(msg.clone()));
                            // A failed call may be tried again (a timeout can pass).
                            self.seen.retain(|_, v| v != &id);
                            ("error", msg)
                        }
                    }
                }
                Plan::Board(args) => {
                    let outcome = board_tools::handle(&mut self.board, &c.name, &args);
                    let touched = args
                        .get("hypothesis")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    match outcome {
                        Ok(BoardOutcome::Answer(v)) => {
                            let hid = v
                                .get("hypothesis")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .or(touched);
                            self.record_call(&id, &c.name, args, step, 0, Ok(v.clone()));
                            if let Some(h) = hid {
                                self.hypothesis_event(&h);
                            }
                            let mut shown = v.clone();
                            crate::redact::redact_value(&mut shown);
                            ("ok", shown.to_string())
                        }
                        Ok(BoardOutcome::Concluded {
                            summary,
                            abstain,
                            answer,
                        }) => {
                            self.concluded = Some((summary, abstain));
                            self.record_call(&id, &c.name, args, step, 0, Ok(answer.clone()));
                            ("ok", answer.to_string())
                        }
                        Err(msg) => {
                            self.record_call(&id, &c.name, args, step, 0, Err(msg.clone()));
                            ("error", msg)
                        }
                    }
                }
            };
            // Error texts are plain text: redacted as text. (Outputs were redacted as values.)
            let body = if status == "ok" {
                body
            } else {
                crate::redact::redact(&body)
            };
            let summary: String = body.chars().take(160).collect();
            let ok = status == "ok";
            let ms = self.calls.last().map(|r| r.duration_ms).unwrap_or(0);
            self.events.emit(&Event::ToolAnswered {
                call: id.clone(),
                tool: c.name.clone(),
                ok,
                ms,
                summary,
            });
            answers.push((c.id.clone(), evidence::fence(&id, &c.name, status, &body)));
        }
        answers
    }

    /// The model loop. Returns Err when the model endpoint failed for good.
    async fn run_loop(
        &mut self,
        model: &dyn ChatModel,
        report: &str,
        hints: &ReportHints,
    ) -> Result<(), LlmError> {
        let l = &self.config.llm;
        self.reasoner_name = model.name();
        // The offline reasoner needs its few steps (measure, drill down, propose, cite, conclude)
        // whatever limit is configured for models.
        let max_steps = if model.is_offline() {
            l.max_steps.max(6)
        } else {
            l.max_steps
        };
        let ctx = minijinja::context! {
            report => crate::redact::redact(report),
            categories => crate::taxonomy::Category::ALL.iter().map(|c| c.label()).collect::<Vec<_>>(),
            max_steps => max_steps,
            user_facing => hints.user_facing,
        };
        let mut messages = vec![
            Message::system(
                self.prompts
                    .render("system.md.j2", &ctx)
                    .map_err(|e| LlmError::Config(e.to_string()))?,
            ),
            Message::user(
                self.prompts
                    .render("user.md.j2", &ctx)
                    .map_err(|e| LlmError::Config(e.to_string()))?,
            ),
        ];
        let tools = self.tool_defs();
        let policy = RetryPolicy {
            max_attempts: l.max_attempts,
            deadline: Duration::from_secs(l.deadline_s),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        };
        let budget =
            (l.context_window as usize).saturating_sub(l.max_completion_tokens as usize + 256);
        // Step numbers continue across a fallback, so tokens and tool calls stay in order.
        let base = self.steps;
        for local in 1..=max_steps + 1 {
            let step = base + local;
            let final_turn = local > max_steps;
            if final_turn {
                messages.push(Message::user(
                    self.prompts
                        .render("final.md.j2", &ctx)
                        .map_err(|e| LlmError::Config(e.to_string()))?,
                ));
                self.notice(format!(
                    "step limit ({}) reached: tools withdrawn, the model must answer",
                    max_steps
                ));
            }
            let offered = if final_turn { vec![] } else { tools.clone() };
            let counter = &self.counter;
            let elided = evidence::compact_history(&mut messages, budget, |m| {
                counter.count_request(&ChatRequest {
                    messages: m.to_vec(),
                    tools: offered.clone(),
                    max_completion_tokens: 0,
                })
            });
            if elided > 0 {
                self.notice(format!(
                    "elided {elided} old tool output(s) to stay within the {}-token context",
                    l.context_window
                ));
            }
            let req = ChatRequest {
                messages: messages.clone(),
                tools: offered,
                max_completion_tokens: l.max_completion_tokens,
            };
            let estimate = self.counter.count_request(&req) as u64;
            let started = Instant::now();
            // When the client already retried 429/5xx, the loop does not multiply those retries.
            let client_retries = model.retries_itself();
            let transient = |e: &LlmError| {
                e.transient()
                    && !(client_retries
                        && matches!(e, LlmError::Server { .. } | LlmError::RateLimited(_)))
            };
            let r = retry(policy, transient, || model.complete(&req)).await;
            for f in &r.failures {
                self.notice(format!("model step {step} failed: {f}"));
            }
            let reply = r.result?;
            self.steps = step;
            let completion_text = format!(
                "{}{}",
                reply.content.clone().unwrap_or_default(),
                reply
                    .tool_calls
                    .iter()
                    .map(|c| format!("{}{}", c.name, c.arguments))
                    .collect::<String>()
            );
            let st = match reply.usage {
                Some(u) => StepTokens {
                    step,
                    prompt_tokens: u.prompt_tokens,
                    completion_tokens: u.completion_tokens,
                    counted_by: CountedBy::Server,
                },
                None => StepTokens {
                    step,
                    prompt_tokens: estimate,
                    completion_tokens: self.counter.count(&completion_text) as u64,
                    counted_by: CountedBy::Tiktoken,
                },
            };
            self.tokens.add(st, l);
            self.events.emit(&Event::ModelStep {
                step,
                prompt_tokens: st.prompt_tokens,
                completion_tokens: st.completion_tokens,
                tool_calls: reply.tool_calls.len(),
                ms: started.elapsed().as_millis() as u64,
            });
            if final_turn || reply.tool_calls.is_empty() {
                if final_turn && !reply.tool_calls.is_empty() {
                    self.notice(format!(
                        "the model asked for {} tool(s) after they were withdrawn; ignored",
                        reply.tool_calls.len()
                    ));
                }
                match reply.content.as_deref() {
                    // Without tools a model may still write its call markup as text: not an answer.
                    Some(text) if final_turn && text.contains("<tool_call>") => {
                        self.notice("the model wrote tool-call markup after the tools were withdrawn; it was not taken as its answer".into());
                        let before = text.split("<tool_call>").next().unwrap_or("").trim();
                        self.answer = (!before.is_empty()).then(|| before.to_string());
                    }
                    Some(_) => self.answer = reply.content.clone(),
                    None => {}
                }
                break;
            }
            messages.push(Message::assistant(
                reply.content.clone(),
                reply.tool_calls.clone(),
            ));
            let answers = self
                .execute(&reply.tool_calls, reply.finish_reason.as_deref(), step)
                .await;
            for (call_id, text) in answers {
                messages.push(Message::tool(&call_id, text));
            }
            if let Some((summary, _)) = &self.concluded {
                self.answer = Some(reply.content.clone().unwrap_or_else(|| summary.clone()));
                break;
            }
        }
        Ok(())
    }
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
    // The report is redacted once, here: the answer, the debug log, every event and every prompt
    // only ever hold the redacted text.
    let redacted = crate::redact::redact(report.trim());
    let report = redacted.as_str();
    if report.is_empty() {
        return Err(AgentError::EmptyReport);
    }
    let t0 = Utc::now();
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
            let why = format!(
                "the model endpoint failed ({e}); this answer comes from the offline reasoner"
            );
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
