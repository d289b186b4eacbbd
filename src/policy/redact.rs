//! The redactor: secrets out of every text that is about to reach a model.
//!
//! Applied by the agent to the report and to every tool output before a prompt is built. Each
//! secret is replaced by a typed placeholder (`[REDACTED:password]`), so the model still sees
//! that something was there and what kind. Patterns cover credentials in URLs and connection
//! strings, `password=`/`token=`-style pairs, bearer tokens, JWTs, AWS access keys, private key
//! blocks and e-mail addresses.

use regex::Regex;
use std::sync::LazyLock;

struct Rule {
    kind: String,
    re: Regex,
    /// Which capture group holds the secret (0: the whole match).
    group: usize,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let specs: [(&str, &str, usize); 8] = [
        (
            "private_key",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            0,
        ),
        // scheme://user:password@host  (postgres://, mysql://, redis://, amqp://, https://, ...)
        (
            "password",
            r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@"']+:([^\s@/"']+)@"#,
            1,
        ),
        (
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
            0,
        ),
        (
            "bearer_token",
            r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{8,})",
            1,
        ),
        ("aws_access_key", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", 0),
        (
            "password",
            r#"(?i)(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)\\?["']?\s*[=:]\s*\\?["']?([^\s"'\\&;,]+)"#,
            1,
        ),
        (
            "email",
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
            0,
        ),
        ("api_key", r"\bsk-[A-Za-z0-9_-]{16,}\b", 0),
    ];
    specs
        .iter()
        .filter_map(|(kind, pat, group)| {
            Regex::new(pat).ok().map(|re| Rule {
                kind: kind.to_string(),
                re,
                group: *group,
            })
        })
        .collect()
});

/// The team's own patterns (`[policy] redact`), applied after the built-in ones.
static CUSTOM: std::sync::RwLock<Vec<Rule>> = std::sync::RwLock::new(Vec::new());

/// Installs the configured custom patterns for every later redaction. A pattern that does not
/// compile is an error naming it; nothing is installed then.
pub fn configure(custom: &[crate::config::CustomRedaction]) -> Result<(), String> {
    let mut rules = vec![];
    for c in custom {
        if c.kind.is_empty()
            || !c
                .kind
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(format!(
                "[policy] redact: kind {:?} must be letters, digits or _",
                c.kind
            ));
        }
        let re = Regex::new(&c.pattern)
            .map_err(|e| format!("[policy] redact: pattern for {:?}: {e}", c.kind))?;
        rules.push(Rule {
            kind: c.kind.clone(),
            re,
            group: 0,
        });
    }
    let mut slot = CUSTOM
        .write()
        .map_err(|_| "the redactor's custom patterns are unavailable".to_string())?;
    *slot = rules;
    Ok(())
}

/// Replaces every secret in `text` with `[REDACTED:<kind>]`.
pub fn redact(text: &str) -> String {
    let mut out = apply(text, RULES.iter());
    if let Ok(custom) = CUSTOM.read()
        && !custom.is_empty()
    {
        out = apply(&out, custom.iter());
    }
    out
}

fn apply<'a>(text: &str, rules: impl Iterator<Item = &'a Rule>) -> String {
    let mut out = text.to_string();
    for rule in rules {
        let mut result = String::with_capacity(out.len());
        let mut last = 0;
        for caps in rule.re.captures_iter(&out) {
            let Some(m) = caps.get(rule.group) else {
                continue;
            };
            if m.as_str().starts_with("[REDACTED:") {
                continue;
            }
            // `user@host` right after `scheme://` is a URL's user, not an e-mail address.
            if rule.kind == "email" && out[..m.start()].ends_with("://") {
                continue;
            }
            result.push_str(&out[last..m.start()]);
            result.push_str(&format!("[REDACTED:{}]", rule.kind));
            last = m.end();
        }
        result.push_str(&out[last..]);
        out = result;
    }
    out
}

/// A writer for log lines: each write is redacted, then goes to stderr. The log formatter writes
/// one whole line per call, so a secret is never split across writes.
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = redact(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Keys whose values are secrets whatever they look like.
const SECRET_KEYS: [&str; 9] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "authorization",
    "private_key",
];

/// Redacts a JSON value in place: every string leaf passes [`redact`], and the value of any key
/// that names a secret is replaced whole. Working on the parsed value keeps the JSON valid.
pub fn redact_value(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let r = redact(s);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                let key = k.to_ascii_lowercase().replace('-', "_");
                if SECRET_KEYS
                    .iter()
                    .any(|s| key == *s || key.ends_with(&format!("_{s}")))
                    && !val.is_null()
                {
                    *val = Value::String("[REDACTED:password]".into());
                } else {
                    redact_value(val);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_by_typed_placeholders() {
        let cases = [
            (
                "db at postgres://app:s3cr3t-Pa55@db.internal:5432/shop",
                "s3cr3t-Pa55",
                "postgres://app:[REDACTED:password]@db.internal",
            ),
            (
                "Authorization: Bearer abcdef0123456789xyz",
                "abcdef0123456789xyz",
                "Bearer [REDACTED:bearer_token]",
            ),
            (
                "key AKIAIOSFODNN7EXAMPLE in env",
                "AKIAIOSFODNN7EXAMPLE",
                "[REDACTED:aws_access_key]",
            ),
            (
                "PGPASSWORD=hunter22 psql",
                "hunter22",
                "PGPASSWORD=[REDACTED:password]",
            ),
            (
                "mail ops-lead@example.com now",
                "ops-lead@example.com",
                "[REDACTED:email]",
            ),
            (
                "tok eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "dozjgNryP4J3",
                "[REDACTED:jwt]",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "MIIEow",
                "[REDACTED:private_key]",
            ),
            (
                "OPENAI key sk-proj-abcdefghijklmnop1234",
                "sk-proj-abcdefghijklmnop1234",
                "[REDACTED:api_key]",
            ),
        ];
        for (input, secret, expect) in cases {
            let r = redact(input);
            assert!(!r.contains(secret), "{input} -> {r}");
            assert!(r.contains(expect), "{input} -> {r}");
        }
    }

    #[test]
    fn json_stays_valid_and_secrets_in_it_go() {
        let mut v = serde_json::json!({
            "note": "conn postgres://app:s3cret@db/x and password=\"hunter22\" and {\"token\":\"tok_abc123456\"}",
            "db_password": "plain-secret",
            "url": "postgres://oncall@db.internal:5432/app",
            "rows": [1, 2]
        });
        redact_value(&mut v);
        let t = v.to_string();
        for secret in ["s3cret", "hunter22", "tok_abc123456", "plain-secret"] {
            assert!(!t.contains(secret), "{secret} leaked: {t}");
        }
        assert!(
            t.contains("db.internal:5432"),
            "a URL's user is not an e-mail address: {t}"
        );
        assert_eq!(v["rows"][1], 2);
        assert!(serde_json::from_str::<serde_json::Value>(&t).is_ok());
    }

    #[test]
    fn ordinary_evidence_is_untouched() {
        let t = r#"{"resource":"fs:/","u":["space_used=19 % -- 73.5 GiB free of 252.0 GiB"],"name":"ledger-sync","pid":4242}"#;
        assert_eq!(redact(t), t);
        assert_eq!(
            redact("p99 latency > 2s on /api/checkout"),
            "p99 latency > 2s on /api/checkout"
        );
    }
}
