//! Running an approved request, once: `action_executing` is in the incident's log before the
//! action runs, `action_executed` when it returns, then `action_verified` with its measured
//! effect.

use crate::incidents::EventKind;
use crate::server::{AppState, replicas};
use serde_json::{Value, json};
use std::sync::Arc;

/// Runs an approved request in the background.
pub(super) fn spawn_execute(st: &Arc<AppState>, incident: &str, request: &str, executor: &str) {
    let (st, incident) = (st.clone(), incident.to_string());
    let (request, executor) = (request.to_string(), executor.to_string());
    tokio::spawn(async move { execute(&st, &incident, &request, &executor).await });
}

/// Runs an approved request once and records what it did and what it changed.
async fn execute(st: &Arc<AppState>, incident: &str, request: &str, executor: &str) {
    if let Err(e) = replicas::sync(st).await {
        tracing::warn!("request {request}: the shared requests could not be read: {e}");
    }
    let Some(entry) = st.desk.entry(request) else {
        return;
    };
    // `action_executed` is written the moment the action returns; `action_verified` after the
    // effect was measured (the system is given time to settle first).
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<Value, String>>();
    let ran = {
        let (st, incident, request) = (st.clone(), incident.to_string(), request.to_string());
        let (tool, executor) = (entry.request.tool.clone(), executor.to_string());
        tokio::spawn(async move {
            let Ok(output) = rx.await else { return };
            st.metrics.count(
                &st.metrics.approvals,
                &[("event", if output.is_ok() { "executed" } else { "failed" })],
            );
            let data = match &output {
                Ok(out) => json!({"request": request, "tool": tool, "ok": true, "output": out}),
                Err(e) => json!({"request": request, "tool": tool, "ok": false, "error": e}),
            };
            let _ = st
                .publish(&incident, EventKind::ActionExecuted, &executor, data)
                .await;
        })
    };
    // The start is in the incident's log (committed) before the action runs.
    let starting: crate::desk::Starting = {
        let (st, incident, request) = (st.clone(), incident.to_string(), request.to_string());
        let (tool, executor) = (entry.request.tool.clone(), executor.to_string());
        Box::new(move || {
            Box::pin(async move {
                st.publish(
                    &incident,
                    EventKind::ActionExecuting,
                    &executor,
                    json!({"request": request, "tool": tool}),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            })
        })
    };
    let result = st
        .desk
        .execute_reporting(
            &st.registry,
            request,
            &entry.request.tool,
            &entry.request.args,
            executor,
            Some(starting),
            Some(Box::new(move |o: &Result<Value, String>| {
                let _ = tx.send(o.clone());
            })),
        )
        .await;
    let _ = ran.await;
    match result {
        Ok(x) => {
            let _ = st
                .publish(
                    incident,
                    EventKind::ActionVerified,
                    "oncall",
                    json!({"request": request, "tool": entry.request.tool,
                           "ok": x.output.is_ok(), "effect": x.effect}),
                )
                .await;
        }
        // Another replica claimed it first (approvals sent to several replicas at once): it
        // runs there, and that replica tells the incident.
        Err(crate::desk::DeskError::Refused(m)) if m.contains(crate::desk::CLAIMED_ELSEWHERE) => {
            tracing::info!("request {request}: {m}");
        }
        Err(e) => {
            st.metrics
                .count(&st.metrics.approvals, &[("event", "refused")]);
            let _ = st
                .publish(
                    incident,
                    EventKind::Notice,
                    "oncall",
                    json!({"message": match &e {
                        crate::desk::DeskError::AuditAfterRun(_) => format!("request {request}: {e}"),
                        _ => format!("request {request} was not run: {e}"),
                    }}),
                )
                .await;
        }
    }
}
