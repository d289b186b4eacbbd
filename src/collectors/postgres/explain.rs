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

use super::{Databases, PgAnswer, ask, evidence_sql, tables_in};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ops::ControlFlow;
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

/// Functions that act on the server or on data whatever their volatility says: refused by name
/// before anything is sent (schema-qualified or not).
const DENIED: [&str; 14] = [
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "set_config",
    "nextval",
    "setval",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "dblink_exec",
];

/// Prefixes of function families refused by name (advisory locks, dblink).
const DENIED_PREFIXES: [&str; 3] = ["pg_advisory", "pg_try_advisory", "dblink"];

/// Volatile functions of `pg_catalog` that only read the clock or a random source, or wait
/// (the statement_timeout bounds the wait): a statement may call these.
pub const VOLATILE_ALLOWED: [&str; 8] = [
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
];

/// A function a statement calls, as written (unquoted names folded to lower case, as
/// PostgreSQL folds them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FunctionRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub name: String,
}

impl std::fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}()", self.name),
            None => write!(f, "{}()", self.name),
        }
    }
}

/// A statement that passed the checks made without the database: exactly one statement that
/// only reads, as oncall will send it, and the functions it calls.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadStatement {
    /// The statement as parsed and printed again: what is sent is what was checked.
    pub sql: String,
    pub functions: Vec<FunctionRef>,
}

/// Why a statement is not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementRefused {
    #[error("sql is empty; give one SELECT statement")]
    Empty,
    #[error("sql holds {0} statements; EXPLAIN ANALYZE runs exactly one")]
    Several(usize),
    #[error("sql could not be parsed ({0}); only a statement oncall can check is run")]
    Unparsable(String),
    #[error(
        "the statement writes ({0}); EXPLAIN ANALYZE executes what it explains, so only statements that read (SELECT, VALUES, WITH ... SELECT) are run"
    )]
    Writes(String),
    #[error("the statement locks rows ({0}); only statements that read are run")]
    Locks(String),
    #[error(
        "the statement calls {0}, which acts on the server or on data (cancel, terminate, reload, sequences, locks, files); it is never run"
    )]
    Denied(String),
    #[error(
        "the statement uses the operator {0}; an operator's function cannot be checked, so it is not run"
    )]
    CustomOperator(String),
    #[error(
        "the statement calls {0}, which PostgreSQL marks volatile (it may change data); only reading statements are run, and of volatile functions only {allowed}",
        allowed = VOLATILE_ALLOWED.join(", ")
    )]
    Volatile(String),
}

/// The kind of a statement for messages: `UPDATE`, `DELETE`, `CREATE TABLE`, ...
fn statement_kind(st: &sqlparser::ast::Statement) -> String {
    let text = st.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if ["CREATE", "ALTER", "DROP"].contains(&first.to_uppercase().as_str()) => {
            format!("{} {}", first.to_uppercase(), second.to_uppercase())
        }
        [first, ..] => first.to_uppercase(),
        [] => "an empty statement".into(),
    }
}

fn function_ref(name: &sqlparser::ast::ObjectName) -> FunctionRef {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_some() => i.value.clone(),
            Some(i) => i.value.to_lowercase(),
            None => p.to_string().to_lowercase(),
        })
        .collect();
    let (schema, name) = match parts.as_slice() {
        [.., s, n] => (Some(s.clone()), n.clone()),
        [n] => (None, n.clone()),
        [] => (None, String::new()),
    };
    FunctionRef { schema, name }
}

/// Walks a statement: refuses anything that writes or locks, collects the functions it calls.
#[derive(Default)]
struct Checker {
    functions: Vec<FunctionRef>,
}

impl Checker {
    fn call(&mut self, name: &sqlparser::ast::ObjectName) -> ControlFlow<StatementRefused> {
        let f = function_ref(name);
        if DENIED.contains(&f.name.as_str())
            || DENIED_PREFIXES.iter().any(|p| f.name.starts_with(p))
        {
            return ControlFlow::Break(StatementRefused::Denied(f.to_string()));
        }
        if !self.functions.contains(&f) {
            self.functions.push(f);
        }
        ControlFlow::Continue(())
    }
}

impl sqlparser::ast::Visitor for Checker {
    type Break = StatementRefused;

    fn pre_visit_statement(
        &mut self,
        st: &sqlparser::ast::Statement,
    ) -> ControlFlow<StatementRefused> {
        match st {
            sqlparser::ast::Statement::Query(_) => ControlFlow::Continue(()),
            other => ControlFlow::Break(StatementRefused::Writes(statement_kind(other))),
        }
    }

    fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<StatementRefused> {
        use sqlparser::ast::SetExpr;
        if let Some(lock) = q.locks.first() {
            return ControlFlow::Break(StatementRefused::Locks(format!("SELECT ... {lock}")));
        }
        match q.body.as_ref() {
            SetExpr::Insert(st)
            | SetExpr::Update(st)
            | SetExpr::Delete(st)
            | SetExpr::Merge(st) => ControlFlow::Break(StatementRefused::Writes(format!(
                "a data-modifying WITH or subquery: {}",
                statement_kind(st)
            ))),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_select(&mut self, s: &sqlparser::ast::Select) -> ControlFlow<StatementRefused> {
        match &s.into {
            Some(into) => ControlFlow::Break(StatementRefused::Writes(format!(
                "SELECT ... {into} creates a table"
            ))),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(
        &mut self,
        t: &sqlparser::ast::TableFactor,
    ) -> ControlFlow<StatementRefused> {
        use sqlparser::ast::TableFactor;
        match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.call(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &sqlparser::ast::Expr) -> ControlFlow<StatementRefused> {
        use sqlparser::ast::{BinaryOperator, Expr};
        match e {
            Expr::Function(f) => self.call(&f.name),
            Expr::BinaryOp {
                op: op @ BinaryOperator::PGCustomBinaryOperator(_),
                ..
            } => ControlFlow::Break(StatementRefused::CustomOperator(op.to_string())),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// The checks made before the database is asked anything: exactly one statement, one that
/// only reads (no INSERT, UPDATE, DELETE, MERGE, DDL, COPY, CALL, DO, SET, LOCK, GRANT, no
/// SELECT ... INTO, no FOR UPDATE/SHARE, no data-modifying WITH), calling none of the functions
/// refused by name. Returns the statement to send and the functions whose volatility the
/// database is then asked for.
pub fn check_read_statement(sql: &str) -> Result<ReadStatement, StatementRefused> {
    use sqlparser::ast::Visit;
    let text = sql.trim();
    if text.trim_end_matches(';').trim().is_empty() {
        return Err(StatementRefused::Empty);
    }
    let statements =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, text)
            .map_err(|e| StatementRefused::Unparsable(e.to_string()))?;
    let st = match statements.as_slice() {
        [one] => one,
        [] => return Err(StatementRefused::Empty),
        many => return Err(StatementRefused::Several(many.len())),
    };
    let mut checker = Checker::default();
    if let ControlFlow::Break(why) = st.visit(&mut checker) {
        return Err(why);
    }
    let mut functions = checker.functions;
    functions.sort();
    Ok(ReadStatement {
        sql: st.to_string(),
        functions,
    })
}

/// One row of the volatility lookup: a function the statement may resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub schema: String,
    pub name: String,
    /// `pg_proc.provolatile`: `i`, `s` or `v`.
    pub volatility: String,
    /// Whether its schema is on the session's search path (where an unqualified name resolves).
    pub on_path: bool,
}

/// The first function the statement calls that resolves (for any of its overloads) to one
/// marked volatile and not on the allow list (`pg_catalog` only: a `public.random` is not
/// `random`).
pub fn first_volatile(functions: &[FunctionRef], candidates: &[Candidate]) -> Option<String> {
    functions.iter().find_map(|f| {
        candidates
            .iter()
            .filter(|c| {
                c.name == f.name
                    && match &f.schema {
                        Some(s) => &c.schema == s,
                        None => c.on_path,
                    }
            })
            .find(|c| {
                c.volatility == "v"
                    && !(c.schema == "pg_catalog" && VOLATILE_ALLOWED.contains(&c.name.as_str()))
            })
            .map(|c| format!("{}.{}()", c.schema, c.name))
    })
}

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
        let client = match super::connect(&db, &settings, false).await {
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
                let mut p = super::classify(&db, &settings, &e);
                if p.kind == super::ProblemKind::Timeout {
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
            super::MARK
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
                super::MARK,
                read.sql
            ),
            &[],
        )
        .await?;
    Ok(Analyzed::Plan(row.try_get::<_, Value>(0)?))
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
    fn only_one_reading_statement_passes_the_parse_checks() {
        let ok = check_read_statement(
            "  select o.id, now(), Random() from orders o join lateral generate_series(1, 2) g on true where o.x = lower('A');  ",
        )
        .unwrap();
        let names: Vec<String> = ok.functions.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            names,
            ["generate_series()", "lower()", "now()", "random()"],
            "{ok:?}"
        );
        assert!(!ok.sql.ends_with(';'));
        for read in ["VALUES (1), (2)", "WITH x AS (SELECT 1) SELECT * FROM x"] {
            assert!(check_read_statement(read).is_ok(), "{read}");
        }
        assert_eq!(
            check_read_statement("SELECT \"MyFn\"(1), s.f(2)")
                .unwrap()
                .functions,
            vec![
                FunctionRef {
                    schema: None,
                    name: "MyFn".into()
                },
                FunctionRef {
                    schema: Some("s".into()),
                    name: "f".into()
                }
            ]
        );
        for (sql, why) in [
            ("", "empty"),
            ("SELECT 1; SELECT 2", "holds 2 statements"),
            ("UPDATE t SET a = 1", "writes (UPDATE)"),
            ("insert into t values (1)", "writes (INSERT)"),
            ("DELETE FROM t", "writes (DELETE)"),
            (
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
                "writes (MERGE)",
            ),
            ("TRUNCATE t", "writes (TRUNCATE)"),
            ("CREATE TABLE x (a int)", "writes (CREATE TABLE)"),
            ("ALTER TABLE t ADD c int", "writes (ALTER TABLE)"),
            ("COPY t FROM '/etc/passwd'", "writes (COPY)"),
            ("CALL p()", "writes (CALL)"),
            ("SET search_path = evil", "writes (SET)"),
            ("GRANT SELECT ON t TO x", "writes (GRANT)"),
            ("LOCK TABLE t", "writes (LOCK)"),
            ("DO $$BEGIN DELETE FROM t; END$$", "could not be parsed"),
            (
                "SELECT * INTO t2 FROM t",
                "SELECT ... INTO t2 creates a table",
            ),
            (
                "SELECT * FROM t FOR UPDATE",
                "locks rows (SELECT ... FOR UPDATE)",
            ),
            ("SELECT * FROM t FOR SHARE", "locks rows"),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "a data-modifying WITH or subquery: DELETE",
            ),
            (
                "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u",
                "a data-modifying WITH or subquery: UPDATE",
            ),
            (
                "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i",
                "a data-modifying WITH or subquery: INSERT",
            ),
            (
                "SELECT pg_terminate_backend(42)",
                "calls pg_terminate_backend()",
            ),
            (
                "SELECT PG_CATALOG.PG_CANCEL_BACKEND(42)",
                "calls pg_catalog.pg_cancel_backend()",
            ),
            (
                "SELECT 1 WHERE EXISTS (SELECT pg_reload_conf())",
                "calls pg_reload_conf()",
            ),
            ("SELECT * FROM t WHERE a = nextval('s')", "calls nextval()"),
            ("SELECT pg_advisory_lock(1)", "calls pg_advisory_lock()"),
            ("SELECT set_config('a', 'b', false)", "calls set_config()"),
            (
                "SELECT * FROM dblink('x', 'y') AS t(a int)",
                "calls dblink()",
            ),
            ("SELECT 1 OPERATOR(public.+) 2", "operator"),
            ("EXPLAIN ANALYZE DELETE FROM t", "writes (EXPLAIN)"),
            ("SELEKT 1", "could not be parsed"),
        ] {
            let e = check_read_statement(sql).unwrap_err().to_string();
            assert!(e.contains(why), "{sql}: {e}");
        }
    }

    #[test]
    fn volatile_functions_refuse_unless_allowed_in_pg_catalog() {
        let c = |schema: &str, name: &str, v: &str, on_path: bool| Candidate {
            schema: schema.into(),
            name: name.into(),
            volatility: v.into(),
            on_path,
        };
        let f = |schema: Option<&str>, name: &str| FunctionRef {
            schema: schema.map(str::to_string),
            name: name.into(),
        };
        let found = [
            c("pg_catalog", "now", "s", true),
            c("pg_catalog", "random", "v", true),
            c("pg_catalog", "pg_sleep", "v", true),
            c("public", "bump", "v", true),
            c("public", "random", "v", true),
            c("other", "lower", "v", false),
            c("pg_catalog", "lower", "i", true),
        ];
        assert_eq!(
            first_volatile(&[f(None, "now"), f(None, "pg_sleep")], &found[..3]),
            None
        );
        assert_eq!(
            first_volatile(&[f(None, "now"), f(None, "bump")], &found),
            Some("public.bump()".into())
        );
        // A volatile overload in another schema of the path counts; one off the path does not.
        assert_eq!(
            first_volatile(&[f(None, "random")], &found),
            Some("public.random()".into())
        );
        assert_eq!(first_volatile(&[f(None, "lower")], &found), None);
        assert_eq!(
            first_volatile(&[f(Some("other"), "lower")], &found),
            Some("other.lower()".into())
        );
        assert_eq!(first_volatile(&[f(None, "unknown")], &found), None);
    }

    #[test]
    fn only_dml_is_explainable() {
        assert!(explainable("  SELECT 1"));
        assert!(explainable("with x as (select 1) select * from x"));
        assert!(!explainable("VACUUM orders"));
        assert!(!explainable("ALTER TABLE t ADD c int"));
    }
}
