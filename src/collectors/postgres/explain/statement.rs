//! The checks made before EXPLAIN ANALYZE sends a statement: parsed, exactly one, only reading,
//! calling no function refused by name; and the volatility verdict on the functions it calls.

use serde::Serialize;
use std::ops::ControlFlow;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
