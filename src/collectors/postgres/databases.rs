//! The configured databases and their pools of read-only sessions, and the one-off sessions
//! outside the pool (actions, EXPLAIN); a failure to connect becomes a problem with its fix.

use super::errors::classify;
use super::{PgProblem, ProblemKind, problem};
use crate::config::{Config, PgSettings};
use crate::pg::{ConnectError, PoolGauge, Prepared, Target};
use deadpool_postgres::{Pool, PoolError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

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

#[cfg(test)]
mod tests {
    use super::*;

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
