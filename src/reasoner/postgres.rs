//! Rules over the PostgreSQL tools: `db.slow_query`, `db.lock_contention`,
//! `db.connection_exhaustion`, and an unreachable database as `dependency.errors`.
//!
//! Each verdict cites the calls that decide it (top_queries and the plan for a slow query, the
//! blocking tree for locks, connections for exhaustion). A database that could not answer makes
//! its categories untested, with the reason, rather than rejected.

use super::{Finding, cite};
use crate::agent::board::{Culprit, Strength};
use crate::collectors::outputs::Activity;
use crate::collectors::outputs::Blocking;
use crate::collectors::outputs::Connections;
use crate::collectors::outputs::PlanSummary;
use crate::collectors::outputs::Status;
use crate::collectors::outputs::TableStat;
use crate::collectors::outputs::{PgAnswer, ProblemKind, tables_in};
use crate::collectors::outputs::{QueryDelta, TopQueries};
use crate::config::Thresholds;
use crate::taxonomy::Category;
use serde::de::DeserializeOwned;

/// Below this planner cost a plan is cheap: a statement that still takes long is waiting.
const CHEAP_PLAN_COST: f64 = 1000.0;

/// The categories these rules decide, per database.
pub const COVERS: [Category; 3] = [
    Category::DbSlowQuery,
    Category::DbLockContention,
    Category::DbConnectionExhaustion,
];

/// One tool answer: the call id and what it said.
pub type Answer<T> = Option<(String, PgAnswer<T>)>;

/// What the postgres tools said about one database.
#[derive(Default)]
pub struct DbEvidence {
    pub database: String,
    pub top_queries: Answer<TopQueries>,
    pub activity: Answer<Activity>,
    pub blocking: Answer<Blocking>,
    pub connections: Answer<Connections>,
    pub explain: Answer<PlanSummary>,
    pub tables: Answer<Vec<TableStat>>,
}

/// Parses a tool's answer body.
pub fn parse<T: DeserializeOwned>(call: &str, body: &str) -> Answer<T> {
    serde_json::from_str::<PgAnswer<T>>(body)
        .ok()
        .map(|a| (call.to_string(), a))
}

fn level(v: f64, l: crate::config::Level) -> Status {
    Status::of(v, l)
}

/// Why a database could not be asked, if it could not.
pub fn unreachable(e: &DbEvidence) -> Option<(String, String)> {
    let answers: [Option<(&String, &Option<crate::collectors::outputs::PgProblem>)>; 2] = [
        e.connections.as_ref().map(|(c, a)| (c, &a.problem)),
        e.activity.as_ref().map(|(c, a)| (c, &a.problem)),
    ];
    answers.into_iter().flatten().find_map(|(call, p)| {
        let p = p.as_ref()?;
        // Only a database that does not answer is evidence about the database; a refused login
        // or a missing database is oncall's own configuration, reported as untested.
        (p.kind == ProblemKind::Unreachable)
            .then(|| (call.clone(), format!("{} ({})", p.message, p.hint)))
    })
}

/// Judges one database category.
pub fn judge(category: Category, e: &DbEvidence, th: &Thresholds) -> Result<Finding, String> {
    if let Some((_, why)) = unreachable(e) {
        return Err(format!("database {} could not be asked: {why}", e.database));
    }
    if let Some(p) = e.connections.as_ref().and_then(|(_, a)| a.problem.as_ref())
        && matches!(
            p.kind,
            ProblemKind::AuthFailed
                | ProblemKind::NoSuchDatabase
                | ProblemKind::NotConfigured
                | ProblemKind::Tls
        )
    {
        return Err(format!("{} ({})", p.message, p.hint));
    }
    let component = format!("postgres:{}", e.database);
    match category {
        Category::DbSlowQuery => slow_query(e, th, component),
        Category::DbLockContention => locks(e, th, component),
        Category::DbConnectionExhaustion => connections(e, th, component),
        other => Err(format!("{other} is not a database category")),
    }
}

/// The statement the slow-query rule looks at, if any qualifies.
pub fn suspect(t: &TopQueries, th: &Thresholds) -> Option<QueryDelta> {
    t.queries
        .iter()
        .find(|q| {
            q.share_pct >= th.postgres.query_share_pct
                && level(q.mean_ms, th.postgres.query_mean_ms) != Status::Normal
        })
        .cloned()
}

/// The data of one tool's answer with its call id, or why there is none (the tool was not
/// called, or the database reported a problem).
fn data<'a, T>(a: &'a Answer<T>, tool: &str) -> Result<(&'a String, &'a T), String> {
    let (call, ans) = a.as_ref().ok_or_else(|| format!("{tool} was not called"))?;
    if let Some(p) = &ans.problem {
        return Err(format!("{} ({})", p.message, p.hint));
    }
    let d = ans
        .data
        .as_ref()
        .ok_or_else(|| format!("{tool} returned no data"))?;
    Ok((call, d))
}

fn slow_query(e: &DbEvidence, th: &Thresholds, component: String) -> Result<Finding, String> {
    let (call, t) = data(&e.top_queries, "postgres.top_queries")?;
    let Some(q) = suspect(t, th) else {
        let busiest = t
            .queries
            .first()
            .map(|q| {
                format!(
                    "busiest statement: mean {} ms, {}% of statement time, {} calls",
                    q.mean_ms, q.share_pct, q.calls
                )
            })
            .unwrap_or_else(|| "no statement ran".into());
        return Ok(Finding::ruled_out(
            "A slow query dominating the database",
            component,
            call,
            format!(
                "in the {} ms window {} statements took {} ms; {busiest}",
                t.window_ms, t.active_statements, t.window_total_ms
            ),
        ));
    };
    let before = q
        .before_mean_ms
        .map(|b| format!(" (before the window: {b} ms)"))
        .unwrap_or_default();
    let qnote = format!(
        "queryid {}: mean {} ms over {} calls, {}% of statement time in the window{before}; `{}`",
        q.queryid, q.mean_ms, q.calls, q.share_pct, q.query
    );
    let mut citations = vec![cite(
        call,
        true,
        if level(q.mean_ms, th.postgres.query_mean_ms) == Status::Critical {
            Strength::Strong
        } else {
            Strength::Moderate
        },
        qnote,
    )];
    let plan = e.explain.as_ref().and_then(|(c, a)| {
        a.data
            .as_ref()
            .filter(|p| p.queryid == Some(q.queryid))
            .map(|p| (c, p))
    });
    let seq = plan.and_then(|(c, p)| {
        p.findings
            .iter()
            .find(|f| f.starts_with("Seq Scan"))
            .map(|f| (c, f.clone()))
    });
    let mut table = tables_in(&q.query).into_iter().next();
    if seq.is_none()
        && let Some((c, p)) = plan
        && p.total_cost < CHEAP_PLAN_COST
    {
        // A cheap plan that takes long is waiting (on a lock, on I/O), not executing: the
        // statement is a victim, so this speaks against a slow-query root cause.
        let node = p
            .costly_nodes
            .first()
            .map(|n| {
                format!(
                    "{}{}",
                    n.node,
                    n.index
                        .as_ref()
                        .map(|i| format!(" using {i}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        citations.push(cite(
            c,
            false,
            Strength::Moderate,
            format!("the plan is cheap ({node}, total cost {}): the time goes to waiting (locks, I/O), not to executing", p.total_cost),
        ));
    }
    if let Some((c, finding)) = &seq {
        citations.push(cite(c, true, Strength::Strong, finding.clone()));
        table = plan
            .and_then(|(_, p)| {
                p.costly_nodes
                    .iter()
                    .find(|n| n.node == "Seq Scan")
                    .and_then(|n| n.relation.clone())
            })
            .or(table);
    }
    if let Some((c, ts)) = &e.tables
        && let Some(t) = ts
            .data
            .as_ref()
            .and_then(|v| v.iter().find(|t| Some(&t.table) == table.as_ref()))
    {
        let idx = t
            .idx_scan
            .map(|i| i.to_string())
            .unwrap_or_else(|| "no".into());
        citations.push(cite(
            c,
            true,
            Strength::Weak,
            format!(
                "{}: {} seq scans read {} rows, {idx} index scans, {} indexes, {} live rows",
                t.table, t.seq_scan, t.seq_tup_read, t.indexes, t.live_tuples
            ),
        ));
    }
    let plan_part = seq
        .as_ref()
        .map(|(_, f)| format!("; plan: {f}"))
        .unwrap_or_default();
    Ok(Finding {
        statement: format!(
            "Slow query on {}: `{}` takes {} ms per call and {}% of statement time{plan_part}",
            table.clone().unwrap_or_else(|| "the database".into()),
            q.query,
            q.mean_ms,
            q.share_pct
        ),
        component,
        culprit: table.map(|t| Culprit { pid: None, name: t }),
        citations,
    })
}

fn locks(e: &DbEvidence, th: &Thresholds, component: String) -> Result<Finding, String> {
    let (call, b) = data(&e.blocking, "postgres.blocking")?;
    let Some(root) = b.roots.first() else {
        let idle = e
            .activity
            .as_ref()
            .and_then(|(_, a)| a.data.as_ref())
            .map(|a| {
                format!(
                    "; {} sessions idle in transaction",
                    a.idle_in_transaction.len()
                )
            })
            .unwrap_or_default();
        return Ok(Finding::ruled_out(
            "Sessions blocked behind a lock holder",
            component,
            call,
            format!("no session waits on a lock{idle}"),
        ));
    };
    let s = &root.session;
    let idle = s.state.starts_with("idle in transaction");
    let xact = s.xact_age_s.unwrap_or(0.0);
    // How long the longest waiter waited, or how many wait at once: a queue behind one lock
    // request (an ALTER TABLE waiting for ACCESS EXCLUSIVE) stalls everyone within seconds.
    let waiters = b.waiting_sessions as f64;
    let status = level(b.longest_wait_s, th.postgres.lock_wait_s)
        .max(level(waiters, th.postgres.lock_waiters));
    let strength = if idle || status == Status::Critical {
        Strength::Strong
    } else if status == Status::Warning {
        Strength::Moderate
    } else {
        Strength::Weak
    };
    let queue = root.victims.iter().find(|v| {
        v.blocks > 0
            && v.waiting_for_lock
                .as_deref()
                .is_some_and(|l| l.starts_with("AccessExclusiveLock"))
    });
    let chained: Vec<String> = root
        .victims
        .iter()
        .filter(|v| v.blocks > 0)
        .map(|v| {
            format!(
                "victim pid {} ({}) waits and itself blocks {}",
                v.pid, v.application, v.blocks
            )
        })
        .collect();
    let holds = if root.holds.is_empty() {
        String::new()
    } else {
        format!(", holds {}", root.holds.join(", "))
    };
    let note = format!(
        "root holder pid {} ({}, user {}) is {} with a transaction {:.0} s old{holds}; {} session(s) wait behind it, the longest for {:.0} s{}",
        s.pid,
        s.application,
        s.user,
        if s.state.is_empty() {
            "in an unknown state"
        } else {
            &s.state
        },
        xact,
        root.victims.len(),
        b.longest_wait_s,
        if chained.is_empty() {
            String::new()
        } else {
            format!("; {}", chained.join("; "))
        }
    );
    Ok(Finding {
        statement: format!(
            "Lock contention: pid {} ({}) has {} for {:.0} s and blocks {} session(s){}",
            s.pid,
            s.application,
            if idle {
                "sat idle in transaction"
            } else {
                "held a transaction open"
            },
            xact,
            root.victims.len(),
            if root.holds.is_empty() {
                String::new()
            } else {
                format!("; it holds {}", root.holds.join(", "))
            }
        ) + &queue
            .map(|v| {
                format!(
                    "; pid {} ({}) waits for {} and {} session(s) queue behind its request",
                    v.pid,
                    v.application,
                    v.waiting_for_lock.as_deref().unwrap_or("a lock"),
                    v.blocks
                )
            })
            .unwrap_or_default(),
        component,
        culprit: Some(Culprit {
            pid: Some(s.pid.max(0) as u32),
            name: s.application.clone(),
        }),
        citations: {
            let mut c = vec![cite(call, true, strength, note)];
            // The sessions' own view corroborates: how many wait on a lock right now.
            if let Some((acall, a)) = e
                .activity
                .as_ref()
                .and_then(|(id, a)| a.data.as_ref().map(|d| (id, d)))
            {
                let on_locks: usize = a
                    .by_wait
                    .iter()
                    .filter(|(k, _)| k.starts_with("Lock:"))
                    .map(|(_, n)| n)
                    .sum();
                let st = level(on_locks as f64, th.postgres.lock_waiters);
                if st != Status::Normal {
                    c.push(cite(
                        acall,
                        true,
                        if st == Status::Critical {
                            Strength::Strong
                        } else {
                            Strength::Moderate
                        },
                        format!("{on_locks} session(s) wait on locks (pg_stat_activity)"),
                    ));
                }
            }
            c
        },
    })
}

fn connections(e: &DbEvidence, th: &Thresholds, component: String) -> Result<Finding, String> {
    let (call, ans) = e
        .connections
        .as_ref()
        .ok_or("postgres.connections was not called")?;
    if let Some(p) = &ans.problem {
        if p.kind == ProblemKind::TooManyConnections {
            return Ok(Finding {
                statement: format!(
                    "Connections exhausted: database {} refuses new connections",
                    e.database
                ),
                component,
                culprit: None,
                citations: vec![cite(call, true, Strength::Strong, p.message.clone())],
            });
        }
        return Err(format!("{} ({})", p.message, p.hint));
    }
    let c = ans
        .data
        .as_ref()
        .ok_or("postgres.connections returned no data")?;
    let top = c
        .by_application
        .iter()
        .find(|(a, _)| a != "oncall")
        .cloned();
    let who = top
        .as_ref()
        .map(|(a, n)| format!("; {a} holds {n}"))
        .unwrap_or_default();
    let note = format!(
        "{} of {} usable connections in use ({}%; max_connections {}, {} reserved){who}",
        c.used, c.available, c.used_pct, c.max_connections, c.reserved
    );
    let st = level(c.used_pct, th.postgres.connections_used_pct);
    if st == Status::Normal {
        return Ok(Finding::ruled_out(
            "Connections at or near the limit",
            component,
            call,
            note,
        ));
    }
    Ok(Finding {
        statement: format!(
            "Connections near the limit: {} of {} in use{}",
            c.used,
            c.available,
            top.as_ref()
                .map(|(a, n)| format!(", {n} of them by {a}"))
                .unwrap_or_default()
        ),
        component,
        culprit: top.map(|(a, _)| Culprit { pid: None, name: a }),
        citations: vec![cite(
            call,
            true,
            if st == Status::Critical {
                Strength::Strong
            } else {
                Strength::Moderate
            },
            note,
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::postgres::explain::PlanNode;

    fn evidence(plan_cost: f64, seq: bool) -> DbEvidence {
        let q = QueryDelta {
            queryid: 9,
            role: "app".into(),
            query: "UPDATE ledger SET v = v + $1 WHERE id = $2".into(),
            calls: 3,
            total_ms: 60_000.0,
            mean_ms: 20_000.0,
            rows: 3,
            shared_blks_read: 0,
            shared_blks_hit: 9,
            temp_blks_written: 0,
            share_pct: 99.0,
            before_mean_ms: Some(0.1),
            slowdown: Some(200_000.0),
        };
        let top = TopQueries {
            window_ms: 2000,
            active_statements: 1,
            window_total_ms: 60_000.0,
            queries: vec![q],
        };
        let node = PlanNode {
            node: if seq {
                "Seq Scan".into()
            } else {
                "Index Scan".into()
            },
            relation: Some("ledger".into()),
            index: (!seq).then(|| "ledger_pkey".into()),
            self_cost: plan_cost,
            plan_rows: 1.0,
            filter: seq.then(|| "(id = $2)".into()),
            actual_rows: None,
            rows_removed_by_filter: None,
            actual_ms: None,
            sort_space: None,
            loops: None,
        };
        let plan = PlanSummary {
            queryid: Some(9),
            query: "UPDATE ledger".into(),
            tables: vec!["ledger".into()],
            total_cost: plan_cost,
            plan_rows: 1.0,
            costly_nodes: vec![node],
            findings: if seq {
                vec!["Seq Scan on ledger with filter (id = $2)".into()]
            } else {
                vec![]
            },
            analyzed: false,
        };
        DbEvidence {
            database: "app".into(),
            top_queries: Some(("c2".into(), PgAnswer::ok("app", top))),
            explain: Some(("c6".into(), PgAnswer::ok("app", plan))),
            ..Default::default()
        }
    }

    #[test]
    fn a_slow_statement_with_a_cheap_plan_is_waiting_not_executing() {
        let th = Thresholds::default();
        let v = judge(Category::DbSlowQuery, &evidence(8.3, false), &th).unwrap();
        let against = v
            .citations
            .iter()
            .find(|c| !c.supports)
            .expect("the cheap plan speaks against it");
        assert_eq!(against.call, "c6");
        assert!(against.note.contains("waiting"), "{}", against.note);
        let v = judge(Category::DbSlowQuery, &evidence(18_000.0, true), &th).unwrap();
        assert!(
            v.citations.iter().all(|c| c.supports),
            "a seq scan supports it"
        );
        assert!(v.statement.contains("Seq Scan"));
    }
}
