//! Layered settings: built-in defaults, then `oncall.toml`, then `ONCALL_*` environment variables.
//!
//! The file comes from `--config PATH`, else `ONCALL_CONFIG`, else `./oncall.toml` when it exists.
//! Environment variables use `__` between levels: `ONCALL_HOST__WINDOW_MS=500` sets
//! `[host] window_ms`. Every struct denies unknown fields, so a misspelt key is an error that names
//! it instead of a silently ignored setting. Other `ONCALL_*` names (secrets such as
//! `ONCALL_PG_PASSWORD` that a setting names) are not settings: see [`env`]. [`check`] explains
//! the effective settings with secrets masked. This module only reads settings; it never acts on
//! them.

mod actions;
pub mod check;
mod env;
mod host;
mod llm;
mod mcp;
mod memory;
mod policy;
mod postgres;
mod prometheus;
mod server;
mod slack;
mod thresholds;
mod traces;
mod validate;

pub use actions::{ActionSettings, ChangeSettings};
pub use host::HostSettings;
pub use llm::{EvidenceMode, LlmSettings, Provider};
pub use mcp::{McpServerSettings, McpSettings};
pub use memory::{EmbedderKind, MemoryBackend, MemorySettings};
pub use policy::{CustomRedaction, PolicySettings};
pub use postgres::{PgSettings, SslMode, UnknownSslMode, split_tls_params};
pub use prometheus::PrometheusSettings;
pub use server::ServerSettings;
pub use slack::SlackSettings;
pub use thresholds::{
    ChangeThresholds, CpuThresholds, DiskThresholds, FdThresholds, FilesystemThresholds, Level,
    MemoryThresholds, NetworkThresholds, PgThresholds, Thresholds, TraceThresholds,
};
pub use traces::{TraceBackendKind, TraceSettings};

pub use env::NotASetting;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What went wrong while loading settings. Each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {reason} (fix the path given by --config / ONCALL_CONFIG, or remove it to use the defaults)"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message and fields.
    Json,
}

/// All of oncall's settings. `Config::default()` is the embedded default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Log filter for stderr (`error`, `warn`, `info`, `debug`, or a tracing directive).
    pub log: String,
    /// Log lines as `text` (for people) or `json` (one object per line, for a log pipeline).
    pub log_format: LogFormat,
    /// How the host collectors sample.
    pub host: HostSettings,
    /// Where a signal stops being normal, and how sure the board must be.
    pub thresholds: Thresholds,
    /// The policy layer's settings.
    pub policy: PolicySettings,
    /// Which reasoner drives the investigation, and how oncall talks to a model.
    pub llm: LlmSettings,
    /// PostgreSQL databases to investigate, by name: `[postgres.<name>] url = "postgres://..."`.
    pub postgres: std::collections::BTreeMap<String, PgSettings>,
    /// The embedded span store that `oncall serve` fills from OTLP.
    pub traces: TraceSettings,
    /// `oncall serve`: where it listens and how it protects itself.
    pub server: ServerSettings,
    /// The change log (deploys, config, flags) that `changes.recent` reads.
    pub changes: ChangeSettings,
    /// Declarative actions (rollback, flag off, circuit open, ...).
    pub actions: ActionSettings,
    /// Slack: the slash command, app mentions and approval buttons.
    pub slack: SlackSettings,
    /// Incident memory: how resolved incidents are embedded and where they are searched.
    pub memory: MemorySettings,
    /// The fleet through Prometheus: with a URL, the fleet tools replace the host tools.
    pub prometheus: PrometheusSettings,
    /// MCP: oncall served to MCP clients, and external MCP servers as extra toolsets.
    pub mcp: McpSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log: "warn".into(),
            log_format: LogFormat::Text,
            host: HostSettings::default(),
            thresholds: Thresholds::default(),
            policy: PolicySettings::default(),
            llm: LlmSettings::default(),
            postgres: Default::default(),
            traces: TraceSettings::default(),
            server: ServerSettings::default(),
            changes: ChangeSettings::default(),
            actions: ActionSettings::default(),
            slack: SlackSettings::default(),
            memory: MemorySettings::default(),
            prometheus: PrometheusSettings::default(),
            mcp: McpSettings::default(),
        }
    }
}

/// Settings as loaded, with what `oncall config check` shows: where each value came from, and
/// the `ONCALL_*` variables that were not read as settings.
pub struct Loaded {
    pub config: Config,
    /// The settings file, when one was read.
    pub file: Option<PathBuf>,
    /// Every layer, for the provenance of each value.
    pub figment: Figment,
    /// `ONCALL_*` variables that are not settings (secrets named by a setting, ...).
    pub not_settings: Vec<NotASetting>,
}

impl Config {
    /// Loads settings: defaults, then the file (explicit path, `ONCALL_CONFIG`, or `./oncall.toml`),
    /// then `ONCALL_*` variables from the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Ok(Self::load_explained(explicit)?.config)
    }

    /// [`Config::load`], keeping the layers and the variables that were not settings.
    pub fn load_explained(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
        let from_env = std::env::var_os("ONCALL_CONFIG").map(PathBuf::from);
        let path = match (explicit, from_env) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) => Some(p),
            (None, None) => {
                let local = PathBuf::from("oncall.toml");
                local.exists().then_some(local)
            }
        };
        Self::load_from_explained(path.as_deref(), Env::prefixed(env::PREFIX))
    }

    /// Loads settings from an optional file and a given environment provider (tests pass their own).
    pub fn load_from(path: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        Ok(Self::load_from_explained(path, env)?.config)
    }

    fn load_from_explained(path: Option<&Path>, env: Env) -> Result<Loaded, ConfigError> {
        let defaults = Config::default();
        let mut figment = Figment::from(Serialized::defaults(&defaults));
        if let Some(path) = path {
            // Figment skips a missing file silently; a file the user named must exist.
            std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let default_tree = serde_json::to_value(&defaults).unwrap_or_default();
        let (env, not_settings) = env::settings_only(&figment, &default_tree, env);
        let figment = figment.merge(env.split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(one_line(&e.to_string())))?;
        config.validate()?;
        Ok(Loaded {
            config,
            file: path.map(Path::to_path_buf),
            figment,
            not_settings,
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
        explained(jail, file).map(|l| l.config)
    }

    #[test]
    fn defaults_load_without_file_or_env() {
        Jail::expect_with(|jail| {
            assert_eq!(load_in_jail(jail, None).unwrap(), Config::default());
            Ok(())
        });
    }

    #[test]
    fn file_then_env_override_defaults() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST__TOP_PROCESSES", "7");
            let c = load_in_jail(
                jail,
                Some("[host]\nwindow_ms = 500\ntop_processes = 3\n[thresholds.cpu]\nsteal_pct = { warn = 5, crit = 20 }\n"),
            )
            .unwrap();
            assert_eq!(c.host.window_ms, 500);
            assert_eq!(c.host.top_processes, 7, "env wins over the file");
            assert_eq!(c.thresholds.cpu.steal_pct.warn, 5.0);
            assert_eq!(
                c.thresholds.cpu.utilization_pct,
                CpuThresholds::default().utilization_pct
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        Jail::expect_with(|jail| {
            let err = load_in_jail(jail, Some("[host]\nwindow_msec = 500\n")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("window_msec"), "{msg}");
            assert!(!msg.contains('\n'));
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST__WINDOWMS", "500");
            let msg = load_in_jail(jail, None).unwrap_err().to_string();
            assert!(msg.contains("windowms"), "{msg}");
            Ok(())
        });
    }

    fn explained(jail: &Jail, file: Option<&str>) -> Result<Loaded, ConfigError> {
        let path = file.map(|contents| {
            jail.create_file("oncall.toml", contents).unwrap();
            jail.directory().join("oncall.toml")
        });
        Config::load_from_explained(path.as_deref(), Env::prefixed("ONCALL_"))
    }

    #[test]
    fn secrets_under_the_prefix_are_not_settings() {
        Jail::expect_with(|jail| {
            // The README's example: a password variable inside the ONCALL_ namespace, and the
            // shipped actions' ${env:ONCALL_FLAGS_*} variables.
            jail.set_env("ONCALL_PG_PASSWORD", "hunter2");
            jail.set_env("ONCALL_FLAGS_TOKEN", "t0k3n");
            jail.set_env("ONCALL_TOKEN", "operator");
            jail.set_env("ONCALL_LOG", "debug");
            jail.set_env("ONCALL_POSTGRES__APP__SECRET", "with-sections");
            let l = explained(
                jail,
                Some("[postgres.app]\nurl = \"postgres://oncall@db/app\"\npassword_env = \"ONCALL_PG_PASSWORD\"\naction_password_env = \"oncall_postgres__app__secret\"\n"),
            )
            .unwrap();
            assert_eq!(l.config.log, "debug", "ONCALL_LOG is still a setting");
            let why = |n: &str| {
                l.not_settings
                    .iter()
                    .find(|x| x.name == n)
                    .map(|x| x.why.clone())
                    .unwrap_or_else(|| panic!("{n} not listed: {:?}", l.not_settings))
            };
            assert_eq!(
                why("ONCALL_PG_PASSWORD"),
                "named by postgres.app.password_env"
            );
            assert_eq!(
                why("ONCALL_POSTGRES__APP__SECRET"),
                "named by postgres.app.action_password_env"
            );
            assert_eq!(why("ONCALL_TOKEN"), "named by server.token_env");
            assert!(why("ONCALL_FLAGS_TOKEN").starts_with("not a setting"));
            assert!(l.not_settings.iter().all(|n| n.did_you_mean.is_none()));
            Ok(())
        });
    }

    #[test]
    fn one_underscore_short_of_a_setting_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST_WINDOW_MS", "500");
            let l = explained(jail, None).unwrap();
            assert_eq!(l.config.host.window_ms, HostSettings::default().window_ms);
            let n = &l.not_settings[0];
            assert_eq!(n.did_you_mean.as_deref(), Some("ONCALL_HOST__WINDOW_MS"));
            Ok(())
        });
    }

    #[test]
    fn check_shows_sources_and_masks_secrets() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST__TOP_PROCESSES", "7");
            jail.set_env("ONCALL_PG_PASSWORD", "hunter2");
            let l = explained(
                jail,
                Some("[postgres.app]\nurl = \"postgres://oncall:inline-pw@db/app\"\npassword_env = \"ONCALL_PG_PASSWORD\"\n[llm.extra_headers]\nX-Gateway-Key = \"gw-secret-value\"\n"),
            )
            .unwrap();
            let r = check::explain(&l, &|n| n == "ONCALL_PG_PASSWORD");
            let get = |k: &str| r.settings.iter().find(|s| s.key == k).unwrap().clone();
            assert_eq!(
                get("host.top_processes").source,
                "env ONCALL_HOST__TOP_PROCESSES"
            );
            assert_eq!(get("host.window_ms").source, "default");
            assert!(
                get("postgres.app.url").source.starts_with("file "),
                "{:?}",
                get("postgres.app.url")
            );
            assert_eq!(
                get("postgres.app.url").value,
                "postgres://oncall:****@db/app"
            );
            assert_eq!(get("postgres.app.password_env").variable_set, Some(true));
            assert_eq!(get("llm.api_key_env").variable_set, Some(false));
            let text = check::render(&r);
            for secret in ["inline-pw", "hunter2", "gw-secret-value"] {
                assert!(!text.contains(secret), "{secret} leaked:\n{text}");
            }
            assert!(
                text.contains("ONCALL_PG_PASSWORD: named by postgres.app.password_env"),
                "{text}"
            );
            Ok(())
        });
    }

    #[test]
    fn wrong_type_names_key_and_type() {
        Jail::expect_with(|jail| {
            let msg = load_in_jail(jail, Some("[host]\nwindow_ms = \"fast\"\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("window_ms") && msg.contains("fast"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = Config::load_from(
            Some(Path::new("/nonexistent/oncall.toml")),
            Env::prefixed("ONCALL_"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/oncall.toml"));
    }

    #[test]
    fn libpq_tls_parameters_come_off_the_url_and_must_agree_with_the_settings() {
        let (url, mode, root) = split_tls_params(
            "postgres://u@db:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@db:5432/app?application_name=x");
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(root, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            split_tls_params("postgres://u@db/app?sslmode=verify-ca").unwrap(),
            ("postgres://u@db/app".into(), Some(SslMode::VerifyCa), None)
        );
        assert!(
            split_tls_params("postgres://u@db/app?sslmode=strict")
                .unwrap_err()
                .to_string()
                .contains("sslmode=strict")
        );
        Jail::expect_with(|jail| {
            let msg = load_in_jail(
                jail,
                Some("[postgres.app]\nurl = \"postgres://u@db/app?sslmode=require\"\nsslmode = \"verify-full\"\nsslrootcert = \"/ca.pem\"\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(msg.contains("keep one"), "{msg}");
            let c = load_in_jail(
                jail,
                Some("[postgres.app]\nurl = \"postgres://u@db/app\"\nsslmode = \"verify-full\"\nsslrootcert = \"/ca.pem\"\n"),
            )
            .unwrap();
            assert_eq!(c.postgres["app"].sslmode, Some(SslMode::VerifyFull));
            Ok(())
        });
    }

    #[test]
    fn out_of_range_window_is_refused() {
        Jail::expect_with(|jail| {
            let msg = load_in_jail(jail, Some("[host]\nwindow_ms = 5000\n"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("host.window_ms") && msg.contains("100 to 1000"),
                "{msg}"
            );
            Ok(())
        });
    }
}
