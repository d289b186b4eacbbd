//! The range checks serde cannot express, run on the merged settings before they are used.

use super::{Config, ConfigError, Provider, SslMode, TraceBackendKind, split_tls_params};
use std::path::Path;

impl Config {
    /// Range checks that serde cannot express.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let tr = &self.traces;
        if tr.backend != TraceBackendKind::Embedded
            && !(tr.backend_url.starts_with("http://") || tr.backend_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "traces.backend = {:?} needs traces.backend_url (http:// or https://), got {:?}",
                tr.backend, tr.backend_url
            )));
        }
        if !(1..=300).contains(&tr.backend_timeout_s)
            || !(1..=5000).contains(&tr.backend_max_traces)
        {
            return Err(ConfigError::Invalid(format!(
                "[traces] backend_timeout_s {} (1-300) or backend_max_traces {} (1-5000) is out of range",
                tr.backend_timeout_s, tr.backend_max_traces
            )));
        }
        let p = &self.prometheus;
        if !(p.url.is_empty() || p.url.starts_with("http://") || p.url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "prometheus.url = {:?} must start with http:// or https://",
                p.url
            )));
        }
        if !(1..=300).contains(&p.timeout_s)
            || !(30..=86_400).contains(&p.window_s)
            || !(60..=7 * 86_400).contains(&p.baseline_s)
            || !(1..=10_000).contains(&p.max_series)
        {
            return Err(ConfigError::Invalid(format!(
                "[prometheus] out of range: timeout_s {} (1-300), window_s {} (30-86400), baseline_s {} (60-604800), max_series {} (1-10000)",
                p.timeout_s, p.window_s, p.baseline_s, p.max_series
            )));
        }
        if let Err(e) = regex::Regex::new(&p.error_status) {
            return Err(ConfigError::Invalid(format!(
                "prometheus.error_status = {:?} is not a regex: {e}",
                p.error_status
            )));
        }
        let mut toolsets = std::collections::HashSet::new();
        for server in &self.mcp.servers {
            if let Some(why) = server.problem() {
                return Err(ConfigError::Invalid(why));
            }
            if !toolsets.insert(server.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "mcp.servers: two servers are named {:?}; each toolset needs its own name",
                    server.name
                )));
            }
        }
        if !(1..=3600).contains(&self.mcp.wait_s) {
            return Err(ConfigError::Invalid(format!(
                "mcp.wait_s = {} is out of range: use 1 to 3600",
                self.mcp.wait_s
            )));
        }
        let m = &self.memory;
        if !m.hashed_dims.is_power_of_two() || !(256..=65536).contains(&m.hashed_dims) {
            return Err(ConfigError::Invalid(format!(
                "memory.hashed_dims = {} must be a power of two from 256 to 65536",
                m.hashed_dims
            )));
        }
        if !(-1.0..=1.0).contains(&m.min_score) {
            return Err(ConfigError::Invalid(format!(
                "memory.min_score = {} is a cosine similarity: use -1 to 1",
                m.min_score
            )));
        }
        let t = &self.thresholds;
        if !(100..=1000).contains(&self.host.window_ms) {
            return Err(ConfigError::Invalid(format!(
                "host.window_ms = {} is out of range: use 100 to 1000 (one sampling window of at most 1 s)",
                self.host.window_ms
            )));
        }
        if self.host.growth_extend_ms > 5000 {
            return Err(ConfigError::Invalid(format!(
                "host.growth_extend_ms = {} is out of range: use 0 to 5000",
                self.host.growth_extend_ms
            )));
        }
        if !(1..=50).contains(&self.host.top_processes) {
            return Err(ConfigError::Invalid(format!(
                "host.top_processes = {} is out of range: use 1 to 50",
                self.host.top_processes
            )));
        }
        for (name, v) in [
            ("thresholds.confidence", t.confidence),
            ("thresholds.confirm", t.confirm),
            ("thresholds.reject", t.reject),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "{name} = {v} is out of range: use a number between 0 and 1"
                )));
            }
        }
        let l = &self.llm;
        if l.effective_provider() == Provider::Openai && l.base_url.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "llm.provider = \"openai\" needs llm.base_url, e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1".into(),
            ));
        }
        if l.effective_provider() == Provider::Replay && l.replay_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "llm.provider = \"replay\" needs llm.replay_file".into(),
            ));
        }
        if !["max_tokens", "max_completion_tokens"].contains(&l.max_tokens_field.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "llm.max_tokens_field = {:?}: use \"max_tokens\" or \"max_completion_tokens\"",
                l.max_tokens_field
            )));
        }
        if l.max_steps == 0 || l.max_attempts == 0 || l.timeout_s == 0 || l.context_window < 2048 {
            return Err(ConfigError::Invalid(
                "llm.max_steps, llm.max_attempts and llm.timeout_s must be at least 1, and llm.context_window at least 2048".into(),
            ));
        }
        for (name, pg) in &self.postgres {
            if pg.url.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "postgres.{name}.url is empty: set it to the read-only role's URL, e.g. postgres://oncall@db:5432/app"
                )));
            }
            if !(100..=30_000).contains(&pg.window_ms) {
                return Err(ConfigError::Invalid(format!(
                    "postgres.{name}.window_ms = {} is out of range: use 100 to 30000",
                    pg.window_ms
                )));
            }
            if !(1..=100).contains(&pg.pool_max_size)
                || !(1..=300).contains(&pg.pool_wait_timeout_s)
            {
                return Err(ConfigError::Invalid(format!(
                    "postgres.{name}: pool_max_size = {} (1-100) or pool_wait_timeout_s = {} (1-300) is out of range",
                    pg.pool_max_size, pg.pool_wait_timeout_s
                )));
            }
            for (field, url) in [("url", &pg.url), ("action_url", &pg.action_url)] {
                if !url.trim().is_empty() {
                    check_tls(
                        &format!("postgres.{name}.{field}"),
                        url,
                        pg.sslmode,
                        pg.sslrootcert.as_deref(),
                    )?;
                }
            }
        }
        let sv = &self.server;
        if let Some(url) = &sv.database_url
            && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            check_tls(
                "server.database_url",
                url,
                sv.database_sslmode,
                sv.database_sslrootcert.as_deref(),
            )?;
        }
        if !(1..=100).contains(&sv.database_pool_max_size)
            || !(1..=300).contains(&sv.database_pool_wait_timeout_s)
            || !(1..=300).contains(&sv.database_connect_timeout_s)
        {
            return Err(ConfigError::Invalid(format!(
                "[server] database_pool_max_size = {} (1-100), database_pool_wait_timeout_s = {} (1-300) or database_connect_timeout_s = {} (1-300) is out of range",
                sv.database_pool_max_size,
                sv.database_pool_wait_timeout_s,
                sv.database_connect_timeout_s
            )));
        }
        if !(5..=86_400).contains(&self.traces.window_s)
            || self.traces.retention_s < self.traces.window_s * 2
        {
            return Err(ConfigError::Invalid(format!(
                "traces.window_s = {} must be 5 to 86400, and traces.retention_s ({}) at least twice it (the baseline window)",
                self.traces.window_s, self.traces.retention_s
            )));
        }
        if t.reject >= t.confirm {
            return Err(ConfigError::Invalid(format!(
                "thresholds.reject ({}) must be below thresholds.confirm ({})",
                t.reject, t.confirm
            )));
        }
        Ok(())
    }
}

/// The TLS settings of one URL agree with the fields beside it: a mode known to libpq, and the
/// same mode and root certificate where both say one.
fn check_tls(
    what: &str,
    url: &str,
    mode: Option<SslMode>,
    rootcert: Option<&Path>,
) -> Result<(), ConfigError> {
    let (_, url_mode, url_root) =
        split_tls_params(url).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    if let (Some(a), Some(b)) = (url_mode, mode)
        && a != b
    {
        return Err(ConfigError::Invalid(format!(
            "{what} says sslmode={a} but the setting beside it says sslmode = \"{b}\": keep one"
        )));
    }
    if let (Some(a), Some(b)) = (&url_root, rootcert)
        && a.as_path() != b
    {
        return Err(ConfigError::Invalid(format!(
            "{what} says sslrootcert={} but the setting beside it says {}: keep one",
            a.display(),
            b.display()
        )));
    }
    // A verify mode without a root certificate is refused when connecting (each setting may
    // come from its own layer: the file, then one variable at a time).
    Ok(())
}
