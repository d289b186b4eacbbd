//! Declarative actions: the stabilizers an SRE team adds without recompiling, one TOML file each
//! (`tools/*.toml`, everything but `policy.toml`).
//!
//! An action runs either a command or an HTTP request, built from a template. A command is an
//! argv list run directly, never through a shell; an HTTP request has a method, a URL, headers and
//! a JSON body. Every `{name}` in a template is an argument the file declares, with a type and,
//! for strings, a pattern the whole value must match. A value is checked before anything is built:
//! `deployment = "api; rm -rf /"` is refused because it does not match the pattern, not quoted
//! into a command. In URLs values are percent-encoded; in bodies they are JSON strings; in argv
//! each value stays inside its one argument. `${env:NAME}` takes a value from the environment at
//! run time (tokens in headers); dry runs show the reference, never the value.
//!
//! A command starts with an EMPTY environment plus what its file declares: `env` (fixed values,
//! which may use `{arg}` and `${env:NAME}`) and `pass_env` (variables copied from oncall's
//! environment when they are set), and `PATH=/usr/local/bin:/usr/bin:/bin` unless it declares
//! its own. oncall's token, its `ONCALL_*` settings, database passwords and DSNs never reach it:
//! naming one of them in `env` or `pass_env` is refused when the file is loaded.
//!
//! ```toml
//! name = "deploy.rollback"
//! description = "Roll a deployment back to its previous revision."
//! risk = "live_action"
//! [args.deployment]
//! description = "The deployment, e.g. \"storefront\"."
//! pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
//! [command]
//! argv = ["kubectl", "rollout", "undo", "deployment/{deployment}"]
//! pass_env = ["HOME", "KUBECONFIG"]
//! ```

use crate::tool::{DynTool, RiskClass, ToolError, ToolSpec};
use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The actions shipped with oncall (the files in `tools/`, compiled in).
pub const SHIPPED: [(&str, &str); 3] = [
    (
        "tools/deploy-rollback.toml",
        include_str!("../../tools/deploy-rollback.toml"),
    ),
    (
        "tools/flag-disable.toml",
        include_str!("../../tools/flag-disable.toml"),
    ),
    (
        "tools/circuit-open.toml",
        include_str!("../../tools/circuit-open.toml"),
    ),
];

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
enum ArgKind {
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

pub use crate::tool::EffectCheck as Effect;

#[derive(Debug, Clone)]
struct Arg {
    name: String,
    kind: ArgKind,
    pattern: Option<Regex>,
    min: Option<i64>,
    max: Option<i64>,
    default: Option<Value>,
}

#[derive(Debug, Clone)]
enum Template {
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

/// One loaded action.
#[derive(Debug, Clone)]
pub struct Action {
    spec: ToolSpec,
    args: Vec<Arg>,
    template: Template,
    pub effect: Option<Effect>,
    pub file: String,
}

/// Why an action file was refused: its file, and the line or the field.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{file}: {message}")]
pub struct ActionFileError {
    pub file: String,
    pub message: String,
}

fn placeholders(t: &str) -> Vec<String> {
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

    /// Checks the arguments against the declaration: each value typed and matching its pattern.
    fn values(&self, args: &Value) -> Result<BTreeMap<String, String>, ToolError> {
        let bad = |message: String| ToolError::BadArguments {
            tool: self.spec.name.to_string(),
            message,
        };
        let obj = match args {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => return Err(bad(format!("expected an object, got {other}"))),
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !self.args.iter().any(|a| &a.name == *k))
        {
            return Err(bad(format!(
                "unknown argument `{k}`; expected: {}",
                self.args
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut out = BTreeMap::new();
        for a in &self.args {
            let v = obj
                .get(&a.name)
                .or(a.default.as_ref())
                .ok_or_else(|| bad(format!("`{}` is required", a.name)))?;
            let text = match (a.kind, v) {
                (ArgKind::String, Value::String(s)) => s.clone(),
                (ArgKind::Integer, Value::Number(n)) if n.is_i64() => {
                    let i = n.as_i64().unwrap_or_default();
                    if a.min.is_some_and(|m| i < m) || a.max.is_some_and(|m| i > m) {
                        return Err(bad(format!(
                            "`{}` = {i} is out of range {}..={}",
                            a.name,
                            a.min.map(|m| m.to_string()).unwrap_or_default(),
                            a.max.map(|m| m.to_string()).unwrap_or_default()
                        )));
                    }
                    i.to_string()
                }
                (k, v) => {
                    return Err(bad(format!(
                        "`{}` must be {}, got {v}",
                        a.name,
                        if k == ArgKind::String {
                            "a string"
                        } else {
                            "an integer"
                        }
                    )));
                }
            };
            if text.chars().any(|c| c.is_control()) {
                return Err(bad(format!("`{}` contains a control character", a.name)));
            }
            if let Some(p) = &a.pattern
                && !p.is_match(&text)
            {
                return Err(bad(format!(
                    "`{}` = {text:?} does not match its pattern {}; nothing was run",
                    a.name,
                    p.as_str()
                )));
            }
            out.insert(a.name.clone(), text);
        }
        Ok(out)
    }

    /// What would run, exactly, as JSON: argv, or method, URL, headers (environment references
    /// shown, not their values) and body.
    pub fn plan(&self, args: &Value) -> Result<Value, ToolError> {
        self.build(args, Env::Keep)
    }

    /// The call built from the templates; `env` says whether `${env:NAME}` is resolved.
    fn build(&self, args: &Value, env: Env) -> Result<Value, ToolError> {
        let v = self.values(args)?;
        let fail = |message: String| ToolError::Failed {
            tool: self.spec.name.to_string(),
            message,
        };
        let text = |t: &str, enc: &dyn Fn(&str) -> String| render(t, &v, enc, env).map_err(fail);
        let same = |s: &str| s.to_string();
        Ok(match &self.template {
            Template::Command {
                argv,
                timeout,
                env: vars,
                pass_env,
            } => {
                let mut e = Map::new();
                for (k, t) in vars {
                    e.insert(k.clone(), json!(text(t, &same)?));
                }
                json!({
                    "kind": "command",
                    "argv": argv.iter().map(|a| text(a, &same)).collect::<Result<Vec<_>, _>>()?,
                    "env": e,
                    "pass_env": pass_env,
                    "timeout_s": timeout.as_secs(),
                })
            }
            Template::Http {
                method,
                url,
                headers,
                body,
                timeout,
            } => {
                let mut hs = Map::new();
                for (k, h) in headers {
                    hs.insert(k.clone(), json!(text(h, &same)?));
                }
                json!({
                    "kind": "http",
                    "method": method.as_str(),
                    "url": text(url, &percent_encode)?,
                    "headers": hs,
                    "body": body.as_ref().map(|b| render_json(b, &v, env)).transpose().map_err(fail)?,
                    "timeout_s": timeout.as_secs(),
                })
            }
        })
    }

    async fn run(&self, args: Value) -> Result<Value, ToolError> {
        let plan = self.build(&args, Env::Resolve)?;
        let fail = |message: String| ToolError::Failed {
            tool: self.spec.name.to_string(),
            message,
        };
        match &self.template {
            Template::Command {
                timeout, pass_env, ..
            } => {
                let argv: Vec<String> = serde_json::from_value(plan["argv"].clone())
                    .map_err(|e| fail(e.to_string()))?;
                let Some(program) = argv.first() else {
                    return Err(fail("command.argv is empty".into()));
                };
                let env: BTreeMap<String, String> =
                    serde_json::from_value(plan["env"].clone()).map_err(|e| fail(e.to_string()))?;
                let mut cmd = tokio::process::Command::new(program);
                // Nothing of oncall's environment but what the file declares.
                cmd.args(&argv[1..])
                    .env_clear()
                    .envs(&env)
                    .envs(
                        pass_env
                            .iter()
                            .filter_map(|k| Some((k, std::env::var_os(k)?))),
                    )
                    .kill_on_drop(true);
                let out = tokio::time::timeout(*timeout, cmd.output())
                    .await
                    .map_err(|_| fail(format!("{} did not finish within {timeout:?}", argv[0])))?
                    .map_err(|e| fail(format!("cannot run {}: {e}", argv[0])))?;
                let text = |b: &[u8]| {
                    let s = String::from_utf8_lossy(b);
                    crate::redact::redact(&s.chars().take(4000).collect::<String>())
                };
                let answer = json!({"argv": argv, "exit_code": out.status.code(), "stdout": text(&out.stdout), "stderr": text(&out.stderr)});
                if out.status.success() {
                    Ok(answer)
                } else {
                    Err(fail(format!(
                        "{} exited with {:?}: {}",
                        argv[0],
                        out.status.code(),
                        text(&out.stderr)
                    )))
                }
            }
            Template::Http {
                method, timeout, ..
            } => {
                let url = plan["url"].as_str().unwrap_or_default().to_string();
                let client = reqwest::Client::builder()
                    .timeout(*timeout)
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                let mut req = client.request(method.clone(), &url);
                for (k, h) in plan["headers"].as_object().into_iter().flatten() {
                    req = req.header(k.as_str(), h.as_str().unwrap_or_default());
                }
                if !plan["body"].is_null() {
                    req = req.json(&plan["body"]);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| fail(format!("{} {url}: {e}", method.as_str())))?;
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let body = crate::redact::redact(&body.chars().take(4000).collect::<String>());
                if status.is_success() {
                    Ok(json!({"status": status.as_u16(), "body": body}))
                } else {
                    Err(fail(format!(
                        "{} {url} answered {status}: {body}",
                        method.as_str()
                    )))
                }
            }
        }
    }
}

/// What rendering does with `${env:NAME}`: keep the reference (dry runs) or put in its value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Env {
    Keep,
    Resolve,
}

/// Renders a template in one pass: `{arg}` becomes the encoded value and `${env:NAME}` is kept
/// or resolved (a missing variable is an error). Inserted values are never scanned again, so a
/// value that itself contains `{other}` or `${env:SECRET}` stays literal text.
fn render(
    t: &str,
    values: &BTreeMap<String, String>,
    enc: &dyn Fn(&str) -> String,
    env: Env,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i + 1..].find('}') else {
            break;
        };
        let (name, end) = (&rest[i + 1..i + 1 + j], i + 2 + j);
        let var = name
            .strip_prefix("env:")
            .filter(|_| rest[..i].ends_with('$'));
        match (var, values.get(name)) {
            (Some(var), _) => {
                out.push_str(&rest[..i - 1]);
                match env {
                    Env::Keep => out.push_str(&rest[i - 1..end]),
                    Env::Resolve => out.push_str(
                        &std::env::var(var)
                            .map_err(|_| format!("environment variable {var} is not set"))?,
                    ),
                }
            }
            (None, Some(v)) => {
                out.push_str(&rest[..i]);
                out.push_str(&enc(v));
            }
            (None, None) => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Renders every string of a JSON template; values stay JSON strings.
fn render_json(t: &Value, values: &BTreeMap<String, String>, env: Env) -> Result<Value, String> {
    Ok(match t {
        Value::String(s) => Value::String(render(s, values, &|v| v.to_string(), env)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, values, env))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, values, env)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[async_trait]
impl DynTool for Action {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call_json(&self, args: Value) -> Result<Value, ToolError> {
        self.run(args).await
    }

    fn dry_run(&self, args: &Value) -> Result<Value, ToolError> {
        self.plan(args)
    }

    fn effect(&self, _args: &Value) -> Option<Effect> {
        self.effect.clone()
    }
}

/// Loads every action file in `dir` (`*.toml` but `policy.toml`), or the shipped ones when `dir`
/// is None.
pub fn load(dir: Option<&Path>) -> Result<Vec<Action>, ActionFileError> {
    let files: Vec<(String, String)> = match dir {
        None => SHIPPED
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect(),
        Some(d) => {
            let mut v = vec![];
            let entries = std::fs::read_dir(d).map_err(|e| ActionFileError {
                file: d.display().to_string(),
                message: format!("cannot read the actions directory: {e}"),
            })?;
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml")
                    && p.file_name().is_some_and(|n| n != "policy.toml")
                {
                    let t = std::fs::read_to_string(&p).map_err(|e| ActionFileError {
                        file: p.display().to_string(),
                        message: e.to_string(),
                    })?;
                    v.push((p.display().to_string(), t));
                }
            }
            v.sort();
            v
        }
    };
    let mut out: Vec<Action> = vec![];
    for (f, t) in files {
        let a = Action::parse(&t, &f)?;
        if let Some(other) = out.iter().find(|o| o.spec.name == a.spec.name) {
            return Err(ActionFileError {
                file: f,
                message: format!("{} is already defined in {}", a.spec.name, other.file),
            });
        }
        out.push(a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_actions_load() {
        let a = load(None).expect("shipped actions load");
        let names: Vec<&str> = a.iter().map(|a| a.spec.name).collect();
        assert_eq!(names, ["deploy.rollback", "flag.disable", "circuit.open"]);
        assert!(a.iter().all(|a| a.spec.risk == RiskClass::LiveAction));
    }

    #[test]
    fn dry_runs_show_exactly_what_would_run() {
        let a = load(None).unwrap();
        let rb = &a[0];
        let p = rb
            .plan(&json!({"deployment": "storefront", "namespace": "shop"}))
            .unwrap();
        assert_eq!(
            p["argv"],
            json!([
                "kubectl",
                "rollout",
                "undo",
                "deployment/storefront",
                "--namespace",
                "shop"
            ])
        );
        let flag = &a[1];
        let p = flag
            .plan(&json!({"flag": "new-checkout", "reason": "oncall: errors after enabling"}))
            .unwrap();
        assert!(
            p["url"]
                .as_str()
                .unwrap()
                .ends_with("/flags/new-checkout/disable"),
            "{p}"
        );
        assert_eq!(
            p["headers"]["Authorization"], "Bearer ${env:ONCALL_FLAGS_TOKEN}",
            "secrets are shown as references"
        );
        assert_eq!(p["body"]["reason"], "oncall: errors after enabling");
    }

    #[test]
    fn injection_is_refused_before_anything_is_built() {
        let a = load(None).unwrap();
        for bad in [
            json!({"deployment": "api; rm -rf /"}),
            json!({"deployment": "api && curl evil"}),
            json!({"deployment": "$(reboot)"}),
            json!({"deployment": "--all"}),
            json!({"deployment": "api\nrm"}),
            json!({"deployment": "api", "namespace": "x --kubeconfig=/tmp/evil"}),
            json!({"deployment": "api", "extra": "1"}),
            json!({"deployment": 7}),
        ] {
            let e = a[0].plan(&bad).unwrap_err().to_string();
            assert!(e.contains("bad arguments"), "{bad}: {e}");
        }
        for bad in [
            json!({"flag": "../admin", "reason": "x"}),
            json!({"flag": "a?b=c", "reason": "x"}),
            json!({"flag": "ok", "reason": "x\r\nX-Evil: 1"}),
        ] {
            assert!(a[1].plan(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_inserted_once_and_never_read_as_templates() {
        let a = Action::parse(
            "name = \"t.send\"\ndescription = \"d\"\nrisk = \"live_action\"\n[args.a]\ndescription = \"d\"\npattern = \".*\"\n[args.b]\ndescription = \"d\"\npattern = \"x\"\n[http]\nmethod = \"POST\"\nurl = \"${env:T_SEND_URL}/{a}\"\nheaders = { X-A = \"{a} {b}\" }\nbody = { a = \"{a}\" }\n",
            "t.toml",
        )
        .unwrap();
        let p = a.plan(&json!({"a": "{b} ${env:HOME}", "b": "x"})).unwrap();
        assert_eq!(p["headers"]["X-A"], "{b} ${env:HOME} x");
        assert_eq!(p["body"]["a"], "{b} ${env:HOME}");
        assert_eq!(p["url"], "${env:T_SEND_URL}/%7Bb%7D%20%24%7Benv%3AHOME%7D");
        let e = a
            .build(&json!({"a": "v", "b": "x"}), Env::Resolve)
            .unwrap_err();
        assert!(e.to_string().contains("T_SEND_URL is not set"), "{e}");
    }

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
