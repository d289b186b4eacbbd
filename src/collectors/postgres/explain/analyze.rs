//! `postgres.explain_analyze`: EXPLAIN ANALYZE of a checked statement, as the read-only
//! monitoring role, in a READ ONLY transaction that is rolled back, under statement_timeout.

use super::plan::summarize;
use super::statement::{
    Candidate, FunctionRef, ReadStatement, StatementRefused, check_read_statement, first_volatile,
};
use super::{ExplainAnalyzeArgs, PlanSummary, failed};
use crate::collectors::postgres::{Databases, MARK, PgAnswer, ProblemKind, classify, connect};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use serde_json::Value;

/// Asks the database (read-only, inside the caller's transaction) which schemas the
/// statement's functions may resolve to and how volatile each is.
async fn candidates(
    client: &tokio_postgres::Client,
    functions: &[FunctionRef],
) -> Result<Vec<Candidate>, tokio_postgres::Error> {
    let names: Vec<String> = functions.iter().map(|f| f.name.clone()).collect();
    let rows = client
        .query(
            "/* oncall */ SELECT n.nspname::text, p.proname::text, p.provolatile::text, n.nspname = ANY (current_schemas(true)) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.proname::text = ANY ($1::text[])",
            &[&names],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Candidate {
                schema: r.try_get(0)?,
                name: r.try_get(1)?,
                volatility: r.try_get(2)?,
                on_path: r.try_get(3)?,
            })
        })
        .collect()
}

pub struct ExplainAnalyzeTool {
    pub dbs: Databases,
}

impl ExplainAnalyzeTool {
    fn refused(why: StatementRefused) -> ToolError {
        ToolError::BadArguments {
            tool: <Self as Tool>::NAME.into(),
            message: format!("{why}; nothing was sent to the database"),
        }
    }
}

#[async_trait]
impl Tool for ExplainAnalyzeTool {
    const NAME: &'static str = "postgres.explain_analyze";
    const DESCRIPTION: &'static str = "Write (needs human approval): EXPLAIN (ANALYZE, BUFFERS) of one complete SELECT. It EXECUTES the statement, as the read-only monitoring role, in a READ ONLY transaction that is rolled back, under statement_timeout, so it costs what the query costs. Statements that write, lock rows or call volatile functions are refused before anything is sent. Prefer postgres.explain.";
    const RISK: RiskClass = RiskClass::Write;
    type Args = ExplainAnalyzeArgs;
    type Output = PgAnswer<PlanSummary>;

    crate::collectors::postgres::database_tool!();

    /// Refuses, when the request is filed, a statement that the checks made without the
    /// database already refuse.
    fn bind(&self, args: Value) -> Result<Value, ToolError> {
        let a: ExplainAnalyzeArgs =
            serde_json::from_value(args.clone()).map_err(|e| ToolError::BadArguments {
                tool: Self::NAME.into(),
                message: e.to_string(),
            })?;
        check_read_statement(&a.sql).map_err(Self::refused)?;
        Ok(args)
    }

    fn dry_run(&self, a: &ExplainAnalyzeArgs) -> Option<Value> {
        let read = check_read_statement(&a.sql).ok()?;
        let (db, settings) = self.dbs.resolve(a.database.as_deref()).ok()?;
        Some(serde_json::json!({
            "kind": "sql",
            "database": db,
            "as": format!("the read-only monitoring role of postgres.{db}.url (never action_url)"),
            "would_run": format!(
                "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}; ROLLBACK",
                settings.statement_timeout_ms, read.sql
            ),
            "functions": read.functions.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "refused_if": "any function it calls is marked volatile in pg_proc and is not on the allow list",
        }))
    }

    async fn call(&self, a: ExplainAnalyzeArgs) -> Result<Self::Output, ToolError> {
        let read = check_read_statement(&a.sql).map_err(Self::refused)?;
        let name = a.database.clone();
        let (db, settings) = match self.dbs.resolve(name.as_deref()) {
            Ok(x) => x,
            Err(p) => return Ok(PgAnswer::problem(name.as_deref().unwrap_or("?"), p)),
        };
        // The monitoring role (url), whose sessions default to read-only: never action_url.
        let client = match connect(&db, &settings, false).await {
            Ok(c) => c,
            Err(p) => return Ok(PgAnswer::problem(&db, p)),
        };
        let ran = analyze_read_only(&client, &read, settings.statement_timeout_ms).await;
        // Whatever happened, nothing of it stays.
        let _ = client.batch_execute("ROLLBACK").await;
        match ran {
            Ok(Analyzed::Plan(plan)) => Ok(match summarize(&plan, &read.sql, None) {
                Ok(s) => PgAnswer::ok(&db, s),
                Err(e) => PgAnswer::problem(&db, failed(e)),
            }),
            Ok(Analyzed::Volatile(f)) => Err(Self::refused(StatementRefused::Volatile(f))),
            Err(e) => {
                let mut p = classify(&db, &settings, &e);
                if p.kind == ProblemKind::Timeout {
                    p.message = format!(
                        "{db}: EXPLAIN ANALYZE was stopped by statement_timeout after {} ms and rolled back: the statement runs longer than that",
                        settings.statement_timeout_ms
                    );
                    p.hint = format!(
                        "use postgres.explain (nothing executed) for its plan, or narrow the statement; postgres.{db}.statement_timeout_ms sets the limit"
                    );
                }
                Ok(PgAnswer::problem(&db, p))
            }
        }
    }
}

/// What the read-only run gave: a plan, or the volatile function that stopped it before the
/// statement was sent.
enum Analyzed {
    Plan(Value),
    Volatile(String),
}

/// In a READ ONLY transaction with its statement_timeout (the caller rolls it back): asks which
/// of the statement's functions are volatile, and only if none is refused, EXPLAIN ANALYZEs it.
async fn analyze_read_only(
    client: &tokio_postgres::Client,
    read: &ReadStatement,
    timeout_ms: u64,
) -> Result<Analyzed, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "{} BEGIN READ ONLY; SET LOCAL statement_timeout = {timeout_ms}",
            MARK
        ))
        .await?;
    if !read.functions.is_empty() {
        let found = candidates(client, &read.functions).await?;
        if let Some(f) = first_volatile(&read.functions, &found) {
            return Ok(Analyzed::Volatile(f));
        }
    }
    let row = client
        .query_one(
            &format!(
                "{} EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}",
                MARK, read.sql
            ),
            &[],
        )
        .await?;
    Ok(Analyzed::Plan(row.try_get::<_, Value>(0)?))
}
