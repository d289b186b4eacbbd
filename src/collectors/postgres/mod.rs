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

use crate::config::{Config, PgSettings};
use crate::pg::{ConnectError, PoolGauge, Prepared, Target};
use deadpool_postgres::{Pool, PoolError};
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

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

/// The configured databases, shared by the postgres tools, with one pool of read-only sessions
/// per database (deadpool-postgres). A database that could not be reached is remembered for a
/// few seconds, so parallel tools asking it fail at once instead of each waiting out the
/// connect timeout.
#[derive(Clone)]
pub struct Databases {
    dbs: Arc<BTreeMap<String, PgSettings>>,
    pools: Arc<BTreeMap<String, Result<Pool, PgProblem>>>,
    down: Arc<std::sync::Mutex<BTreeMap<String, (PgProblem, Instant)>>>,
    /// Held by the caller that opens a pool's first session while the others wait for it.
    opening: Arc<BTreeMap<String, tokio::sync::Mutex<()>>>,
}

/// A pooled session; it derefs to [`tokio_postgres::Client`] and goes back to the pool when
/// dropped.
pub type PgClient = deadpool_postgres::Object;

/// How long a failed connection attempt is remembered.
const DOWN_FOR: Duration = Duration::from_secs(10);

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

impl Databases {
    /// One pool per configured database. Nothing connects yet; a database whose URL or TLS
    /// settings are wrong answers every tool with that problem.
    pub fn from_config(c: &Config) -> Databases {
        let pools = c
            .postgres
            .iter()
            .map(|(name, s)| {
                let pool = prepare(name, s, false).and_then(|p| {
                    p.pool(s.pool_max_size, Duration::from_secs(s.pool_wait_timeout_s))
                        .map_err(|e| connect_problem(name, s, false, e))
                });
                (name.clone(), pool)
            })
            .collect();
        Databases {
            dbs: Arc::new(c.postgres.clone()),
            pools: Arc::new(pools),
            down: Default::default(),
            opening: Arc::new(
                c.postgres
                    .keys()
                    .map(|k| (k.clone(), tokio::sync::Mutex::new(())))
                    .collect(),
            ),
        }
    }

    /// A recent failure to reach a database, if there is one.
    fn remembered(&self, name: &str) -> Option<PgProblem> {
        let down = self.down.lock().ok()?;
        down.get(name)
            .filter(|(_, at)| at.elapsed() < DOWN_FOR)
            .map(|(p, _)| p.clone())
    }

    /// The pools, named by database, for `/metrics`.
    pub fn pools(&self) -> Vec<PoolGauge> {
        self.pools
            .iter()
            .filter_map(|(name, p)| {
                p.as_ref().ok().map(|pool| PoolGauge {
                    name: name.clone(),
                    pool: pool.clone(),
                })
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.dbs.keys().cloned().collect()
    }

    /// Resolves the `database` argument to a configured name.
    pub fn resolve(&self, arg: Option<&str>) -> Result<(String, PgSettings), PgProblem> {
        let names = self.names().join(", ");
        match arg {
            Some(n) => self
                .dbs
                .get(n)
                .map(|s| (n.to_string(), s.clone()))
                .ok_or_else(|| {
                    problem(
                        ProblemKind::NotConfigured,
                        format!("no database named `{n}` is configured"),
                        format!("use one of: {names}"),
                    )
                }),
            None if self.dbs.len() == 1 => Ok(self
                .dbs
                .iter()
                .next()
                .map(|(n, s)| (n.clone(), s.clone()))
                .unwrap_or_default()),
            None if self.dbs.is_empty() => Err(problem(
                ProblemKind::NotConfigured,
                "no PostgreSQL database is configured",
                "add [postgres.<name>] url = \"postgres://oncall@host:5432/db\" to oncall.toml",
            )),
            None => Err(problem(
                ProblemKind::NotConfigured,
                "several databases are configured; name one",
                format!("database is one of: {names}"),
            )),
        }
    }

    /// A read-only session from the database's pool: an idle one, else a new one (a closed
    /// session is replaced, not handed out). When the database refuses new sessions because
    /// its slots are taken, the caller waits for a session the pool already holds (up to
    /// `pool_wait_timeout_s`), so parallel tools share the slots oncall has.
    pub async fn client(&self, name: &str, s: &PgSettings) -> Result<PgClient, PgProblem> {
        let pool = match self.pools.get(name) {
            Some(Ok(p)) => p,
            Some(Err(p)) => return Err(p.clone()),
            None => {
                return Err(problem(
                    ProblemKind::NotConfigured,
                    format!("no database named `{name}` is configured"),
                    "add it under [postgres.<name>]",
                ));
            }
        };
        if let Some(p) = self.remembered(name) {
            return Err(p);
        }
        // While the pool holds no session, one caller opens the first and the others wait for
        // its outcome: an unreachable database costs one connect timeout, not one per tool.
        let _first = match (pool.status().size, self.opening.get(name)) {
            (0, Some(lock)) => Some(lock.lock().await),
            _ => None,
        };
        if let Some(p) = self.remembered(name) {
            return Err(p);
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs(s.pool_wait_timeout_s);
        loop {
            let p = match pool.get().await {
                Ok(c) => {
                    if let Ok(mut down) = self.down.lock() {
                        down.remove(name);
                    }
                    return Ok(c);
                }
                Err(e) => pool_problem(name, s, pool, &e),
            };
            let status = pool.status();
            // Slots are taken, but the pool holds a session (or another caller may be opening
            // one this moment): wait for it rather than fail.
            if p.kind == ProblemKind::TooManyConnections
                && (status.size > 0
                    || (status.waiting > 0 && started.elapsed() < Duration::from_secs(2)))
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if status.size == 0
                && p.kind != ProblemKind::Timeout
                && let Ok(mut down) = self.down.lock()
            {
                down.insert(name.to_string(), (p.clone(), Instant::now()));
            }
            return Err(p);
        }
    }

    /// Adds the configured names to a schema's `database` property.
    pub fn patch_schema(&self, schema: &mut Value) {
        if let Some(p) = schema.pointer_mut("/properties/database")
            && !self.dbs.is_empty()
        {
            p["enum"] = Value::Array(
                self.dbs
                    .keys()
                    .map(|k| Value::String(k.clone()))
                    .chain([Value::Null])
                    .collect(),
            );
        }
    }
}

/// The session target of a database: the read-only role (`url`), or for `for_action` the
/// action role (`action_url` when set), with oncall's session settings.
fn prepare(name: &str, s: &PgSettings, for_action: bool) -> Result<Prepared, PgProblem> {
    let action = for_action && !s.action_url.trim().is_empty();
    let (what, url, password_env) = if action {
        let env = if s.action_password_env.is_empty() {
            &s.password_env
        } else {
            &s.action_password_env
        };
        (format!("postgres.{name}.action_url"), &s.action_url, env)
    } else {
        (format!("postgres.{name}.url"), &s.url, &s.password_env)
    };
    Target {
        what: &what,
        url,
        password_env,
        sslmode: s.sslmode,
        sslrootcert: s.sslrootcert.clone(),
        application_name: "oncall",
        connect_timeout: Duration::from_secs(s.connect_timeout_s),
        settings: vec![
            ("statement_timeout", s.statement_timeout_ms.to_string()),
            (
                "default_transaction_read_only",
                if for_action { "off" } else { "on" }.to_string(),
            ),
        ],
    }
    .prepare()
    .map_err(|e| connect_problem(name, s, action, e))
}

fn connect_problem(name: &str, s: &PgSettings, action: bool, e: ConnectError) -> PgProblem {
    match e {
        ConnectError::BadUrl { what, reason } => problem(
            ProblemKind::QueryFailed,
            format!("{what} cannot be parsed: {reason}"),
            "use postgres://user@host:5432/dbname",
        ),
        ConnectError::PasswordUnset(var) => problem(
            ProblemKind::AuthFailed,
            format!("the password variable {var} is not set"),
            format!(
                "export {var}=... or clear postgres.{name}.{}",
                if action && !s.action_password_env.is_empty() {
                    "action_password_env"
                } else {
                    "password_env"
                }
            ),
        ),
        ConnectError::Tls(m) => problem(
            ProblemKind::Tls,
            format!("{name}: {m}"),
            format!("fix postgres.{name}.sslmode / sslrootcert (or ?sslmode= in the URL)"),
        ),
        ConnectError::Pool(m) => problem(ProblemKind::QueryFailed, format!("{name}: {m}"), ""),
    }
}

/// A failure to get a pooled session, with a fix.
fn pool_problem(name: &str, s: &PgSettings, pool: &Pool, e: &PoolError) -> PgProblem {
    match e {
        PoolError::Backend(e) => classify_connect(name, s, false, e),
        PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => problem(
            ProblemKind::Timeout,
            format!(
                "{name}: all {} pooled connections stayed busy for {} s",
                pool.status().max_size,
                s.pool_wait_timeout_s
            ),
            format!(
                "the tools hold every connection: raise postgres.{name}.pool_max_size or pool_wait_timeout_s"
            ),
        ),
        PoolError::Timeout(_) => problem(
            ProblemKind::Unreachable,
            format!(
                "database {name} did not accept a connection within {} s",
                s.connect_timeout_s
            ),
            "check host, port and network path",
        ),
        other => problem(
            ProblemKind::QueryFailed,
            format!("{name}: {other}"),
            "see the PostgreSQL log for details",
        ),
    }
}

/// A failure to open a session: TLS in clear words when TLS caused it, else [`classify`].
fn classify_connect(
    name: &str,
    s: &PgSettings,
    for_action: bool,
    e: &tokio_postgres::Error,
) -> PgProblem {
    if let Ok(p) = prepare(name, s, for_action)
        && let Some(m) = p.explain_tls(e)
    {
        return problem(
            ProblemKind::Tls,
            format!("{name}: {m}"),
            format!("fix postgres.{name}.sslmode / sslrootcert, or the server's certificate"),
        );
    }
    classify(name, s, e)
}

/// One session outside the pool, with oncall's session settings: the backend actions
/// (`for_action`: `action_url` when set, not read-only) and EXPLAIN in its own transaction.
pub async fn connect(name: &str, s: &PgSettings, for_action: bool) -> Result<Client, PgProblem> {
    let target = prepare(name, s, for_action)?;
    tokio::time::timeout(
        Duration::from_secs(s.connect_timeout_s + 1),
        target.connect(),
    )
    .await
    .map_err(|_| {
        problem(
            ProblemKind::Unreachable,
            format!(
                "database {name} did not accept a connection within {} s",
                s.connect_timeout_s
            ),
            "check host, port and network path",
        )
    })?
    .map_err(|e| classify_connect(name, s, for_action, &e))
}

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

static STRING_LITERAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"'(?:[^']|'')*'").ok());
static NUMBER_LITERAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(\$?)\b\d+(?:\.\d+)?\b").ok());

/// Query text as evidence: literals replaced (pg_stat_statements normalizes most, but not
/// utility statements), secrets redacted, whitespace collapsed, length capped.
pub fn evidence_sql(query: &str, max_chars: usize) -> String {
    let q = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let q = STRING_LITERAL
        .as_ref()
        .map(|r| r.replace_all(&q, "'?'").into_owned())
        .unwrap_or(q);
    // Numbers become `?`, but `$1` placeholders stay as they are.
    let q = NUMBER_LITERAL
        .as_ref()
        .map(|r| {
            r.replace_all(&q, |c: &regex::Captures| {
                if c[1].is_empty() {
                    "?".to_string()
                } else {
                    c[0].to_string()
                }
            })
            .into_owned()
        })
        .unwrap_or(q);
    let q = crate::redact::redact(&q);
    if q.chars().count() > max_chars {
        format!("{}...", q.chars().take(max_chars).collect::<String>())
    } else {
        q
    }
}

static TABLE_REF: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(?:from|join|update|into)\s+(?:only\s+)?((?:"?[a-z_][a-z0-9_$]*"?\.)?"?[a-z_][a-z0-9_$]*"?)"#).ok()
});

/// Tables a statement names (FROM, JOIN, UPDATE, INSERT INTO), without schema.
pub fn tables_in(query: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    if let Some(re) = TABLE_REF.as_ref() {
        for c in re.captures_iter(query) {
            if let Some(m) = c.get(1) {
                let t = m
                    .as_str()
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string();
                if !t.starts_with("pg_")
                    && !out.contains(&t)
                    && !["select", "lateral"].contains(&t.to_lowercase().as_str())
                {
                    out.push(t);
                }
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_sql_drops_literals_and_secrets() {
        assert_eq!(
            evidence_sql("SELECT * FROM t WHERE a = 'x''y' AND b = 42", 200),
            "SELECT * FROM t WHERE a = '?' AND b = ?"
        );
        let s = evidence_sql("ALTER ROLE app PASSWORD 'hunter2'", 200);
        assert!(!s.contains("hunter2"), "{s}");
        assert!(evidence_sql(&"x ".repeat(500), 20).ends_with("..."));
        assert_eq!(evidence_sql("select $1, $2, 7", 50), "select $1, $2, ?");
        assert_eq!(
            evidence_sql("SELECT * FROM t WHERE id = $12", 50),
            "SELECT * FROM t WHERE id = $12"
        );
    }

    #[test]
    fn tables_named_by_a_statement() {
        assert_eq!(
            tables_in(
                "SELECT * FROM public.orders o JOIN customers c ON c.id = o.cid WHERE x = $1"
            ),
            vec!["orders", "customers"]
        );
        assert_eq!(
            tables_in("UPDATE \"Accounts\" SET a = $1"),
            vec!["Accounts"]
        );
        assert_eq!(
            tables_in("INSERT INTO audit_log VALUES ($1)"),
            vec!["audit_log"]
        );
        assert!(tables_in("SELECT 1").is_empty());
    }

    #[test]
    fn database_argument_resolution() {
        let mut c = Config::default();
        let dbs = Databases::from_config(&c);
        assert_eq!(
            dbs.resolve(None).unwrap_err().kind,
            ProblemKind::NotConfigured
        );
        c.postgres.insert(
            "app".into(),
            PgSettings {
                url: "postgres://x@h/app".into(),
                ..Default::default()
            },
        );
        let dbs = Databases::from_config(&c);
        assert_eq!(dbs.resolve(None).unwrap().0, "app");
        assert!(
            dbs.resolve(Some("billing"))
                .unwrap_err()
                .hint
                .contains("app")
        );
        let mut schema = serde_json::json!({"properties": {"database": {}}});
        dbs.patch_schema(&mut schema);
        assert_eq!(schema["properties"]["database"]["enum"][0], "app");
    }
}
