//! Plans: `postgres.explain` (EXPLAIN of a statement pg_stat_statements shows, summarized to the
//! costly nodes) and `postgres.explain_analyze` (EXPLAIN ANALYZE executes the statement, so it is
//! a `write` tool that needs an approval).
//!
//! pg_stat_statements stores statements with `$n` placeholders. PostgreSQL 15 cannot EXPLAIN
//! those directly, so `postgres.explain` prepares the statement and explains its GENERIC plan
//! (`plan_cache_mode = force_generic_plan`, NULL parameters), inside a read-only transaction that
//! is rolled back: nothing is executed.

use super::{Databases, PgAnswer, ask, evidence_sql, tables_in};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::LazyLock;

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

/// A plan node worth a look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The node's own cost (its total minus its children's).
    pub self_cost: f64,
    pub plan_rows: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_rows: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_removed_by_filter: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_space: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loops: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queryid: Option<i64>,
    pub query: String,
    pub tables: Vec<String>,
    pub total_cost: f64,
    pub plan_rows: f64,
    /// The costliest nodes, most expensive first.
    pub costly_nodes: Vec<PlanNode>,
    /// Plain-language findings: seq scans of big tables with a filter, sorts spilling to disk,
    /// nested loops with large inner sides.
    pub findings: Vec<String>,
    pub analyzed: bool,
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .map(|s| evidence_sql(s, 160))
}

fn walk(plan: &Value, out: &mut Vec<PlanNode>, findings: &mut Vec<String>) {
    let children: Vec<&Value> = plan
        .get("Plans")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let child_cost: f64 = children.iter().map(|c| num(c, "Total Cost")).sum();
    let node = PlanNode {
        node: plan
            .get("Node Type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        relation: plan
            .get("Relation Name")
            .and_then(Value::as_str)
            .map(str::to_string),
        index: plan
            .get("Index Name")
            .and_then(Value::as_str)
            .map(str::to_string),
        self_cost: ((num(plan, "Total Cost") - child_cost).max(0.0) * 10.0).round() / 10.0,
        plan_rows: num(plan, "Plan Rows"),
        filter: text(plan, "Filter"),
        actual_rows: plan.get("Actual Rows").and_then(Value::as_f64),
        rows_removed_by_filter: plan.get("Rows Removed by Filter").and_then(Value::as_f64),
        actual_ms: plan.get("Actual Total Time").and_then(Value::as_f64),
        sort_space: plan
            .get("Sort Space Type")
            .and_then(Value::as_str)
            .map(|t| format!("{t} {} kB", num(plan, "Sort Space Used"))),
        loops: plan.get("Actual Loops").and_then(Value::as_f64),
    };
    if node.node == "Seq Scan" && node.filter.is_some() {
        let rel = node.relation.clone().unwrap_or_default();
        match node.rows_removed_by_filter {
            Some(removed) => findings.push(format!(
                "Seq Scan on {rel} removed {removed} rows by filter {} to return {}",
                node.filter.clone().unwrap_or_default(),
                node.actual_rows.unwrap_or(0.0)
            )),
            None => findings.push(format!(
                "Seq Scan on {rel} with filter {} (no index used; cost {})",
                node.filter.clone().unwrap_or_default(),
                node.self_cost
            )),
        }
    }
    if node
        .sort_space
        .as_deref()
        .is_some_and(|s| s.starts_with("Disk"))
    {
        findings.push(format!(
            "Sort spilled to disk ({})",
            node.sort_space.clone().unwrap_or_default()
        ));
    }
    if node.node == "Nested Loop"
        && let Some(inner) = children.get(1)
    {
        let inner_rows = num(inner, "Plan Rows")
            * inner
                .get("Actual Loops")
                .and_then(Value::as_f64)
                .unwrap_or(num(children[0], "Plan Rows"));
        if inner_rows > 100_000.0 {
            findings.push(format!(
                "Nested Loop with a large inner side (~{inner_rows} rows visited)"
            ));
        }
    }
    out.push(node);
    for c in children {
        walk(c, out, findings);
    }
}

/// Summarizes EXPLAIN (FORMAT JSON) output.
pub fn summarize(
    explain: &Value,
    query: &str,
    queryid: Option<i64>,
) -> Result<PlanSummary, String> {
    let top = explain
        .get(0)
        .and_then(|v| v.get("Plan"))
        .ok_or("EXPLAIN returned no plan")?;
    let mut nodes = vec![];
    let mut findings = vec![];
    walk(top, &mut nodes, &mut findings);
    let analyzed = top.get("Actual Rows").is_some();
    nodes.sort_by(|a, b| b.self_cost.total_cmp(&a.self_cost));
    nodes.truncate(4);
    Ok(PlanSummary {
        queryid,
        query: evidence_sql(query, 300),
        tables: tables_in(query),
        total_cost: num(top, "Total Cost"),
        plan_rows: num(top, "Plan Rows"),
        costly_nodes: nodes,
        findings,
        analyzed,
    })
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

pub struct ExplainAnalyzeTool {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for ExplainAnalyzeTool {
    const NAME: &'static str = "postgres.explain_analyze";
    const DESCRIPTION: &'static str = "Write (needs human approval): EXPLAIN (ANALYZE, BUFFERS) of one complete SQL statement. It EXECUTES the statement inside a transaction that is rolled back, so it costs what the query costs. Prefer postgres.explain.";
    const RISK: RiskClass = RiskClass::Write;
    type Args = ExplainAnalyzeArgs;
    type Output = PgAnswer<PlanSummary>;

    crate::collectors::postgres::database_tool!();

    async fn call(&self, a: ExplainAnalyzeArgs) -> Result<Self::Output, ToolError> {
        let sql = a.sql.trim().trim_end_matches(';').to_string();
        if sql.contains(';') || !explainable(&sql) {
            return Err(ToolError::BadArguments {
                tool: Self::NAME.into(),
                message: "sql must be exactly one SELECT, INSERT, UPDATE or DELETE statement"
                    .into(),
            });
        }
        let name = a.database.clone();
        let q = sql.clone();
        let (db, settings) = match self.dbs.resolve(name.as_deref()) {
            Ok(x) => x,
            Err(p) => return Ok(PgAnswer::problem(name.as_deref().unwrap_or("?"), p)),
        };
        let client = match super::connect(&db, &settings, true).await {
            Ok(c) => c,
            Err(p) => return Ok(PgAnswer::problem(&db, p)),
        };
        let answer: PgAnswer<Value> = match async {
            client.batch_execute("/* oncall */ BEGIN").await?;
            let r = client
                .query_one(
                    &format!(
                        "{} EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {q}",
                        super::MARK
                    ),
                    &[],
                )
                .await;
            let _ = client.batch_execute("ROLLBACK").await;
            r.map(|row| row.get::<_, Value>(0))
        }
        .await
        {
            Ok(v) => PgAnswer::ok(&db, v),
            Err(e) => PgAnswer::problem(&db, super::classify(&db, &settings, &e)),
        };
        Ok(match answer {
            PgAnswer {
                data: Some(plan), ..
            } => match summarize(&plan, &sql, None) {
                Ok(s) => PgAnswer::ok(&db, s),
                Err(e) => PgAnswer::problem(&db, failed(e)),
            },
            PgAnswer { problem, .. } => {
                PgAnswer::problem(&db, problem.unwrap_or_else(|| failed("no plan")))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_finds_the_filtered_seq_scan_and_the_disk_sort() {
        let plan = json!([{"Plan": {"Node Type": "Sort", "Total Cost": 20000.0, "Plan Rows": 10.0, "Sort Space Type": "Disk", "Sort Space Used": 5120.0, "Actual Rows": 10.0,
            "Plans": [{"Node Type": "Seq Scan", "Relation Name": "orders", "Total Cost": 18000.0, "Plan Rows": 10.0, "Filter": "(customer_ref = 'abc'::text)", "Actual Rows": 10.0, "Rows Removed by Filter": 999990.0}]}}]);
        let s = summarize(
            &plan,
            "SELECT * FROM orders WHERE customer_ref = $1 ORDER BY id",
            Some(7),
        )
        .unwrap();
        assert!(s.analyzed);
        assert_eq!(s.tables, vec!["orders"]);
        assert_eq!(s.costly_nodes[0].node, "Seq Scan");
        assert_eq!(s.costly_nodes[0].self_cost, 18000.0);
        assert!(
            s.findings[1].contains("Seq Scan on orders removed 999990 rows"),
            "{:?}",
            s.findings
        );
        assert!(
            s.findings[0].contains("Sort spilled to disk"),
            "{:?}",
            s.findings
        );
        assert!(
            !s.costly_nodes[0].filter.as_deref().unwrap().contains("abc"),
            "literals are dropped from evidence"
        );
        assert!(summarize(&json!([]), "x", None).is_err());
    }

    #[test]
    fn only_dml_is_explainable() {
        assert!(explainable("  SELECT 1"));
        assert!(explainable("with x as (select 1) select * from x"));
        assert!(!explainable("VACUUM orders"));
        assert!(!explainable("ALTER TABLE t ADD c int"));
    }
}
