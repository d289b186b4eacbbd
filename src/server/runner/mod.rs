//! Investigations and actions in the background, each step written to the incident's log.
//!
//! A round of investigation runs the same agent as `oncall triage`; every agent event becomes an
//! incident event the moment it happens (so it streams live), the finished board becomes an
//! `investigation_finished` event, and each stabilizing action it proposes is filed at the
//! approval desk as a request by the `model`, on behalf of the human driving the investigation
//! (the agent can only ask; under a `two_person` rule that human cannot approve it). An approved
//! request runs in the background: `action_executing` (its write-ahead record is durable first),
//! `action_executed`, then `action_verified` with the measured effect.
//!
//! The rounds are here; filing requests is in `requests`, people's decisions in `decisions`,
//! running approved requests in `execute`, and what a restart finds in `restart`.

mod decisions;
mod execute;
mod requests;
mod restart;

pub use decisions::{DecideError, decide, withdraw};
pub use requests::{FileError, file};
pub use restart::{announce_unknown_outcomes, mark_interrupted};

use super::AppState;
use crate::agent::events::{Event as AgentEvent, EventSink};
use crate::incidents::{Event, EventKind, Status};
use requests::file_request;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Forwards agent events into a channel; a writer task appends them in order.
struct Forward(mpsc::UnboundedSender<AgentEvent>);

impl EventSink for Forward {
    fn emit(&self, event: &AgentEvent) {
        let _ = self.0.send(event.clone());
    }
}

/// The incident event for an agent event: its kind and data (the agent's own fields).
fn as_incident_event(e: &AgentEvent) -> Option<(EventKind, Value)> {
    let kind = match e {
        // Written by the round itself, with more to say.
        AgentEvent::Started { .. } | AgentEvent::Finished { .. } => return None,
        AgentEvent::ModelStep { .. } => EventKind::ModelStep,
        AgentEvent::ModelText { .. } => EventKind::ModelText,
        AgentEvent::ToolCalled { .. } => EventKind::ToolCalled,
        AgentEvent::ToolAnswered { .. } => EventKind::ToolAnswered,
        AgentEvent::HypothesisChanged { .. } => EventKind::HypothesisChanged,
        AgentEvent::Notice { .. } => EventKind::Notice,
    };
    let mut v = serde_json::to_value(e).ok()?;
    if let Some(o) = v.as_object_mut() {
        o.remove("event");
    }
    Some((kind, v))
}

/// What a new round investigates: the report, then every message people posted since.
pub fn round_text(events: &[Event]) -> String {
    let mut text = String::new();
    for e in events {
        let t = e.data["text"].as_str().unwrap_or_default();
        match e.kind {
            EventKind::Report => {
                text.push_str(t);
                text.push('\n');
            }
            EventKind::Message => {
                text.push_str(&format!("Follow-up from {}: {t}\n", e.actor));
            }
            _ => {}
        }
    }
    text
}

/// The human driving an investigation: whoever posted its report or, later, the last message.
/// Telemetry never posts events, so no text inside it can become the driver.
pub fn driver(events: &[Event]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| e.kind.is_said() && e.actor != "oncall")
        .map(|e| e.actor.clone())
}

/// Starts a round of investigation in the background (unless one is running for this incident).
/// Returns false when one was already running.
pub fn start_round(st: &Arc<AppState>, incident: &str) -> bool {
    {
        let Ok(mut running) = st.running.lock() else {
            return false;
        };
        if !running.insert(incident.to_string()) {
            return false;
        }
    }
    let (st, incident) = (st.clone(), incident.to_string());
    tokio::spawn(async move {
        // Leaves the running set however the round ends, a panic included.
        struct Running(Arc<AppState>, String);
        impl Drop for Running {
            fn drop(&mut self) {
                if let Ok(mut running) = self.0.running.lock() {
                    running.remove(&self.1);
                }
            }
        }
        let _running = Running(st.clone(), incident.clone());
        if let Err(e) = round(&st, &incident).await {
            tracing::error!("investigation of {incident}: {e}");
            st.metrics
                .count(&st.metrics.investigations, &[("outcome", "error")]);
            let _ = st
                .publish(
                    &incident,
                    EventKind::Notice,
                    "oncall",
                    json!({"message": format!("the investigation stopped: {e}")}),
                )
                .await;
            let _ = st.set_status(&incident, Status::Waiting, None).await;
        }
    });
    true
}

async fn round(st: &Arc<AppState>, incident: &str) -> Result<(), String> {
    // Investigating (owned by this replica) before waiting for a turn: a round still queued at a
    // crash is marked interrupted at the next start like a running one.
    st.set_status(incident, Status::Investigating, None)
        .await
        .map_err(|e| e.to_string())?;
    let _turn = match st.investigations.try_acquire() {
        Ok(p) => p,
        Err(_) => {
            st.publish(
                incident,
                EventKind::Notice,
                "oncall",
                json!({"message": "every investigator is busy; this one starts when one is free"}),
            )
            .await
            .map_err(|e| e.to_string())?;
            st.investigations
                .acquire()
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let started = std::time::Instant::now();
    let history = st
        .store
        .events(incident, 0, 100_000)
        .await
        .map_err(|e| e.to_string())?;
    let text = round_text(&history);
    let driver = driver(&history);
    let n = history
        .iter()
        .filter(|e| e.kind == EventKind::InvestigationStarted)
        .count()
        + 1;
    let model = match crate::app::model(&st.config) {
        Ok(m) => m,
        Err(e) => {
            st.publish(
                incident,
                EventKind::Notice,
                "oncall",
                json!({"message": format!("the model is not available ({e}); the offline reasoner investigates")}),
            )
            .await
            .map_err(|e| e.to_string())?;
            Box::new(crate::reasoner::OfflineModel::new(
                st.config.thresholds.clone(),
            ))
        }
    };
    st.publish(
        incident,
        EventKind::InvestigationStarted,
        "oncall",
        json!({"round": n, "reasoner": model.name()}),
    )
    .await
    .map_err(|e| e.to_string())?;

    let (tx, mut rx) = mpsc::unbounded_channel::<AgentEvent>();
    let writer = {
        let (st, incident) = (st.clone(), incident.to_string());
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                match &e {
                    AgentEvent::ToolAnswered { tool, ok, ms, .. } => {
                        let ok = if *ok { "ok" } else { "error" };
                        st.metrics
                            .count(&st.metrics.tool_calls, &[("tool", tool), ("result", ok)]);
                        st.metrics
                            .tool_seconds
                            .get_or_create(&super::metrics::labels(&[("tool", tool)]))
                            .observe(*ms as f64 / 1000.0);
                    }
                    AgentEvent::ModelStep {
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens,
                        ms,
                        ..
                    } => {
                        let m = &st.metrics;
                        for (kind, n) in [
                            ("prompt", prompt_tokens),
                            ("completion", completion_tokens),
                            ("cached", cached_tokens),
                        ] {
                            m.tokens
                                .get_or_create(&super::metrics::labels(&[("kind", kind)]))
                                .inc_by(*n);
                        }
                        m.llm_step_seconds
                            .get_or_create(&vec![])
                            .observe(*ms as f64 / 1000.0);
                    }
                    _ => {}
                }
                if let Some((kind, data)) = as_incident_event(&e)
                    && let Err(err) = st.publish(&incident, kind, "oncall", data).await
                {
                    tracing::error!("incident {incident}: event not stored: {err}");
                }
            }
        })
    };
    // oncall's own trace of the round: the incident and the round around the investigation.
    let span = tracing::info_span!("incident_round", incident = %incident, round = n);
    let result = tracing::Instrument::instrument(
        crate::reasoner::investigate(
            &text,
            &st.registry,
            &st.config,
            model.as_ref(),
            &Forward(tx),
        ),
        span,
    )
    .await;
    // Every agent event is in the log before the round's result.
    let _ = writer.await;
    st.metrics
        .investigation_seconds
        .get_or_create(&vec![])
        .observe(started.elapsed().as_secs_f64());
    let inv = match result {
        Ok(inv) => inv,
        Err(e) => {
            st.metrics
                .count(&st.metrics.investigations, &[("outcome", "failed")]);
            st.publish(
                incident,
                EventKind::Notice,
                "oncall",
                json!({"message": format!("the investigation failed: {e}")}),
            )
            .await
            .map_err(|e| e.to_string())?;
            st.set_status(incident, Status::Waiting, None)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
    };
    st.metrics.count(
        &st.metrics.investigations,
        &[(
            "outcome",
            if inv.abstained { "no_fault" } else { "finding" },
        )],
    );
    // The model's calls (failed steps included, which no model_step reports) and its cost.
    let tk = &inv.tokens;
    for (outcome, n) in [
        ("ok", tk.model_calls.saturating_sub(tk.failed_calls)),
        ("failed", tk.failed_calls),
    ] {
        if n > 0 {
            st.metrics
                .llm_calls
                .get_or_create(&super::metrics::labels(&[("outcome", outcome)]))
                .inc_by(u64::from(n));
        }
    }
    if let Some(usd) = tk.cost_usd {
        st.metrics.llm_cost.inc_by(usd);
    }
    st.publish(
        incident,
        EventKind::InvestigationFinished,
        "oncall",
        json!({
            "round": n,
            "reasoner": inv.reasoner,
            "conclusion": inv.conclusion,
            "severity": inv.triage.severity,
            "triage": inv.triage,
            "hypotheses": inv.hypotheses,
            "abstained": inv.abstained,
            "stabilize": inv.stabilize,
            "next_steps": inv.next_steps,
            "debug_log": inv.debug_log,
            "answer": inv.answer,
            "notices": inv.notices,
            "tokens": inv.tokens,
            "spend": inv.tokens.summary(),
        }),
    )
    .await
    .map_err(|e| e.to_string())?;
    let evidence: Vec<Value> = inv
        .tool_calls
        .iter()
        .filter_map(|c| c.output.clone())
        .collect();
    for a in &inv.stabilize {
        file_request(
            st,
            incident,
            &a.tool,
            &a.args,
            &a.why,
            driver.as_deref(),
            &evidence,
        )
        .await;
    }
    st.set_status(incident, Status::Waiting, Some(&inv.triage.severity))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
