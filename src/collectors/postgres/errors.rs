//! Driver errors turned into problems that say what is wrong and how to fix it.

use super::{PgProblem, ProblemKind, problem};
use crate::config::PgSettings;
use tokio_postgres::error::SqlState;

/// Turns a driver error into a problem with a fix.
pub fn classify(name: &str, s: &PgSettings, e: &tokio_postgres::Error) -> PgProblem {
    let where_ = redact_url(&s.url);
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let msg = db.message().to_string();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            problem(
                ProblemKind::AuthFailed,
                format!("{name}: {msg}"),
                format!("check the user and password for {where_} (password_env)"),
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            problem(
                ProblemKind::NoSuchDatabase,
                format!("{name}: {msg}"),
                format!("fix the database name in postgres.{name}.url"),
            )
        } else if *code == SqlState::TOO_MANY_CONNECTIONS
            || msg.contains("remaining connection slots are reserved")
        {
            problem(
                ProblemKind::TooManyConnections,
                format!("{name}: {msg}"),
                "connections are exhausted: see which application holds them (postgres.connections needs a free slot too)",
            )
        } else if *code == SqlState::QUERY_CANCELED {
            problem(
                ProblemKind::Timeout,
                format!("{name}: {msg}"),
                format!(
                    "the query hit statement_timeout ({} ms): the database is overloaded, or raise postgres.{name}.statement_timeout_ms",
                    s.statement_timeout_ms
                ),
            )
        } else if *code == SqlState::UNDEFINED_TABLE && msg.contains("pg_stat_statements")
            || msg.contains("pg_stat_statements must be loaded")
        {
            problem(
                ProblemKind::MissingExtension,
                format!("{name}: pg_stat_statements is not installed ({msg})"),
                "CREATE EXTENSION pg_stat_statements; and add it to shared_preload_libraries (restart needed)",
            )
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            problem(
                ProblemKind::PermissionDenied,
                format!("{name}: {msg}"),
                "GRANT pg_monitor TO the oncall role; postgres.explain also needs SELECT on the tables: GRANT pg_read_all_data TO it (PostgreSQL 14+)",
            )
        } else {
            problem(
                ProblemKind::QueryFailed,
                format!("{name}: {msg} (SQLSTATE {})", code.code()),
                "see the PostgreSQL log for details",
            )
        };
    }
    let text = e.to_string();
    let low = text.to_lowercase();
    let source = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    if low.contains("timed out") || source.contains("timed out") {
        problem(
            ProblemKind::Unreachable,
            format!("{name}: connecting to {where_} timed out"),
            "check host, port, firewall",
        )
    } else if e.is_closed() || low.contains("connection") || !source.is_empty() {
        problem(
            ProblemKind::Unreachable,
            format!("{name}: cannot reach {where_}: {text} {source}")
                .trim()
                .to_string(),
            "is PostgreSQL running, and is the host and port right?",
        )
    } else {
        problem(
            ProblemKind::QueryFailed,
            format!("{name}: {text}"),
            "see the PostgreSQL log for details",
        )
    }
}

/// A URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    crate::redact::redact(url)
}
