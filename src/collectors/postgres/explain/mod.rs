//! Plans: `postgres.explain` (EXPLAIN of a statement pg_stat_statements shows, summarized to the
//! costly nodes) and `postgres.explain_analyze` (EXPLAIN ANALYZE executes the statement, so it is
//! a `write` tool that needs an approval).
//!
//! `postgres.explain_analyze` runs as the read-only monitoring role (the collectors' `url`,
//! never `action_url`), in a READ ONLY transaction that is rolled back, under
//! `statement_timeout`. Before anything is sent the statement is parsed: exactly one statement,
//! one that only reads (no INSERT/UPDATE/DELETE/MERGE/DDL/COPY/CALL/DO/SET/LOCK/GRANT, no SELECT
//! ... INTO, no FOR UPDATE/SHARE, no data-modifying WITH), calling no function refused by name
//! (pg_terminate_backend, pg_cancel_backend, pg_reload_conf, ...). Then the database is asked,
//! read-only, which of the functions it calls are marked volatile in `pg_proc`; one that is and
//! is not on the allow list ([`VOLATILE_ALLOWED`]: clock, random, sleep) refuses the statement.
//! What is sent is the parsed statement printed again, so what runs is what was checked.
//!
//! pg_stat_statements stores statements with `$n` placeholders. PostgreSQL 15 cannot EXPLAIN
//! those directly, so `postgres.explain` prepares the statement and explains its GENERIC plan
//! (`plan_cache_mode = force_generic_plan`, NULL parameters), inside a read-only transaction that
//! is rolled back: nothing is executed.

mod analyze;
mod plan;
mod statement;

use super::{Databases, PgAnswer, ask};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::LazyLock;

pub use analyze::ExplainAnalyzeTool;
pub use plan::{PlanNode, PlanSummary, summarize};
pub use statement::{
    Candidate, FunctionRef, ReadStatement, StatementRefused, VOLATILE_ALLOWED,
    check_read_statement, first_volatile,
};

/// Arguments of `postgres.explain`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainArgs {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
    /// The queryid of the statement, as postgres.top_queries shows it.
    pub queryid: i64,
}

/// Arguments of `postgres.explain_analyze`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainAnalyzeArgs {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
    /// One complete SQL statement with real values (it will be EXECUTED, then rolled back).
    pub sql: String,
}

static PARAM: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\$(\d+)").ok());

fn explainable(query: &str) -> bool {
    let first = query
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_lowercase();
    [
        "select", "with", "update", "delete", "insert", "values", "table",
    ]
    .contains(&first.as_str())
}

fn failed(msg: impl Into<String>) -> super::PgProblem {
    super::PgProblem {
        kind: super::ProblemKind::QueryFailed,
        message: msg.into(),
        hint: "pick a SELECT, INSERT, UPDATE or DELETE statement from postgres.top_queries".into(),
    }
}

pub struct ExplainTool {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for ExplainTool {
    const NAME: &'static str = "postgres.explain";
    const DESCRIPTION: &'static str = "EXPLAIN (generic plan, nothing executed) of a statement from postgres.top_queries by its queryid, summarized to the costliest nodes and findings: seq scans of big tables with a filter, nested loops with large inner sides.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = ExplainArgs;
    type Output = PgAnswer<PlanSummary>;

    crate::collectors::postgres::database_tool!();

    async fn call(&self, a: ExplainArgs) -> Result<Self::Output, ToolError> {
        let (name, _) = match self.dbs.resolve(a.database.as_deref()) {
            Ok(x) => x,
            Err(p) => return Ok(PgAnswer::problem(a.database.as_deref().unwrap_or("?"), p)),
        };
        let queryid = a.queryid;
        let found: PgAnswer<Option<String>> = ask(&self.dbs, Some(&name), |client, _| async move {
            let row = client
                .query_opt("/* oncall */ SELECT query FROM pg_stat_statements WHERE queryid = $1 AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1", &[&queryid])
                .await?;
            Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
        })
        .await;
        let query = match found {
            PgAnswer {
                data: Some(Some(q)),
                ..
            } => q,
            PgAnswer {
                problem: Some(p), ..
            } => return Ok(PgAnswer::problem(&name, p)),
            _ => {
                return Ok(PgAnswer::problem(
                    &name,
                    failed(format!(
                        "no statement with queryid {queryid} in pg_stat_statements"
                    )),
                ));
            }
        };
        if !explainable(&query) {
            return Ok(PgAnswer::problem(
                &name,
                failed(format!(
                    "statement {queryid} is not a SELECT/INSERT/UPDATE/DELETE and cannot be explained"
                )),
            ));
        }
        let nparams = PARAM
            .as_ref()
            .map(|r| {
                r.captures_iter(&query)
                    .filter_map(|c| c[1].parse::<usize>().ok())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let q = query.clone();
        // Its own session: the transaction and the prepared statement must not mix with the
        // queries other tools pipeline over the shared connection.
        let (_, settings) = match self.dbs.resolve(Some(&name)) {
            Ok(x) => x,
            Err(p) => return Ok(PgAnswer::problem(&name, p)),
        };
        let client = match super::connect(&name, &settings, false).await {
            Ok(c) => c,
            Err(p) => return Ok(PgAnswer::problem(&name, p)),
        };
        let answer: PgAnswer<Value> = match async {
            client
                .batch_execute(
                    "/* oncall */ BEGIN READ ONLY; SET LOCAL plan_cache_mode = force_generic_plan",
                )
                .await?;
            let prepared = client
                .batch_execute(&format!("{} PREPARE oncall_explain AS {q}", super::MARK))
                .await;
            let result = match prepared {
                Ok(()) => {
                    let args = if nparams == 0 {
                        String::new()
                    } else {
                        format!("({})", vec!["NULL"; nparams].join(", "))
                    };
                    let r = client
                        .query_one(
                            &format!(
                                "{} EXPLAIN (FORMAT JSON) EXECUTE oncall_explain{args}",
                                super::MARK
                            ),
                            &[],
                        )
                        .await;
                    let _ = client.batch_execute("DEALLOCATE oncall_explain").await;
                    r.map(|row| row.get::<_, Value>(0))
                }
                Err(e) => Err(e),
            };
            let _ = client.batch_execute("ROLLBACK").await;
            result
        }
        .await
        {
            Ok(v) => PgAnswer::ok(&name, v),
            Err(e) => PgAnswer::problem(&name, super::classify(&name, &settings, &e)),
        };
        Ok(match answer {
            PgAnswer {
                data: Some(plan), ..
            } => match summarize(&plan, &query, Some(queryid)) {
                Ok(s) => PgAnswer::ok(&name, s),
                Err(e) => PgAnswer::problem(&name, failed(e)),
            },
            PgAnswer { problem, .. } => {
                PgAnswer::problem(&name, problem.unwrap_or_else(|| failed("no plan")))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dml_is_explainable() {
        assert!(explainable("  SELECT 1"));
        assert!(explainable("with x as (select 1) select * from x"));
        assert!(!explainable("VACUUM orders"));
        assert!(!explainable("ALTER TABLE t ADD c int"));
    }
}
