//! `[postgres.<name>]`: the databases to investigate, and libpq's TLS settings (`sslmode`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// TLS to a PostgreSQL server, with libpq's names and meanings (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a root certificate is
    /// given: then as `verify-ca`, as libpq does).
    Require,
    /// TLS, and the server's certificate chain must lead to the root certificate.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses libpq's spelling (`allow` counts as `prefer`).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One PostgreSQL database. Use a read-only role (pg_monitor); see the README.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PgSettings {
    /// Connection URL of the read-only role, e.g. `postgres://oncall@db:5432/app`. Put the
    /// password in `password_env`, not here.
    pub url: String,
    /// Name of an environment variable holding the password (optional).
    pub password_env: String,
    /// URL of a role with pg_signal_backend, used only by the approved cancel/terminate actions.
    /// Empty: the actions use `url`. Nothing that reads (EXPLAIN ANALYZE included) uses it.
    pub action_url: String,
    /// Name of an environment variable holding the password of `action_url`'s role (optional;
    /// empty: `password_env`), so the two roles need not share a password.
    pub action_password_env: String,
    /// statement_timeout set on every oncall session, ms.
    pub statement_timeout_ms: u64,
    /// Seconds to wait for a connection.
    pub connect_timeout_s: u64,
    /// The incident window that postgres.top_queries measures deltas over, ms.
    pub window_ms: u64,
    /// TLS to this database, as libpq's `sslmode`: `disable`, `prefer` (TLS when the server
    /// offers it, no certificate check), `require` (TLS, no certificate check unless
    /// `sslrootcert` is set), `verify-ca` (the chain must lead to `sslrootcert`) or
    /// `verify-full` (the chain, and the certificate must name the host in the URL). Unset: the
    /// URL's `?sslmode=`, else `prefer`. Applies to `url` and `action_url`.
    pub sslmode: Option<SslMode>,
    /// The CA certificate file (PEM) that signed the server's certificate; needed by
    /// `verify-ca` and `verify-full`. Unset: the URL's `?sslrootcert=`.
    pub sslrootcert: Option<PathBuf>,
    /// Connections the tools may hold to this database at once (the pool's size). Parallel
    /// tools beyond it wait for one; when the database refuses new sessions (too many
    /// connections), they share the ones the pool already has.
    pub pool_max_size: usize,
    /// How long a tool waits for a pooled connection before it reports a timeout, s.
    pub pool_wait_timeout_s: u64,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            url: String::new(),
            password_env: String::new(),
            action_url: String::new(),
            action_password_env: String::new(),
            statement_timeout_ms: 5000,
            connect_timeout_s: 5,
            window_ms: 2000,
            sslmode: None,
            sslrootcert: None,
            pool_max_size: 4,
            pool_wait_timeout_s: 10,
        }
    }
}

/// An `sslmode` that libpq does not define.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sslmode={0} is not one of disable, prefer, require, verify-ca, verify-full")]
pub struct UnknownSslMode(pub String);

/// Splits libpq's `sslmode` and `sslrootcert` off a `postgres://` URL's query (tokio-postgres
/// does not know `verify-ca` and `verify-full`): the URL without them, and their values.
pub fn split_tls_params(
    url: &str,
) -> Result<(String, Option<SslMode>, Option<PathBuf>), UnknownSslMode> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let (mut mode, mut root, mut rest) = (None, None, vec![]);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={v}"))
                .ok()
                .and_then(|mut x| x.pop())
                .map(|(_, v)| v)
                .unwrap_or_else(|| v.to_string())
        };
        match k {
            "sslmode" => {
                let v = decoded();
                mode = Some(SslMode::parse(&v).ok_or_else(|| UnknownSslMode(v.clone()))?);
            }
            "sslrootcert" => root = Some(PathBuf::from(decoded())),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, mode, root))
}
