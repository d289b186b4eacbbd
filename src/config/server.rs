//! `[server]`: where `oncall serve` listens, its store, and how it protects itself.

use super::SslMode;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on (4318 is OTLP/HTTP's port).
    pub listen: String,
    /// Name of the environment variable holding the bearer token every request must carry.
    pub token_env: String,
    /// Largest request body accepted, bytes (after decompression too).
    pub max_body_bytes: usize,
    /// OTLP exports decoded at once; more get 503 with Retry-After.
    pub max_concurrent_exports: usize,
    /// Spans accepted per second; beyond it exports get 429 with Retry-After.
    pub max_spans_per_s: u64,
    /// Where the embedded incident store and audit log live.
    pub data_dir: PathBuf,
    /// The incident store: none means `sqlite:<data_dir>/oncall.db`; `postgres://...` lets several
    /// replicas share one PostgreSQL.
    pub database_url: Option<String>,
    /// Name of an environment variable holding the password of `database_url`'s role
    /// (optional; empty: the URL's own, if any).
    pub database_password_env: String,
    /// TLS to the store's database (`database_url`), as libpq's `sslmode`: `disable`, `prefer`,
    /// `require`, `verify-ca` or `verify-full` (see `[postgres.<name>] sslmode`). Unset: the
    /// URL's `?sslmode=`, else `prefer`.
    pub database_sslmode: Option<SslMode>,
    /// The CA certificate file (PEM) for `database_sslmode` `verify-ca` / `verify-full`. Unset:
    /// the URL's `?sslrootcert=`.
    pub database_sslrootcert: Option<PathBuf>,
    /// Connections the store may hold to its database at once (the pool's size).
    pub database_pool_max_size: usize,
    /// How long a store operation waits for a pooled connection before it fails, s.
    pub database_pool_wait_timeout_s: u64,
    /// Seconds to wait for a new connection to the store's database.
    pub database_connect_timeout_s: u64,
    /// This replica's name (default: the host name); it owns the investigations it runs.
    pub replica: Option<String>,
    /// A request taking longer is answered 503 (streams excepted).
    pub request_timeout_s: u64,
    /// Requests handled at once; beyond it new ones get 503 at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// Requests per second per caller (token or Slack team); beyond it 429 with Retry-After.
    pub requests_per_s: u64,
    /// Live event streams open at once; beyond it 503.
    pub max_streams: usize,
    /// Live event streams one caller (token) may have open at once; beyond it 429 naming the
    /// streams open. A closed stream or a dropped connection frees its slot.
    pub max_streams_per_user: usize,
    /// Investigations running at once; beyond it new incidents wait their turn.
    pub max_investigations: usize,
    /// Investigations one caller (token, or Slack user) may have running or waiting at once,
    /// whatever starts them (opening an incident, an alert, a message, resume, triage, record,
    /// Slack); beyond it 429 naming them. A finished round frees its slot.
    pub max_investigations_per_user: usize,
    /// Wrong bearer tokens one source address may present per `auth_failure_window_s`; beyond
    /// it every request from that address gets 429 with Retry-After until the window ends.
    pub max_auth_failures: u32,
    /// The window of `max_auth_failures`, seconds.
    pub auth_failure_window_s: u64,
    /// How long an approved action waits for the incident's previous action to be verified.
    pub action_wait_s: u64,
    /// A replica whose heartbeat in the shared store is older than this is dead: another
    /// replica marks its investigations interrupted and its executions in flight
    /// `outcome_unknown`. Each replica beats every fifth of it.
    pub replica_timeout_s: u64,
}

impl ServerSettings {
    /// The incident store's URL: `database_url`, else the SQLite file in `data_dir`.
    pub fn store_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("oncall.db").display()))
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:4318".into(),
            token_env: "ONCALL_TOKEN".into(),
            max_body_bytes: 8 << 20,
            max_concurrent_exports: 8,
            max_spans_per_s: 500_000,
            data_dir: PathBuf::from("oncall-data"),
            database_url: None,
            database_password_env: String::new(),
            database_sslmode: None,
            database_sslrootcert: None,
            database_pool_max_size: 8,
            database_pool_wait_timeout_s: 10,
            database_connect_timeout_s: 5,
            replica: None,
            request_timeout_s: 30,
            max_concurrent_requests: 1024,
            requests_per_s: 200,
            max_streams: 2000,
            max_streams_per_user: 16,
            max_investigations: 2,
            max_investigations_per_user: 3,
            max_auth_failures: 30,
            auth_failure_window_s: 60,
            action_wait_s: 600,
            replica_timeout_s: 15,
        }
    }
}
