//! `postgres.activity`: sessions by state and wait event, the long-running queries, and the
//! sessions idle in transaction with their transaction age (pg_stat_activity).

use super::{Databases, PgAnswer, ask, evidence_sql};
use crate::tool::{RiskClass, Tool, ToolError, in_range};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Arguments of `postgres.activity`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityArgs {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
    /// How many sessions to list per group, 1 to 20 (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One client session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub pid: i32,
    pub user: String,
    pub application: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// Seconds since the transaction began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xact_age_s: Option<f64>,
    /// Seconds since the current (or last) query began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_age_s: Option<f64>,
    pub query: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Client sessions, oncall's own left out.
    pub sessions: usize,
    pub by_state: BTreeMap<String, usize>,
    /// `wait_event_type:wait_event` of sessions that wait.
    pub by_wait: BTreeMap<String, usize>,
    /// Active queries, longest first.
    pub long_running: Vec<Session>,
    /// Sessions idle in transaction, oldest transaction first.
    pub idle_in_transaction: Vec<Session>,
}

pub const SESSIONS_SQL: &str = "/* oncall */ SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(state, ''), \
    wait_event_type, wait_event, \
    EXTRACT(EPOCH FROM now() - xact_start)::float8, EXTRACT(EPOCH FROM now() - query_start)::float8, \
    left(coalesce(query, ''), 2000), \
    CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) ELSE '{}'::int[] END \
    FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
    AND datname = current_database() AND coalesce(application_name, '') <> 'oncall'";

/// A row of SESSIONS_SQL, with who blocks it.
pub struct Row {
    pub session: Session,
    pub blocked_by: Vec<i32>,
}

pub async fn sessions(client: &tokio_postgres::Client) -> Result<Vec<Row>, tokio_postgres::Error> {
    let rows = client.query(SESSIONS_SQL, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let wt: Option<String> = r.get(4);
            let we: Option<String> = r.get(5);
            let round = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
            Row {
                session: Session {
                    pid: r.get(0),
                    user: r.get(1),
                    application: r.get(2),
                    state: r.get(3),
                    wait: wt.map(|t| format!("{t}:{}", we.unwrap_or_default())),
                    xact_age_s: round(r.get(6)),
                    query_age_s: round(r.get(7)),
                    query: evidence_sql(r.get::<_, &str>(8), 300),
                },
                blocked_by: r.get(9),
            }
        })
        .collect())
}

fn summarize(rows: Vec<Row>, limit: usize) -> Activity {
    let mut by_state = BTreeMap::new();
    let mut by_wait = BTreeMap::new();
    for r in &rows {
        *by_state
            .entry(if r.session.state.is_empty() {
                "unknown".into()
            } else {
                r.session.state.clone()
            })
            .or_insert(0) += 1;
        if let Some(w) = &r.session.wait {
            *by_wait.entry(w.clone()).or_insert(0) += 1;
        }
    }
    let mut long: Vec<Session> = rows
        .iter()
        .filter(|r| r.session.state == "active")
        .map(|r| r.session.clone())
        .collect();
    long.sort_by(|a, b| {
        b.query_age_s
            .unwrap_or(0.0)
            .total_cmp(&a.query_age_s.unwrap_or(0.0))
    });
    long.truncate(limit);
    let mut idle: Vec<Session> = rows
        .iter()
        .filter(|r| r.session.state.starts_with("idle in transaction"))
        .map(|r| r.session.clone())
        .collect();
    idle.sort_by(|a, b| {
        b.xact_age_s
            .unwrap_or(0.0)
            .total_cmp(&a.xact_age_s.unwrap_or(0.0))
    });
    idle.truncate(limit);
    Activity {
        sessions: rows.len(),
        by_state,
        by_wait,
        long_running: long,
        idle_in_transaction: idle,
    }
}

pub struct ActivityTool {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for ActivityTool {
    const NAME: &'static str = "postgres.activity";
    const DESCRIPTION: &'static str = "PostgreSQL sessions now: counts by state and wait event, the longest-running active queries, and sessions idle in transaction with their transaction age (pg_stat_activity; oncall's own sessions left out).";
    const RISK: RiskClass = RiskClass::Read;
    type Args = ActivityArgs;
    type Output = PgAnswer<Activity>;

    crate::collectors::postgres::database_tool!();

    async fn call(&self, a: ActivityArgs) -> Result<Self::Output, ToolError> {
        let limit = in_range(Self::NAME, "limit", a.limit.unwrap_or(5), 1..=20)?;
        Ok(
            ask(&self.dbs, a.database.as_deref(), |client, _| async move {
                Ok(summarize(sessions(&client).await?, limit))
            })
            .await,
        )
    }
}
