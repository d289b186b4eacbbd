//! The model loop: the prompts, the token budget (old outputs elided first), retries, and the
//! step limit after which the tools are withdrawn and the model must answer.

use super::Run;
use super::events::{Event, TextFlow};
use super::triage::ReportHints;
use super::{board_tools, evidence};
use crate::llm::retry::{RetryPolicy, retry};
use crate::llm::tokens::{CountedBy, StepTokens};
use crate::llm::{ChatModel, ChatRequest, LlmError, Message, ToolDef};
use std::time::{Duration, Instant};
use tracing::Instrument;

impl Run<'_> {
    pub(super) fn notice(&mut self, message: String) {
        tracing::info!("{message}");
        self.events.emit(&Event::Notice {
            message: message.clone(),
        });
        self.notices.push(message);
    }

    pub(super) fn tool_defs(&self) -> Vec<ToolDef> {
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

    /// The model loop. Returns Err when the model endpoint failed for good.
    pub(super) async fn run_loop(
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
        let step_policy = RetryPolicy {
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
            // A model's steps share one deadline for the whole investigation; each step gets
            // what is left of it, up to its own. The built-in reasoner is not on the clock.
            let policy = if model.is_offline() {
                step_policy
            } else {
                let left = self.model_until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(LlmError::OutOfTime(l.investigation_deadline_s));
                }
                RetryPolicy {
                    deadline: step_policy.deadline.min(left),
                    ..step_policy
                }
            };
            let estimate = self.counter.count_request(&req) as u64;
            let started = Instant::now();
            // When the client already retried 429/5xx, the loop does not multiply those retries.
            let client_retries = model.retries_itself();
            let transient = |e: &LlmError| {
                e.transient()
                    && !(client_retries
                        && matches!(e, LlmError::Server { .. } | LlmError::RateLimited { .. }))
            };
            // One span per model turn (its retries inside): the model, the step, the tokens.
            let span = tracing::info_span!(
                "model_call",
                model = %model.name(),
                step,
                ok = tracing::field::Empty,
                failures = tracing::field::Empty,
                prompt_tokens = tracing::field::Empty,
                completion_tokens = tracing::field::Empty,
                tool_calls = tracing::field::Empty,
                ms = tracing::field::Empty,
            );
            // Streamed text reaches the events as it is written.
            let flow = TextFlow::new(self.events, step);
            let sink = |piece: &str| flow.push(piece);
            let r = retry(policy, transient, || model.complete_streaming(&req, &sink))
                .instrument(span.clone())
                .await;
            flow.flush();
            let ms = started.elapsed().as_millis() as u64;
            span.record("ok", r.result.is_ok());
            span.record("failures", r.failures.len());
            span.record("ms", ms);
            // Every HTTP call is counted, the ones of a step that failed for good included.
            let failed = r.failures.len() as u32;
            let calls = if model.is_offline() {
                0
            } else {
                failed + u32::from(r.result.is_ok())
            };
            if calls > 0 {
                self.tokens.calls(calls, failed, ms);
            }
            for f in &r.failures {
                self.notice(format!("model step {step} failed: {f}"));
            }
            let reply = match r.result {
                Ok(reply) => reply,
                Err(_) if !model.is_offline() && Instant::now() >= self.model_until => {
                    return Err(LlmError::OutOfTime(l.investigation_deadline_s));
                }
                Err(e) => return Err(e),
            };
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
                    cached_prompt_tokens: u.cached_tokens,
                    counted_by: CountedBy::Server,
                    calls,
                    ms,
                },
                None => StepTokens {
                    step,
                    prompt_tokens: estimate,
                    completion_tokens: self.counter.count(&completion_text) as u64,
                    cached_prompt_tokens: 0,
                    counted_by: CountedBy::Tiktoken,
                    calls,
                    ms,
                },
            };
            self.tokens.add(st, l);
            span.record("prompt_tokens", st.prompt_tokens);
            span.record("completion_tokens", st.completion_tokens);
            span.record("tool_calls", reply.tool_calls.len());
            self.events.emit(&Event::ModelStep {
                step,
                prompt_tokens: st.prompt_tokens,
                completion_tokens: st.completion_tokens,
                cached_tokens: st.cached_prompt_tokens,
                calls,
                tool_calls: reply.tool_calls.len(),
                ms,
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
