//! `oncall config check`: the effective settings, each with where it came from (default, the
//! file, or an `ONCALL_*` variable), with secrets masked. A secret never appears: passwords in
//! URLs, header values and anything named like a secret are replaced by `****`, every other value
//! passes the same redactor as prompts, and a `*_env` setting shows only whether its variable is
//! set, never its value.

use super::{Loaded, NotASetting};
use serde::Serialize;
use serde_json::Value;

/// One effective setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// Its dotted path, e.g. `host.window_ms` or `postgres.app.url`.
    pub key: String,
    /// Its value, masked where it could hold a secret.
    pub value: Value,
    /// `default`, `file <path>` or `env <VARIABLE>`.
    pub source: String,
    /// For a `*_env` setting: whether the variable it names is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable_set: Option<bool>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: Option<String>,
    pub settings: Vec<Setting>,
    pub not_settings: Vec<NotASetting>,
}

/// What stands in for a secret.
pub const MASK: &str = "****";

/// Explains `loaded`; `is_set` says whether an environment variable is set (the process
/// environment in the CLI, a map in tests).
pub fn explain(loaded: &Loaded, is_set: &dyn Fn(&str) -> bool) -> Report {
    let tree = serde_json::to_value(&loaded.config).unwrap_or_default();
    let mut settings = Vec::new();
    leaves(&tree, &mut Vec::new(), &mut |path, value| {
        let key = path.join(".");
        let source = source_of(loaded, &key);
        let last = path.last().map(String::as_str).unwrap_or("");
        let variable_set = match value {
            Value::String(name) if last.ends_with("_env") && !name.trim().is_empty() => {
                Some(is_set(name.trim()))
            }
            _ => None,
        };
        settings.push(Setting {
            value: mask(path, value),
            key,
            source,
            variable_set,
        });
    });
    Report {
        file: loaded.file.as_ref().map(|p| p.display().to_string()),
        settings,
        not_settings: loaded.not_settings.clone(),
    }
}

/// Calls `f` for every leaf (scalar or array) under `v`, with its path.
fn leaves(v: &Value, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &Value)) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                path.push(k.clone());
                leaves(child, path, f);
                path.pop();
            }
        }
        _ if path.is_empty() => {}
        _ => f(path, v),
    }
}

fn source_of(loaded: &Loaded, key: &str) -> String {
    let Some(md) = loaded.figment.find_metadata(key) else {
        return "default".into();
    };
    if let Some(figment::Source::File(path)) = &md.source {
        return format!("file {}", path.display());
    }
    if md.name.contains("environment") {
        let name = key.split('.').collect::<Vec<_>>().join("__");
        return format!("env {}{}", super::env::PREFIX, name.to_ascii_uppercase());
    }
    "default".into()
}

/// The value as it may be shown.
fn mask(path: &[String], value: &Value) -> Value {
    let last = path
        .last()
        .map(String::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let secret_named = !last.ends_with("_env")
        && [
            "password",
            "secret",
            "token",
            "api_key",
            "apikey",
            "private_key",
        ]
        .iter()
        .any(|s| last.contains(s));
    let in_headers = path.iter().any(|p| p.ends_with("headers")) && path.len() >= 2;
    match value {
        Value::String(s) if s.is_empty() => value.clone(),
        Value::String(_) if secret_named || in_headers => Value::String(MASK.into()),
        Value::String(s) => Value::String(mask_url_password(&crate::redact::redact(s))),
        Value::Array(items) => Value::Array(items.iter().map(|i| mask(path, i)).collect()),
        _ => value.clone(),
    }
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:****@host/db?password=****`.
pub fn mask_url_password(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = rest_start + colon + 1;
                let to = rest_start + at;
                out.replace_range(from..to, MASK);
            }
        }
    }
    // Query or key=value parameters that carry a password.
    static PARAM: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)((?:^|[?&\s])(?:password|passwd|pwd|sslpassword|token|access_token|api_key|apikey|key|secret|auth)=)[^&\s]*").ok()
    });
    match PARAM.as_ref() {
        Some(re) => re.replace_all(&out, format!("${{1}}{MASK}")).into_owned(),
        None => out,
    }
}

/// The report as text: one `key = value  # source` line per setting, then the variables that
/// are not settings.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# oncall settings: defaults, then {}, then ONCALL_* variables\n",
        report.file.as_deref().map_or_else(
            || "no settings file".to_string(),
            |f| format!("the file {f}")
        )
    ));
    let width = report
        .settings
        .iter()
        .map(|s| s.key.len() + toml_value(&s.value).len() + 3)
        .max()
        .unwrap_or(0)
        .min(72);
    for s in &report.settings {
        let line = format!("{} = {}", s.key, toml_value(&s.value));
        let mut note = s.source.clone();
        match s.variable_set {
            Some(true) => note.push_str("; the variable is set"),
            Some(false) => note.push_str("; the variable is not set"),
            None => {}
        }
        out.push_str(&format!("{line:<width$}  # {note}\n"));
    }
    if !report.not_settings.is_empty() {
        out.push_str("\n# ONCALL_* variables that are not settings:\n");
        for n in &report.not_settings {
            out.push_str(&format!("#   {}: {}", n.name, n.why));
            if let Some(m) = &n.did_you_mean {
                out.push_str(&format!(" (did you mean {m}?)"));
            }
            out.push('\n');
        }
    }
    out
}

fn toml_value(v: &Value) -> String {
    match toml::Value::try_from(v) {
        Ok(t) => t.to_string(),
        Err(_) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_url_password("postgres://app:s3cr3t@db:5432/app?sslmode=require"),
            "postgres://app:****@db:5432/app?sslmode=require"
        );
        assert_eq!(
            mask_url_password("postgres://app@db/app?password=hunter2&x=1"),
            "postgres://app@db/app?password=****&x=1"
        );
        assert_eq!(
            mask_url_password("host=db user=app password=hunter2"),
            "host=db user=app password=****"
        );
        assert_eq!(
            mask_url_password("http://127.0.0.1:9090"),
            "http://127.0.0.1:9090"
        );
    }

    #[test]
    fn secret_named_and_header_values_are_masked() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let v = Value::String("sk-live-abc".into());
        assert_eq!(
            mask(&p(&["llm", "extra_headers", "X-Key"]), &v),
            Value::String(MASK.into())
        );
        assert_eq!(mask(&p(&["x", "api_key"]), &v), Value::String(MASK.into()));
        assert_eq!(
            mask(
                &p(&["llm", "api_key_env"]),
                &Value::String("OPENAI_API_KEY".into())
            ),
            Value::String("OPENAI_API_KEY".into())
        );
    }
}
