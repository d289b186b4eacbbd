//! What a command may never get: oncall's own settings, passwords, DSNs, and every variable the
//! configuration names as holding a secret.

use super::parse::{Template, placeholders};
use super::{Action, ActionFileError};
use serde_json::Value;

/// The PATH a command gets when its file declares none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a variable of oncall's environment must never reach a command, if it must not: oncall's
/// own settings and tokens (`ONCALL_*`), passwords, PostgreSQL credentials, database DSNs.
pub fn secret_variable(name: &str) -> Option<&'static str> {
    let up = name.to_ascii_uppercase();
    if up.starts_with("ONCALL_") {
        Some("oncall's own settings and tokens (ONCALL_*)")
    } else if up.contains("PASSWORD") || up.contains("PASSWD") || up.contains("PASSFILE") {
        Some("a password")
    } else if up.contains("DSN") || up.contains("DATABASE_URL") {
        Some("a database DSN")
    } else {
        None
    }
}

/// The variables the configuration names as holding secrets: every `*_env` setting (the
/// server's `token_env`, each database's `password_env`, API keys, bot tokens, ...).
pub fn configured_secret_variables(config: &crate::config::Config) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        Value::String(s) if k.ends_with("_env") && !s.trim().is_empty() => {
                            out.push(s.trim().to_string())
                        }
                        other => walk(other, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    if let Ok(v) = serde_json::to_value(config) {
        walk(&v, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

impl Action {
    /// The variables of oncall's environment this action hands to its command: the ones it
    /// passes and the ones its `env` values read.
    pub fn command_variables(&self) -> Vec<String> {
        match &self.template {
            Template::Command { env, pass_env, .. } => pass_env
                .iter()
                .cloned()
                .chain(env.values().flat_map(|v| {
                    placeholders(&v.replace("${", "{"))
                        .into_iter()
                        .filter_map(|p| p.strip_prefix("env:").map(str::to_string))
                }))
                .collect(),
            Template::Http { .. } => vec![],
        }
    }

    /// Refuses an action whose command would get one of `secrets` (the variables the
    /// configuration names as holding tokens and passwords, see [`configured_secret_variables`]).
    pub fn check_secrets(&self, secrets: &[String]) -> Result<(), ActionFileError> {
        match self
            .command_variables()
            .into_iter()
            .find(|v| secrets.contains(v))
        {
            Some(v) => Err(ActionFileError {
                file: self.file.clone(),
                message: format!(
                    "command: {v} holds a secret of oncall's configuration (a token_env, password_env or other *_env setting names it); a command never gets it"
                ),
            }),
            None => Ok(()),
        }
    }
}
