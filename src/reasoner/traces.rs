//! Rules over the traces tools: `dependency.latency` (the downstream that holds the critical path
//! of the slowest traces, with the database rejected when its spans are fast),
//! `dependency.errors` (errors that start downstream and propagate up) and `app.error_spike`
//! (errors that start in the entry service itself).

use super::{Finding, cite};
use crate::agent::board::{Culprit, Strength};
use crate::collectors::outputs::CriticalPath;
use crate::collectors::outputs::Status;
use crate::collectors::outputs::{ErrorsAnswer, RedAnswer};
use crate::config::Thresholds;
use crate::taxonomy::Category;

/// The categories these rules decide.
pub const COVERS: [Category; 4] = [
    Category::DependencyLatency,
    Category::DependencyErrors,
    Category::AppErrorSpike,
    Category::DbSlowQuery,
];

/// What the traces tools said: (call id, answer).
#[derive(Default)]
pub struct TraceEvidence {
    pub red: Option<(String, RedAnswer)>,
    pub path: Option<(String, CriticalPath)>,
    pub errors: Option<(String, ErrorsAnswer)>,
}

/// Whether there is anything to judge (DbSlowQuery only when database spans are on the path).
pub fn applies(category: Category, e: &TraceEvidence) -> bool {
    let has_traces = e.path.as_ref().is_some_and(|(_, p)| p.traces > 0);
    match category {
        Category::DbSlowQuery => e
            .path
            .as_ref()
            .is_some_and(|(_, p)| p.path.iter().any(|s| s.db_system.is_some())),
        _ => has_traces || e.errors.as_ref().is_some_and(|(_, a)| !a.groups.is_empty()),
    }
}

pub fn judge(category: Category, e: &TraceEvidence, th: &Thresholds) -> Result<Finding, String> {
    let t = &th.traces;
    match category {
        Category::DependencyLatency => {
            let (call, p) = e
                .path
                .as_ref()
                .ok_or("traces.critical_path was not called")?;
            if p.traces == 0 {
                return Err("no traces were received in the window".into());
            }
            let top = p.path.first().ok_or("the slowest traces have no spans")?;
            let db = p
                .path
                .iter()
                .filter(|s| s.db_system.is_some())
                .map(|s| {
                    format!(
                        "; database spans ({} {}) take {} ms ({}%)",
                        s.db_system.clone().unwrap_or_default(),
                        s.operation,
                        s.self_ms,
                        s.share_pct
                    )
                })
                .next()
                .unwrap_or_default();
            let note = format!(
                "over the {} slowest traces ({} ms on average), the critical path is held by {} in service {}: {} ms ({}%){db}",
                p.traces, p.mean_trace_ms, top.operation, top.service, top.self_ms, top.share_pct
            );
            let share = Status::of(top.share_pct, t.critical_path_share_pct);
            if top.service != p.entry_service
                && share != Status::Normal
                && top.self_ms >= t.min_self_ms
                && top.db_system.is_none()
            {
                Ok(Finding {
                    statement: format!(
                        "Downstream latency: {} in service {} takes {} ms of the {} ms critical path ({}%)",
                        top.operation, top.service, top.self_ms, p.mean_trace_ms, top.share_pct
                    ),
                    component: format!("service:{}", top.service),
                    culprit: Some(Culprit {
                        pid: None,
                        name: format!("{} {}", top.service, top.operation),
                    }),
                    citations: vec![cite(
                        call,
                        true,
                        if share == Status::Critical {
                            Strength::Strong
                        } else {
                            Strength::Moderate
                        },
                        note,
                    )],
                })
            } else {
                Ok(Finding::ruled_out(
                    "A slow downstream dependency",
                    "traces",
                    call,
                    note,
                ))
            }
        }
        Category::DbSlowQuery => {
            let (call, p) = e
                .path
                .as_ref()
                .ok_or("traces.critical_path was not called")?;
            let db = p
                .path
                .iter()
                .filter(|s| s.db_system.is_some())
                .max_by(|a, b| a.share_pct.total_cmp(&b.share_pct))
                .ok_or("no database spans on the critical path")?;
            let note = format!(
                "database spans on the critical path: {} ({}) takes {} ms, {}% of it",
                db.operation,
                db.db_system.clone().unwrap_or_default(),
                db.self_ms,
                db.share_pct
            );
            let supports = Status::of(db.share_pct, t.critical_path_share_pct) != Status::Normal
                && db.self_ms >= t.min_self_ms;
            Ok(Finding {
                statement: if supports {
                    format!(
                        "Slow database call: {} takes {} ms ({}% of the critical path)",
                        db.operation, db.self_ms, db.share_pct
                    )
                } else {
                    "The database is slow".into()
                },
                component: format!("service:{}", db.service),
                culprit: supports.then(|| Culprit {
                    pid: None,
                    name: db.operation.clone(),
                }),
                citations: vec![cite(
                    call,
                    supports,
                    if supports {
                        Strength::Moderate
                    } else {
                        Strength::Strong
                    },
                    note,
                )],
            })
        }
        Category::DependencyErrors | Category::AppErrorSpike => {
            let (call, errs) = e.errors.as_ref().ok_or("traces.errors was not called")?;
            let entry = e
                .path
                .as_ref()
                .map(|(_, p)| p.entry_service.clone())
                .unwrap_or_default();
            let want_downstream = category == Category::DependencyErrors;
            let origin = errs.groups.iter().find(|g| {
                g.origin && g.count >= t.min_errors && (g.service != entry) == want_downstream
            });
            let entry_ratio = e
                .red
                .as_ref()
                .map(|(_, r)| {
                    r.rows
                        .iter()
                        .filter(|r| r.service == entry)
                        .map(|r| r.window.error_ratio)
                        .fold(0.0, f64::max)
                })
                .unwrap_or(0.0);
            let Some(g) = origin else {
                let what = if want_downstream {
                    "no error starts in a downstream service"
                } else {
                    "no error starts in the entry service"
                };
                return Ok(Finding::ruled_out(
                    if want_downstream {
                        "A failing downstream dependency"
                    } else {
                        "The service's own errors rising"
                    },
                    "traces",
                    call,
                    format!("{what}; {} error groups in the window", errs.groups.len()),
                ));
            };
            let note = format!(
                "{} error spans start in {} of service {} (\"{}\", e.g. trace {}); the entry service {} fails {:.0}% of the time",
                g.count,
                g.operation,
                g.service,
                g.message,
                g.exemplar_trace_id,
                if entry.is_empty() { "?" } else { &entry },
                entry_ratio * 100.0
            );
            let ratio = Status::of(entry_ratio, t.error_ratio);
            let strength = match ratio {
                Status::Critical => Strength::Strong,
                Status::Warning => Strength::Moderate,
                Status::Normal => Strength::Weak,
            };
            Ok(Finding {
                statement: if want_downstream {
                    format!(
                        "Downstream errors: {} in service {} fails (\"{}\", {} spans) and the errors reach {}",
                        g.operation, g.service, g.message, g.count, entry
                    )
                } else {
                    format!(
                        "Error spike in {}: {} fails (\"{}\", {} spans), {:.0}% of requests",
                        g.service,
                        g.operation,
                        g.message,
                        g.count,
                        entry_ratio * 100.0
                    )
                },
                component: format!("service:{}", g.service),
                culprit: Some(Culprit {
                    pid: None,
                    name: format!("{} {}", g.service, g.operation),
                }),
                citations: vec![cite(call, true, strength, note)],
            })
        }
        other => Err(format!("{other} is not judged from traces")),
    }
}
