//! Arguments checked against the declaration, and the call built from the templates in one
//! pass (values percent-encoded in URLs, JSON strings in bodies, `${env:NAME}` kept or resolved).

use super::Action;
use super::parse::{ArgKind, Template};
use crate::tool::ToolError;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

impl Action {
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
    pub(super) fn build(&self, args: &Value, env: Env) -> Result<Value, ToolError> {
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
}

/// What rendering does with `${env:NAME}`: keep the reference (dry runs) or put in its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Env {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
