//! `postgres.top_queries`: the statements that took the time during the incident window.
//!
//! Reads pg_stat_statements twice, `window_ms` apart, and ranks the DELTA, beside each
//! statement's mean before the window, so a query that got slow now stands out from one that was
//! always heavy.

use super::{Databases, PgAnswer, ask, evidence_sql};
use crate::tool::{RiskClass, Tool, ToolError, in_range};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What to rank by.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Total execution time in the window (default): what the database spent its time on.
    #[default]
    TotalTime,
    /// Mean time per call in the window: the slowest statements.
    MeanTime,
    /// Number of calls in the window.
    Calls,
    /// Rows returned or affected in the window.
    Rows,
    /// Blocks read from disk (not cache) in the window.
    Io,
}

/// Arguments of `postgres.top_queries`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopQueriesArgs {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
    /// Rank by total_time (default), mean_time, calls, rows or io.
    #[serde(default)]
    pub order_by: Option<Order>,
    /// How many statements to return, 1 to 20 (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The window to measure over, 100 to 30000 ms (default: the database's configured window).
    #[serde(default)]
    pub window_ms: Option<u64>,
}

/// One statement's activity in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryDelta {
    pub queryid: i64,
    pub role: String,
    /// Normalized text, literals and secrets removed.
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub rows: i64,
    pub shared_blks_read: i64,
    pub shared_blks_hit: i64,
    pub temp_blks_written: i64,
    /// Share of all statement time in the window, %.
    pub share_pct: f64,
    /// Mean time per call before the window (None: first seen in the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_mean_ms: Option<f64>,
    /// mean_ms / before_mean_ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowdown: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopQueries {
    pub window_ms: u64,
    /// Statements that ran in the window.
    pub active_statements: usize,
    pub window_total_ms: f64,
    pub queries: Vec<QueryDelta>,
}

#[derive(Clone, Copy, Default)]
struct Counters {
    calls: i64,
    total_ms: f64,
    rows: i64,
    read: i64,
    hit: i64,
    temp: i64,
}

const SQL: &str = "/* oncall */ SELECT s.queryid, coalesce(r.rolname, ''), s.query, s.calls, s.total_exec_time, s.rows, \
    s.shared_blks_read, s.shared_blks_hit, s.temp_blks_written \
    FROM pg_stat_statements s LEFT JOIN pg_roles r ON r.oid = s.userid \
    WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.queryid IS NOT NULL \
    AND s.query NOT LIKE '/* oncall */%'";

async fn read(
    client: &tokio_postgres::Client,
) -> Result<HashMap<(i64, String), (String, Counters)>, tokio_postgres::Error> {
    let rows = client.query(SQL, &[]).await?;
    // pg_stat_statements keeps separate rows per user id and per top-level/nested use; rows that
    // share (queryid, role) are summed, so both reads aggregate the same way.
    let mut out: HashMap<(i64, String), (String, Counters)> = HashMap::new();
    for r in &rows {
        let key = (r.get::<_, i64>(0), r.get::<_, String>(1));
        let text = r.get::<_, Option<String>>(2).unwrap_or_default();
        let e = out
            .entry(key)
            .or_insert_with(|| (text, Counters::default()));
        e.1.calls += r.get::<_, i64>(3);
        e.1.total_ms += r.get::<_, f64>(4);
        e.1.rows += r.get::<_, i64>(5);
        e.1.read += r.get::<_, i64>(6);
        e.1.hit += r.get::<_, i64>(7);
        e.1.temp += r.get::<_, i64>(8);
    }
    Ok(out)
}

/// The tool.
pub struct TopQueriesTool {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for TopQueriesTool {
    const NAME: &'static str = "postgres.top_queries";
    const DESCRIPTION: &'static str = "PostgreSQL statements that took the most time during the incident window (a delta of pg_stat_statements over window_ms), each beside its mean before the window, so a query that got slow now stands out from one that was always heavy. Query text is normalized, without literals.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = TopQueriesArgs;
    type Output = PgAnswer<TopQueries>;

    crate::collectors::postgres::database_tool!();

    async fn call(&self, a: TopQueriesArgs) -> Result<Self::Output, ToolError> {
        let limit = in_range(Self::NAME, "limit", a.limit.unwrap_or(5), 1..=20)?;
        if let Some(w) = a.window_ms {
            in_range(Self::NAME, "window_ms", w, 100..=30_000)?;
        }
        let order = a.order_by.unwrap_or_default();
        Ok(
            ask(&self.dbs, a.database.as_deref(), |client, s| async move {
                let window = Duration::from_millis(a.window_ms.unwrap_or(s.window_ms));
                let started = Instant::now();
                let before = read(&client).await?;
                tokio::time::sleep(window).await;
                let after = read(&client).await?;
                Ok(rank(
                    &before,
                    &after,
                    order,
                    limit,
                    started.elapsed().as_millis() as u64,
                ))
            })
            .await,
        )
    }
}

fn rank(
    before: &HashMap<(i64, String), (String, Counters)>,
    after: &HashMap<(i64, String), (String, Counters)>,
    order: Order,
    limit: usize,
    window_ms: u64,
) -> TopQueries {
    let mut deltas: Vec<QueryDelta> = after
        .iter()
        .filter_map(|(key, (text, b))| {
            let a = before.get(key).map(|(_, c)| *c).unwrap_or_default();
            // A reset of pg_stat_statements in the window makes counters go down: count from zero.
            let a = if b.calls < a.calls {
                Counters::default()
            } else {
                a
            };
            let calls = b.calls - a.calls;
            if calls <= 0 {
                return None;
            }
            let total = (b.total_ms - a.total_ms).max(0.0);
            let before_mean = (a.calls > 0).then(|| a.total_ms / a.calls as f64);
            let mean = total / calls as f64;
            Some(QueryDelta {
                queryid: key.0,
                role: key.1.clone(),
                query: evidence_sql(text, 300),
                calls,
                total_ms: round1(total),
                mean_ms: round1(mean),
                rows: b.rows - a.rows,
                shared_blks_read: b.read - a.read,
                shared_blks_hit: b.hit - a.hit,
                temp_blks_written: b.temp - a.temp,
                share_pct: 0.0,
                before_mean_ms: before_mean.map(round1),
                slowdown: before_mean.filter(|m| *m > 0.0).map(|m| round1(mean / m)),
            })
        })
        .collect();
    let window_total: f64 = deltas.iter().map(|d| d.total_ms).sum();
    for d in &mut deltas {
        d.share_pct = if window_total > 0.0 {
            round1(100.0 * d.total_ms / window_total)
        } else {
            0.0
        };
    }
    let key = |d: &QueryDelta| match order {
        Order::TotalTime => d.total_ms,
        Order::MeanTime => d.mean_ms,
        Order::Calls => d.calls as f64,
        Order::Rows => d.rows as f64,
        Order::Io => d.shared_blks_read as f64,
    };
    deltas.sort_by(|x, y| key(y).total_cmp(&key(x)));
    let active = deltas.len();
    deltas.truncate(limit);
    TopQueries {
        window_ms,
        active_statements: active,
        window_total_ms: round1(window_total),
        queries: deltas,
    }
}

pub fn round1(v: f64) -> f64 {
    if v.is_finite() {
        (v * 10.0).round() / 10.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(calls: i64, total: f64) -> Counters {
        Counters {
            calls,
            total_ms: total,
            ..Default::default()
        }
    }

    #[test]
    fn the_delta_ranks_what_got_slow_now_over_what_was_always_heavy() {
        let k = |id: i64| (id, "app".to_string());
        let before = HashMap::from([
            (k(1), ("SELECT heavy".to_string(), c(1000, 500_000.0))),
            (k(2), ("SELECT usually_fast".to_string(), c(1000, 1_000.0))),
        ]);
        let after = HashMap::from([
            (k(1), ("SELECT heavy".to_string(), c(1001, 500_400.0))),
            (k(2), ("SELECT usually_fast".to_string(), c(1040, 21_000.0))),
            (k(3), ("SELECT new".to_string(), c(5, 10.0))),
        ]);
        let t = rank(&before, &after, Order::TotalTime, 5, 2000);
        assert_eq!(
            t.queries[0].queryid, 2,
            "20 s of new time beats the always-heavy one"
        );
        assert_eq!(t.queries[0].mean_ms, 500.0);
        assert_eq!(t.queries[0].slowdown, Some(500.0));
        assert_eq!(t.queries[2].before_mean_ms, None);
        assert!(t.queries[0].share_pct > 90.0);
        let by_mean = rank(&before, &after, Order::MeanTime, 1, 2000);
        assert_eq!(by_mean.queries[0].queryid, 2);
    }

    #[test]
    fn a_stats_reset_in_the_window_counts_from_zero() {
        let k = (1, "app".to_string());
        let before = HashMap::from([(k.clone(), ("q".to_string(), c(1000, 9000.0)))]);
        let after = HashMap::from([(k, ("q".to_string(), c(10, 50.0)))]);
        let t = rank(&before, &after, Order::TotalTime, 5, 1000);
        assert_eq!(t.queries[0].calls, 10);
        assert_eq!(t.queries[0].total_ms, 50.0);
    }
}
