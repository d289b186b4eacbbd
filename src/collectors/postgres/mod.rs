//! PostgreSQL collectors: what the database's own views say about a symptom.
//!
//! Databases are configured by name (`[postgres.<name>] url = ...`) and reached with a read-only
//! role. Every session sets `application_name = 'oncall'` and `statement_timeout`, and every
//! query oncall sends starts with the `/* oncall */` marker, so oncall's own sessions and
//! statements are left out of every finding. A database that cannot be reached, refuses the
//! login, lacks pg_stat_statements or times out is not a tool failure: the tool answers with a
//! [`PgProblem`] that says what is wrong and how to fix it, because an unreachable database is
//! itself evidence.
//!
//! One room per view: [`statements`] (pg_stat_statements deltas), [`activity`]
//! (pg_stat_activity), [`blocking`] (pg_blocking_pids and pg_locks), [`connections`],
//! [`tables`] (pg_stat_user_tables) and [`explain`] (plans).

/// What every database tool shares: it is offered only when a database is configured, and its
/// `database` argument lists the configured names. Expands inside an `impl Tool for ...` block
/// of a struct with a `dbs: Databases` field.
macro_rules! database_tool {
    () => {
        fn available(&self) -> bool {
            !self.dbs.is_empty()
        }

        fn patch_schema(&self, schema: &mut serde_json::Value) {
            self.dbs.patch_schema(schema);
        }
    };
}
pub(crate) use database_tool;

pub mod activity;
pub mod blocking;
pub mod connections;
pub mod explain;
pub mod statements;
pub mod tables;

mod databases;
mod errors;
mod sql;

use crate::config::PgSettings;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use databases::{Databases, PgClient, connect};
pub use errors::{classify, redact_url};
pub use sql::{evidence_sql, tables_in};

/// The marker that starts every statement oncall sends.
pub const MARK: &str = "/* oncall */";

/// What kind of trouble reaching or querying a database was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    NotConfigured,
    Unreachable,
    AuthFailed,
    NoSuchDatabase,
    TooManyConnections,
    MissingExtension,
    /// TLS: a certificate that does not match or is not trusted, a server without TLS, a
    /// missing root certificate file, or a server that wants TLS when sslmode is disable.
    Tls,
    Timeout,
    PermissionDenied,
    QueryFailed,
}

/// Why a database could not answer, with the fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgProblem {
    pub kind: ProblemKind,
    pub message: String,
    pub hint: String,
}

/// Every postgres tool answers with this: data, or the problem that prevented it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: serde::de::DeserializeOwned"))]
pub struct PgAnswer<T> {
    pub database: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<PgProblem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

impl<T> PgAnswer<T> {
    pub fn ok(database: &str, data: T) -> Self {
        PgAnswer {
            database: database.into(),
            reachable: true,
            problem: None,
            data: Some(data),
        }
    }
    pub fn problem(database: &str, p: PgProblem) -> Self {
        // A query that failed on a live connection still means the database answered.
        let reachable = !matches!(
            p.kind,
            ProblemKind::Unreachable
                | ProblemKind::AuthFailed
                | ProblemKind::NoSuchDatabase
                | ProblemKind::TooManyConnections
                | ProblemKind::NotConfigured
                | ProblemKind::Tls
        );
        PgAnswer {
            database: database.into(),
            reachable,
            problem: Some(p),
            data: None,
        }
    }
}

/// The `database` argument every postgres tool takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseArg {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
}

fn problem(kind: ProblemKind, message: impl Into<String>, hint: impl Into<String>) -> PgProblem {
    PgProblem {
        kind,
        message: message.into(),
        hint: hint.into(),
    }
}

/// Resolves the database, connects, runs `f`, and turns every failure into a [`PgAnswer`]
/// problem. The common path of every postgres read tool.
pub async fn ask<T, F, Fut>(dbs: &Databases, database: Option<&str>, f: F) -> PgAnswer<T>
where
    F: FnOnce(PgClient, PgSettings) -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let (name, s) = match dbs.resolve(database) {
        Ok(x) => x,
        Err(p) => return PgAnswer::problem(database.unwrap_or("?"), p),
    };
    let client = match dbs.client(&name, &s).await {
        Ok(c) => c,
        Err(p) => return PgAnswer::problem(&name, p),
    };
    match f(client, s.clone()).await {
        Ok(d) => PgAnswer::ok(&name, d),
        Err(e) => PgAnswer::problem(&name, classify(&name, &s, &e)),
    }
}
