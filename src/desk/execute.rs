//! Running an approved request at most once: the claim, the write-ahead `executing` record,
//! the action, and its measured effect.

use super::{CLAIMED_ELSEWHERE, Claim, Desk, DeskError, Execution, Ran, Starting, State, lock};
use crate::policy::canonical_hash;
use crate::registry::Registry;
use crate::tool::{EffectCheck, ToolError};
use chrono::Utc;
use serde_json::{Value, json};

impl Desk {
    /// Frees the incident's slot and wakes executions waiting for it.
    fn release(&self, incident: &str) {
        if let Ok(mut flight) = self.in_flight.lock() {
            flight.remove(incident);
        }
        self.turn.notify_waiters();
    }

    /// Runs an approved request: `tool` and `args` are what the caller is about to run, and must
    /// be exactly what was approved.
    pub async fn execute(
        &self,
        reg: &Registry,
        request: &str,
        tool: &str,
        args: &Value,
        executor: &str,
    ) -> Result<Execution, DeskError> {
        self.execute_reporting(reg, request, tool, args, executor, None, None)
            .await
    }

    /// [`Desk::execute`], calling `starting` once the `executing` record is durable (an error
    /// there runs nothing) and telling `ran` what the action returned the moment it returned,
    /// before the effect is measured (which waits for the system to settle).
    #[allow(clippy::too_many_arguments)]
    pub async fn execute_reporting(
        &self,
        reg: &Registry,
        request: &str,
        tool: &str,
        args: &Value,
        executor: &str,
        starting: Option<Starting>,
        ran: Option<Ran>,
    ) -> Result<Execution, DeskError> {
        let (incident, evidence_hash, approval) = {
            let entries = lock(&self.entries)?;
            let e = entries
                .iter()
                .find(|e| e.request.id == request)
                .ok_or_else(|| DeskError::NoSuchRequest(request.into()))?;
            if lock(&self.executed)?.contains(request) {
                return Err(self.refuse(
                    request,
                    format!("request {request} already ran; an approval runs at most once"),
                ));
            }
            let approval = match (&e.state, &e.approval) {
                (State::Approved { .. }, Some(a)) => a.clone(),
                (s, _) => {
                    return Err(self.refuse(
                        request,
                        format!("request {request} is not approved ({s:?}); nothing was run"),
                    ));
                }
            };
            if tool != e.request.tool {
                return Err(self.refuse(
                    request,
                    format!(
                        "request {request} approved `{}`, not `{tool}`; nothing was run",
                        e.request.tool
                    ),
                ));
            }
            if canonical_hash(args) != canonical_hash(&e.request.args) {
                return Err(self.refuse(
                    request,
                    format!(
                        "the arguments differ from the approved ones ({} approved, {args} presented); nothing was run",
                        e.request.args
                    ),
                ));
            }
            if approval.evidence_hash() != e.request.evidence_hash {
                return Err(self.refuse(
                    request,
                    format!(
                        "request {request}'s approval was made on other evidence; nothing was run"
                    ),
                ));
            }
            if let Err(why) = approval.covers(tool, args, Utc::now()) {
                return Err(self.refuse(request, format!("{why}; nothing was run")));
            }
            (
                e.incident.clone(),
                e.request.evidence_hash.clone(),
                approval,
            )
        };
        let deadline = tokio::time::Instant::now() + self.wait;
        let busy = |other: &str| {
            format!(
                "request {other} is still in flight in incident {incident}; one live action at a time: wait until its effect is recorded"
            )
        };
        loop {
            let woken = self.turn.notified();
            // None: taken here; Some: the request in flight in this incident here.
            let taken: Result<Option<String>, String> = {
                let mut flight = lock(&self.in_flight)?;
                match flight.get(&incident) {
                    None => {
                        let mut done = lock(&self.executed)?;
                        if done.contains(request) {
                            Err(format!(
                                "request {request} already ran; an approval runs at most once"
                            ))
                        } else {
                            flight.insert(incident.clone(), request.to_string());
                            done.insert(request.to_string());
                            Ok(None)
                        }
                    }
                    Some(other) => Ok(Some(other.clone())),
                }
            };
            match taken {
                Err(why) => return Err(self.refuse(request, why)),
                Ok(Some(other)) if tokio::time::Instant::now() >= deadline => {
                    return Err(self.refuse(request, busy(&other)));
                }
                Ok(Some(_)) => {
                    // The next one waits until the last one's effect is recorded.
                    let _ = tokio::time::timeout_at(deadline, woken).await;
                    continue;
                }
                Ok(None) => {}
            }
            // Taken here; with replicas, the shared store decides whether it runs here at all.
            let Some(shared) = &self.shared else {
                break;
            };
            let undo = |ran_elsewhere: bool| {
                if !ran_elsewhere && let Ok(mut done) = self.executed.lock() {
                    done.remove(request);
                }
                self.release(&incident);
            };
            match shared.claim(request, executor).await {
                Ok(Claim::Claimed) => break,
                Ok(Claim::Busy(other)) => {
                    undo(false);
                    if tokio::time::Instant::now() >= deadline {
                        return Err(self.refuse(request, busy(&other)));
                    }
                    // Another replica's action is in flight: look again shortly.
                    let pause = std::time::Duration::from_millis(250)
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                    tokio::time::sleep(pause).await;
                }
                Ok(Claim::Gone(phase)) => {
                    let ran =
                        matches!(phase.as_str(), "executing" | "executed" | "outcome_unknown");
                    undo(ran);
                    return Err(self.refuse(
                        request,
                        format!(
                            "request {request} is {phase} {CLAIMED_ELSEWHERE}: an approval runs at most once, on one replica; nothing was run here"
                        ),
                    ));
                }
                Err(e) => {
                    undo(false);
                    return Err(self.refuse(
                        request,
                        format!(
                            "the shared store could not claim request {request} ({e}); nothing was run"
                        ),
                    ));
                }
            }
        }
        let approved = State::Approved {
            by: approval.approved_by().to_string(),
        };
        // The approval may have expired while this one waited.
        if let Err(why) = approval.covers(tool, args, Utc::now()) {
            self.unclaim(request, &approved).await;
            self.release(&incident);
            if let Ok(mut done) = self.executed.lock() {
                done.remove(request);
            }
            return Err(self.refuse(request, format!("{why}; nothing was run")));
        }
        // Write-ahead: the intent to run is durable before anything runs. If oncall dies between
        // this record and the `execution` one, a restart shows the outcome as unknown and never
        // runs it again.
        let verify = verify_by_hand(reg, tool, args);
        if let Err(e) = self.log(
            "executing",
            json!({"request": request, "incident": incident, "tool": tool, "args": args,
                   "args_hash": canonical_hash(args), "evidence_hash": evidence_hash,
                   "approved_by": approval.approved_by(), "by": executor, "verify": verify}),
        ) {
            self.unclaim(request, &approved).await;
            self.release(&incident);
            if let Ok(mut done) = self.executed.lock() {
                done.remove(request);
            }
            return Err(e);
        }
        self.set_state(
            request,
            State::Executing {
                by: executor.to_string(),
            },
        );
        if let Some(starting) = starting
            && let Err(e) = starting().await
        {
            // Recorded as not run, for good: the `executing` record must not read as unknown.
            let why = format!("its start could not be recorded ({e}); nothing was run");
            let _ = self.log(
                "execution",
                json!({"request": request, "incident": incident, "tool": tool, "args": args,
                       "by": executor, "approved_by": approval.approved_by(), "ok": false,
                       "ran": false, "error": why}),
            );
            self.set_state(request, State::Executed { ok: false });
            self.shared_done(request, State::Executed { ok: false })
                .await;
            self.release(&incident);
            return Err(DeskError::Refused(why));
        }
        fault_point("executing").await;
        let check = reg.effect_of(tool, args);
        let before = match &check {
            Some(c) => Some(measure(reg, c).await),
            None => None,
        };
        // A tool that panics must not keep the incident's slot forever.
        let called = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(reg.call(
            tool,
            args.clone(),
            Some(&approval),
        )))
        .await
        .unwrap_or_else(|_| {
            Err(ToolError::Failed {
                tool: tool.to_string(),
                message: "the action panicked".into(),
            })
        });
        let output = match called {
            // The registry's own checks (the policy again, the approval) refused it: not run.
            // The `executing` record is closed as not run, and it stays spent.
            Err(
                e @ (ToolError::Forbidden { .. }
                | ToolError::ApprovalMismatch { .. }
                | ToolError::ApprovalRequired { .. }),
            ) => {
                let _ = self.log(
                    "execution",
                    json!({"request": request, "incident": incident, "tool": tool, "args": args,
                           "by": executor, "approved_by": approval.approved_by(), "ok": false,
                           "ran": false, "error": e.to_string()}),
                );
                self.set_state(request, State::Executed { ok: false });
                self.shared_done(request, State::Executed { ok: false })
                    .await;
                self.release(&incident);
                return Err(self.refuse(request, format!("{e}")));
            }
            other => other.map_err(|e| e.to_string()),
        };
        fault_point("executed").await;
        let logged = self.log(
            "execution",
            json!({"request": request, "incident": incident, "tool": tool, "args": args,
                   "by": executor, "approved_by": approval.approved_by(), "ok": output.is_ok(),
                   "output": output.as_ref().ok(), "error": output.as_ref().err()}),
        );
        self.set_state(request, State::Executed { ok: output.is_ok() });
        self.shared_finished(request, State::Executed { ok: output.is_ok() })
            .await;
        if let Some(ran) = ran {
            ran(&output);
        }
        let effect = match (&check, before) {
            // No baseline: waiting to measure again would show nothing.
            (Some(_), Some(Err(e))) if output.is_ok() => format!("could not be measured: {e}"),
            (Some(c), Some(b)) if output.is_ok() => {
                tokio::time::sleep(std::time::Duration::from_secs(c.settle_s)).await;
                let after = measure(reg, c).await;
                compare(c, &b, &after)
            }
            (_, _) if output.is_err() => "not measured: the action failed".to_string(),
            _ => "not measured: the action names no collector to check".to_string(),
        };
        let logged = logged.and(self.log(
            "effect",
            json!({"request": request, "incident": incident, "effect": effect}),
        ));
        self.shared_release(request).await;
        self.release(&incident);
        logged.map_err(|e| match e {
            DeskError::Audit(m) => DeskError::AuditAfterRun(m),
            other => other,
        })?;
        Ok(Execution {
            request: request.to_string(),
            output,
            effect,
        })
    }
}

/// TEST-ONLY fault hook, for the crash tests: with `OC_TEST_PAUSE_AT=<point>:<marker file>` in
/// the environment, oncall writes the marker file when it reaches `<point>` (`executing`: the
/// record is durable and the action has not run; `executed`: the action returned and its result
/// is not recorded) and then waits there, so a test can kill it at exactly that moment. Unset (as
/// everywhere but those tests) it does nothing.
async fn fault_point(point: &str) {
    let Ok(spec) = std::env::var("OC_TEST_PAUSE_AT") else {
        return;
    };
    if let Some((at, marker)) = spec.split_once(':')
        && at == point
    {
        let _ = std::fs::write(marker, point);
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}

/// What a person should check, and how, when an action's outcome is unknown.
pub fn verify_by_hand(reg: &Registry, tool: &str, args: &Value) -> String {
    let num = |k: &str| args[k].as_i64().map(|n| n.to_string());
    let specific = match tool {
        "host.signal_process" => num("pid").map(|pid| {
            format!(
                "check whether process {pid} still runs and is the approved one: `ps -o pid,lstart,args -p {pid}` (approved: start time {}, executable {})",
                args["start_time"], args["exe"]
            )
        }),
        "postgres.cancel_backend" | "postgres.terminate_backend" => num("pid").map(|pid| {
            format!(
                "check the backend in database {}: `SELECT pid, state, backend_start, query_start, left(query, 80) FROM pg_stat_activity WHERE pid = {pid};`",
                args["database"].as_str().unwrap_or("(the only one configured)")
            )
        }),
        _ => None,
    };
    let effect = reg.effect_of(tool, args).map(|c| {
        format!(
            "run the `{}` tool with {} and look at {}",
            c.tool,
            c.args,
            c.measure.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    });
    let how = match (specific, effect) {
        (Some(s), Some(e)) => format!("{s}; or {e}"),
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => format!("check by hand whether `{tool}` {args} took effect"),
    };
    format!(
        "outcome unknown: oncall stopped while `{tool}` was running. Verify by hand before asking for it again: {how}"
    )
}

async fn measure(reg: &Registry, c: &EffectCheck) -> Result<Value, String> {
    reg.call(&c.tool, c.args.clone(), None)
        .await
        .map_err(|e| e.to_string())
}

/// "label: before -> after" for what changed, "no change" when nothing did.
fn compare(
    c: &EffectCheck,
    before: &Result<Value, String>,
    after: &Result<Value, String>,
) -> String {
    let (b, a) = match (before, after) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => return format!("could not be measured: {e}"),
    };
    let show = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(x)) => format!("{} item(s)", x.len()),
        Some(other) => other.to_string(),
        None => "n/a".into(),
    };
    let changed: Vec<String> = c
        .measure
        .iter()
        .filter_map(|(label, ptr)| {
            let (x, y) = (b.pointer(ptr), a.pointer(ptr));
            (x != y).then(|| format!("{label}: {} -> {}", show(x), show(y)))
        })
        .collect();
    if changed.is_empty() {
        format!(
            "no change in {} ({})",
            c.tool,
            c.measure.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    } else {
        changed.join("; ")
    }
}
