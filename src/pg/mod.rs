//! PostgreSQL connections shared by the collectors, the backend actions and the incident store:
//! a URL with libpq's TLS parameters turned into a driver config and a rustls connector
//! ([`tls`]), session settings applied at connect time, pools (deadpool-postgres) and their
//! numbers for `/metrics`.
//!
//! This module connects; it never decides what a failure means for an investigation or a
//! request: the collectors turn errors into evidence, the store into its own error.

pub mod tls;

use crate::config::{SslMode, split_tls_params};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use tls::Tls;

/// A connection that could not even be attempted, or a pool that could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    #[error("{what} cannot be parsed: {reason}")]
    BadUrl { what: String, reason: String },
    #[error("the password variable {0} is not set")]
    PasswordUnset(String),
    #[error("{0}")]
    Tls(String),
    #[error("the connection pool cannot be built: {0}")]
    Pool(String),
}

/// Everything needed to open sessions to one database as one role.
pub struct Target<'a> {
    /// For messages: `postgres.app.url`, `server.database_url`.
    pub what: &'a str,
    pub url: &'a str,
    /// Name of the environment variable holding the password (empty: none).
    pub password_env: &'a str,
    /// The TLS settings beside the URL; they win over the URL's own.
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
    pub application_name: &'a str,
    pub connect_timeout: Duration,
    /// Server settings every session starts with (`-c name=value` options).
    pub settings: Vec<(&'static str, String)>,
}

/// A target ready to connect: the driver's config and the connector.
#[derive(Clone)]
pub struct Prepared {
    pub config: tokio_postgres::Config,
    pub connector: MakeRustlsConnect,
    pub tls: Tls,
    /// The host connected to, as the URL names it (for messages).
    pub host: String,
}

impl Target<'_> {
    /// Parses the URL (libpq's `sslmode` and `sslrootcert` included), reads the password
    /// variable and builds the TLS connector (reading the root certificate).
    pub fn prepare(&self) -> Result<Prepared, ConnectError> {
        let bad = |reason: String| ConnectError::BadUrl {
            what: self.what.to_string(),
            reason,
        };
        let (url, url_mode, url_root) =
            split_tls_params(self.url).map_err(|e| bad(e.to_string()))?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
        if !self.password_env.is_empty() {
            let p = std::env::var(self.password_env)
                .map_err(|_| ConnectError::PasswordUnset(self.password_env.to_string()))?;
            config.password(p);
        }
        let tls = Tls {
            mode: self.sslmode.or(url_mode).unwrap_or(SslMode::Prefer),
            rootcert: self.sslrootcert.clone().or(url_root),
        };
        let connector = tls.connector()?;
        config
            .ssl_mode(tls.driver_mode())
            .application_name(self.application_name)
            .connect_timeout(self.connect_timeout);
        if !self.settings.is_empty() {
            config.options(
                self.settings
                    .iter()
                    .map(|(k, v)| format!("-c {k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        Ok(Prepared {
            config,
            connector,
            tls,
            host,
        })
    }
}

impl Prepared {
    /// One session outside any pool (the backend actions, EXPLAIN in its own transaction).
    /// The connection's task runs until the client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.connector.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection closed: {e}");
            }
        });
        Ok(client)
    }

    /// A pool of sessions: at most `max_size`, a caller waits at most `wait` for one, a new
    /// session gets the connect timeout (plus a second), and a closed session is replaced
    /// rather than handed out.
    pub fn pool(&self, max_size: usize, wait: Duration) -> Result<Pool, ConnectError> {
        let create = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5))
            + Duration::from_secs(1);
        let manager = Manager::from_config(
            self.config.clone(),
            self.connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(wait))
            .create_timeout(Some(create))
            .recycle_timeout(Some(create))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| ConnectError::Pool(e.to_string()))
    }

    /// Clear words for a failed connection when TLS caused it.
    pub fn explain_tls(&self, e: &tokio_postgres::Error) -> Option<String> {
        self.tls.explain(&self.host, e)
    }
}

/// A pool's numbers at one moment, as `/metrics` exports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub max: usize,
    pub idle: usize,
    pub in_use: usize,
    pub waiting: usize,
}

impl PoolStats {
    pub fn of(pool: &Pool) -> PoolStats {
        let s = pool.status();
        PoolStats {
            max: s.max_size,
            idle: s.available,
            in_use: s.size.saturating_sub(s.available),
            waiting: s.waiting,
        }
    }
}

/// A named pool whose numbers `/metrics` reads at each scrape (`store`, or a database's name).
#[derive(Clone)]
pub struct PoolGauge {
    pub name: String,
    pub pool: Pool,
}

impl PoolGauge {
    pub fn stats(&self) -> PoolStats {
        PoolStats::of(&self.pool)
    }
}

impl std::fmt::Debug for PoolGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolGauge({}: {:?})", self.name, self.stats())
    }
}
