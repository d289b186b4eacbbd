//! Tool dispatch: the tool calls of one model turn checked (known tool, valid JSON, not a
//! repeat), run (measuring tools in parallel, board tools on the board), recorded, and answered
//! as fenced evidence.

use super::board_tools::{self, BoardOutcome};
use super::events::Event;
use super::next_steps::ProposedAction;
use super::{Run, ToolCallRecord, evidence};
use crate::llm::ToolCallRequest;
use crate::tool::ToolError;
use serde_json::Value;
use std::time::Instant;

impl Run<'_> {
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
    pub(super) async fn execute(
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
                    let outcome = board_tools::handle(
                        &mut self.board,
                        &c.name,
                        &args,
                        self.config.thresholds.confidence,
                    );
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
}
