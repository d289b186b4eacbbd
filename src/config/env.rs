//! Which `ONCALL_*` environment variables are settings.
//!
//! Settings are `ONCALL_<SECTION>__<KEY>` (`__` between levels); `ONCALL_LOG` is the one setting
//! without a section. Every other `ONCALL_NAME` belongs to the person running oncall, typically a
//! secret that a setting names (`password_env = "ONCALL_PG_PASSWORD"`, an action's
//! `${env:ONCALL_FLAGS_TOKEN}`, the server's `ONCALL_TOKEN`): oncall does not read it as a
//! setting, so it can never stop the configuration from loading. A variable with `__` is a
//! setting unless some `*_env` setting names it, and a misspelt one is still an error that names
//! it.

use figment::Figment;
use figment::providers::Env;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The prefix of oncall's variables.
pub const PREFIX: &str = "ONCALL_";

/// An `ONCALL_*` variable that oncall does not read as a setting, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotASetting {
    /// The variable's name, e.g. `ONCALL_PG_PASSWORD`.
    pub name: String,
    /// Why it is not a setting, e.g. "named by postgres.app.password_env".
    pub why: String,
    /// When it looks like a misspelt setting: the setting it probably meant.
    pub did_you_mean: Option<String>,
}

/// Variables that say how settings are found rather than being settings.
const FINDERS: [(&str, &str); 1] = [("CONFIG", "names the settings file")];

/// Splits `env` (a provider over `ONCALL_*`) into the settings it carries and the variables that
/// are not settings. `base` is everything below the environment (defaults and the file): the
/// `*_env` settings it holds name secret variables, which are never read as settings.
pub(super) fn settings_only(base: &Figment, defaults: &Value, env: Env) -> (Env, Vec<NotASetting>) {
    let named = secret_names(base);
    let scalars: BTreeSet<String> = match defaults {
        Value::Object(top) => top
            .iter()
            .filter(|(_, v)| !v.is_object())
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect(),
        _ => BTreeSet::new(),
    };
    let mut skipped = Vec::new();
    let mut skip: BTreeSet<String> = BTreeSet::new();
    for (key, _) in env.iter() {
        let key = key.as_str().to_ascii_lowercase();
        let name = format!("{PREFIX}{}", key.to_ascii_uppercase());
        let (why, guess) = if let Some(path) = named.get(&name) {
            (format!("named by {path}"), None)
        } else if let Some((_, why)) = FINDERS.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
            ((*why).to_string(), None)
        } else if key.contains("__") || scalars.contains(&key) {
            continue;
        } else {
            (
                "not a setting: settings are ONCALL_<SECTION>__<KEY> (ONCALL_LOG is the only one without a section)".to_string(),
                did_you_mean(defaults, &key),
            )
        };
        skip.insert(key.clone());
        skipped.push(NotASetting {
            did_you_mean: guess,
            name,
            why,
        });
    }
    let env = env.filter(move |k| !skip.contains(&k.as_str().to_ascii_lowercase()));
    (env, skipped)
}

/// Every `*_env` setting's value (a variable name) in upper case, with the setting's path.
fn secret_names(base: &Figment) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // A file that does not deserialize fails later with a precise message; here it names nothing.
    if let Ok(v) = base.extract::<Value>() {
        walk(&v, &mut String::new(), &mut out);
    }
    out
}

fn walk(v: &Value, path: &mut String, out: &mut BTreeMap<String, String>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            match child {
                Value::String(name) if k.ends_with("_env") && !name.trim().is_empty() => {
                    out.entry(name.trim().to_ascii_uppercase())
                        .or_insert_with(|| path.clone());
                }
                _ => walk(child, path, out),
            }
            path.truncate(len);
        }
    }
}

/// `host_window_ms` looks like `host.window_ms` written with one underscore: name the setting.
fn did_you_mean(defaults: &Value, key: &str) -> Option<String> {
    let Value::Object(top) = defaults else {
        return None;
    };
    for (section, fields) in top {
        let Some(rest) = key.strip_prefix(&format!("{section}_")) else {
            continue;
        };
        if let Value::Object(fields) = fields
            && fields.contains_key(rest)
        {
            return Some(format!(
                "{PREFIX}{}__{}",
                section.to_ascii_uppercase(),
                rest.to_ascii_uppercase()
            ));
        }
    }
    None
}
