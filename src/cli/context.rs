//! What every command starts from: the settings (with warnings for misspelt variables), logging,
//! the async runtime, the redactor and the tool registry. Built once, before any command runs,
//! so a broken settings, policy or action file stops every command the same way (exit 2).

use super::CliError;
use crate::config::Config;
use crate::registry::Registry;
use std::path::Path;
use std::sync::Arc;

/// The loaded settings and the machinery the commands share.
pub struct Context {
    pub config: Arc<Config>,
    pub runtime: tokio::runtime::Runtime,
    /// Action files and the policy are checked when it loads.
    pub registry: Registry,
    /// Log output and, when asked for, oncall's own spans over OTLP; flushed when dropped.
    pub telemetry: crate::telemetry::Telemetry,
}

impl Context {
    /// Loads the settings from `explicit` (else `$ONCALL_CONFIG`, else ./oncall.toml), starts
    /// logging (through the same redactor as prompts) and the runtime, and loads the registry.
    pub fn load(explicit: Option<&Path>) -> Result<Context, CliError> {
        let loaded =
            Config::load_explained(explicit).map_err(|e| CliError::usage(e.to_string()))?;
        for n in loaded
            .not_settings
            .iter()
            .filter(|n| n.did_you_mean.is_some())
        {
            eprintln!(
                "warning: {} is not a setting; did you mean {}? (`oncall config check` lists every variable)",
                n.name,
                n.did_you_mean.as_deref().unwrap_or_default()
            );
        }
        let config = Arc::new(loaded.config);
        let telemetry = crate::telemetry::init(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
        crate::redact::configure(&config.policy.redact)
            .map_err(|e| CliError::usage(e.to_string()))?;
        // Action files and the policy are checked before anything runs: a broken one stops here.
        let registry = crate::app::load_registry(config.clone(), None)
            .map_err(|e| CliError::usage(e.to_string()))?;
        Ok(Context {
            config,
            runtime,
            registry,
            telemetry,
        })
    }
}
