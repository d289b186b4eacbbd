//! Reading an action file: its arguments, their types and patterns, and its command or HTTP
//! template, each placeholder checked against the declared arguments.

use super::secrets::{DEFAULT_PATH, secret_variable};
use super::{Action, ActionFileError, Effect};
use crate::tool::{RiskClass, ToolSpec};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: String,
    description: String,
    risk: RiskClass,
    #[serde(default)]
    args: BTreeMap<String, RawArg>,
    #[serde(default)]
    command: Option<RawCommand>,
    #[serde(default)]
    http: Option<RawHttp>,
    /// What to measure before and after the action runs.
    #[serde(default)]
    effect: Option<Effect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArg {
    description: String,
    #[serde(default = "string_type", rename = "type")]
    kind: ArgKind,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    default: Option<Value>,
}

fn string_type() -> ArgKind {
    ArgKind::String
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ArgKind {
    String,
    Integer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    argv: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_s: u64,
    /// Variables the command gets, by value (templates like argv's).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Variables copied from oncall's environment when set.
    #[serde(default)]
    pass_env: Vec<String>,
}

fn variable_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default = "default_timeout")]
    timeout_s: u64,
}

fn default_timeout() -> u64 {
    30
}

#[derive(Debug, Clone)]
pub(super) struct Arg {
    pub(super) name: String,
    pub(super) kind: ArgKind,
    pub(super) pattern: Option<Regex>,
    pub(super) min: Option<i64>,
    pub(super) max: Option<i64>,
    pub(super) default: Option<Value>,
}

#[derive(Debug, Clone)]
pub(super) enum Template {
    Command {
        argv: Vec<String>,
        timeout: Duration,
        env: BTreeMap<String, String>,
        pass_env: Vec<String>,
    },
    Http {
        method: reqwest::Method,
        url: String,
        headers: BTreeMap<String, String>,
        body: Option<Value>,
        timeout: Duration,
    },
}

pub(super) fn placeholders(t: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

fn body_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| body_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| body_strings(x, out)),
        _ => {}
    }
}

impl Action {
    /// Parses and checks one action file.
    pub fn parse(text: &str, file: &str) -> Result<Action, ActionFileError> {
        let err = |message: String| ActionFileError {
            file: file.to_string(),
            message,
        };
        let raw: RawAction = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            err(format!("line {line}: {}", e.message()))
        })?;
        let (area, verb) = raw
            .name
            .split_once('.')
            .ok_or_else(|| err(format!("name {:?} must be area.verb", raw.name)))?;
        if area.is_empty() || verb.is_empty() || verb.contains('.') {
            return Err(err(format!("name {:?} must be area.verb", raw.name)));
        }
        if raw.risk == RiskClass::Read {
            return Err(err(
                "risk must be \"write\" or \"live_action\": an action changes something".into(),
            ));
        }
        let mut args = vec![];
        let mut props = Map::new();
        let mut required = vec![];
        for (name, a) in &raw.args {
            let field = format!("args.{name}");
            let pattern = match (&a.kind, &a.pattern) {
                (ArgKind::String, None) => {
                    return Err(err(format!(
                        "{field}: a string argument needs a `pattern` that its whole value must match"
                    )));
                }
                (_, Some(p)) => Some(
                    Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| err(format!("{field}.pattern: {e}")))?,
                ),
                (ArgKind::Integer, None) => None,
            };
            let mut schema = match a.kind {
                ArgKind::String => {
                    json!({"type": "string", "pattern": format!("^(?:{})$", a.pattern.clone().unwrap_or_default())})
                }
                ArgKind::Integer => json!({"type": "integer"}),
            };
            schema["description"] = json!(a.description);
            if let Some(m) = a.min {
                schema["minimum"] = json!(m);
            }
            if let Some(m) = a.max {
                schema["maximum"] = json!(m);
            }
            match &a.default {
                Some(d) => schema["default"] = d.clone(),
                None => required.push(json!(name)),
            }
            props.insert(name.clone(), schema);
            args.push(Arg {
                name: name.clone(),
                kind: a.kind,
                pattern,
                min: a.min,
                max: a.max,
                default: a.default.clone(),
            });
        }
        let declared = |p: &str, field: &str| -> Result<(), ActionFileError> {
            if p.starts_with("env:") || raw.args.contains_key(p) {
                Ok(())
            } else {
                Err(err(format!(
                    "{field}: {{{p}}} is not a declared argument (declared: {})",
                    raw.args.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let template = match (&raw.command, &raw.http) {
            (Some(c), None) => {
                if c.argv.is_empty() {
                    return Err(err("command.argv is empty".into()));
                }
                if !placeholders(&c.argv[0]).is_empty() {
                    return Err(err(
                        "command.argv[0]: the program must be fixed, not an argument".into(),
                    ));
                }
                for (i, a) in c.argv.iter().enumerate() {
                    for p in placeholders(a) {
                        if p.starts_with("env:") {
                            return Err(err(format!(
                                "command.argv[{i}]: environment values are for HTTP headers, not argv (argv is visible to every user of the host)"
                            )));
                        }
                        declared(&p, &format!("command.argv[{i}]"))?;
                    }
                }
                let mut env = c.env.clone();
                for (k, v) in &c.env {
                    let field = format!("command.env.{k}");
                    if !variable_name_ok(k) {
                        return Err(err(format!(
                            "{field}: {k:?} is not a variable name (letters, digits, _)"
                        )));
                    }
                    if let Some(why) = secret_variable(k) {
                        return Err(err(format!(
                            "{field}: {k} is {why}; a command never gets it"
                        )));
                    }
                    for p in placeholders(&v.replace("${", "{")) {
                        declared(&p, &field)?;
                        if let Some(var) = p.strip_prefix("env:")
                            && let Some(why) = secret_variable(var)
                        {
                            return Err(err(format!(
                                "{field}: ${{env:{var}}} is {why}; a command never gets it"
                            )));
                        }
                    }
                }
                for (i, k) in c.pass_env.iter().enumerate() {
                    let field = format!("command.pass_env[{i}]");
                    if !variable_name_ok(k) {
                        return Err(err(format!(
                            "{field}: {k:?} is not a variable name (letters, digits, _)"
                        )));
                    }
                    if let Some(why) = secret_variable(k) {
                        return Err(err(format!(
                            "{field}: {k} is {why}; a command never gets it"
                        )));
                    }
                    if c.env.contains_key(k) {
                        return Err(err(format!(
                            "{field}: {k} is also set in command.env; keep one"
                        )));
                    }
                }
                if !env.contains_key("PATH") && !c.pass_env.iter().any(|k| k == "PATH") {
                    env.insert("PATH".into(), DEFAULT_PATH.into());
                }
                Template::Command {
                    argv: c.argv.clone(),
                    timeout: Duration::from_secs(c.timeout_s.clamp(1, 600)),
                    env,
                    pass_env: c.pass_env.clone(),
                }
            }
            (None, Some(h)) => {
                let method = reqwest::Method::from_bytes(h.method.to_uppercase().as_bytes())
                    .map_err(|_| {
                        err(format!("http.method {:?} is not an HTTP method", h.method))
                    })?;
                for p in placeholders(&h.url.replace("${", "{")) {
                    declared(&p, "http.url")?;
                }
                for (k, v) in &h.headers {
                    for p in placeholders(&v.replace("${", "{")) {
                        declared(&p, &format!("http.headers.{k}"))?;
                    }
                }
                if let Some(b) = &h.body {
                    let mut strings = vec![];
                    body_strings(b, &mut strings);
                    for s in strings {
                        for p in placeholders(&s) {
                            declared(&p, "http.body")?;
                        }
                    }
                }
                Template::Http {
                    method,
                    url: h.url.clone(),
                    headers: h.headers.clone(),
                    body: h.body.clone(),
                    timeout: Duration::from_secs(h.timeout_s.clamp(1, 600)),
                }
            }
            _ => {
                return Err(err(
                    "an action has exactly one of [command] or [http]".into()
                ));
            }
        };
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        Ok(Action {
            spec: ToolSpec {
                name: leak(raw.name),
                description: leak(raw.description),
                risk: raw.risk,
                parameters: json!({"type": "object", "properties": props, "required": required, "additionalProperties": false}),
                unavailable: false,
                version: 1,
            },
            args,
            template,
            effect: raw.effect,
            file: file.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_refused_with_the_field() {
        let cases = [
            (
                "name = \"x\"\ndescription = \"d\"\nrisk = \"live_action\"\n[command]\nargv = [\"true\"]\n",
                "area.verb",
            ),
            (
                "name = \"a.b\"\ndescription = \"d\"\nrisk = \"live_action\"\n[args.x]\ndescription = \"d\"\n[command]\nargv = [\"echo\", \"{x}\"]\n",
                "args.x: a string argument needs a `pattern`",
            ),
            (
                "name = \"a.b\"\ndescription = \"d\"\nrisk = \"live_action\"\n[command]\nargv = [\"echo\", \"{y}\"]\n",
                "command.argv[1]: {y} is not a declared argument",
            ),
            (
                "name = \"a.b\"\ndescription = \"d\"\nrisk = \"live_action\"\n[command]\nargv = [\"{y}\"]\n",
                "argv[0]",
            ),
            (
                "name = \"a.b\"\ndescription = \"d\"\nrisk = \"read\"\n[command]\nargv = [\"true\"]\n",
                "risk",
            ),
            (
                "name = \"a.b\"\ndescription = \"d\"\nrisk = \"live_action\"\n",
                "exactly one of",
            ),
            (
                "name = \"a.b\"\ndescription = \"d\"\nrisk = \"live_action\"\nshell = true\n[command]\nargv = [\"true\"]\n",
                "line 4",
            ),
        ];
        for (text, needle) in cases {
            let e = Action::parse(text, "t.toml").unwrap_err().to_string();
            assert!(
                e.starts_with("t.toml: ") && e.contains(needle),
                "{needle}: {e}"
            );
        }
    }
}
