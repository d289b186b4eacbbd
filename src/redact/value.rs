//! JSON values redacted in place: every string leaf, and whole values under keys that name a
//! secret.

use super::checks::placeholder;
use super::redact;

/// Keys whose values are secrets whatever they look like, and the kind their value is shown
/// as. A key matches with a prefix (`db_password`, `x-api-key`, `secretAccessKey`); the password
/// words also without a separator (`PGPASSWORD`).
const SECRET_KEYS: [(&str, &str); 19] = [
    ("password", "password"),
    ("passwd", "password"),
    ("passphrase", "password"),
    ("secret", "secret"),
    ("secret_key", "secret"),
    ("secret_access_key", "aws_secret_key"),
    ("token", "token"),
    ("api_key", "api_key"),
    ("apikey", "api_key"),
    ("access_key", "api_key"),
    ("auth_key", "api_key"),
    ("encryption_key", "api_key"),
    ("signing_key", "api_key"),
    ("master_key", "api_key"),
    ("account_key", "azure_key"),
    ("private_key", "private_key"),
    ("authorization", "authorization"),
    ("cookie", "cookie"),
    ("credentials", "secret"),
];

/// The kind of secret a key's value is, if the key names one.
fn secret_key(key: &str) -> Option<&'static str> {
    // camelCase and kebab-case as snake_case: `secretAccessKey` is `secret_access_key`.
    let mut k = String::with_capacity(key.len() + 4);
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            k.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        k.push(if c == '-' || c == '.' {
            '_'
        } else {
            c.to_ascii_lowercase()
        });
    }
    SECRET_KEYS.iter().find_map(|(s, kind)| {
        let matched = match k.strip_suffix(s) {
            Some(prefix) => prefix.is_empty() || prefix.ends_with('_') || s.starts_with("passw"),
            None => false,
        };
        matched.then_some(*kind)
    })
}

/// A value that only names where a secret comes from (`Bearer ${env:FLAGS_TOKEN}`, `$1`,
/// `null`): it is shown, because it tells the reader what will be sent without revealing it.
fn only_references(s: &str) -> bool {
    let mut rest = s.to_string();
    while let Some(a) = rest.find("${") {
        let Some(b) = rest[a..].find('}') else { break };
        rest.replace_range(a..a + b + 1, " ");
    }
    rest.split_whitespace()
        .all(|w| ["bearer", "basic", "token"].contains(&w.to_ascii_lowercase().as_str()))
        || placeholder(s.trim())
}

/// Redacts a JSON value in place: every string leaf passes [`redact`], and the value of any key
/// that names a secret is replaced whole (unless it only references one, like `${env:TOKEN}`).
/// Working on the parsed value keeps the JSON valid.
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
                match (secret_key(k), &*val) {
                    (_, Value::Null) => {}
                    (Some(_), Value::String(s))
                        if s.starts_with("[REDACTED:") || only_references(s) => {}
                    (Some(kind), _) => *val = Value::String(format!("[REDACTED:{kind}]")),
                    (None, _) => redact_value(val),
                }
            }
        }
        _ => {}
    }
}

/// A redacted copy of `v`, for showing; `v` itself (e.g. the exact arguments an approval binds)
/// stays as it is.
pub fn redacted(v: &serde_json::Value) -> serde_json::Value {
    let mut c = v.clone();
    redact_value(&mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_stays_valid_and_secrets_in_it_go() {
        let mut v = serde_json::json!({
            "note": "conn postgres://app:s3cret@db/x and password=\"hunter22\" and {\"token\":\"tok_abc123456\"}",
            "db_password": "plain-secret",
            "url": "postgres://oncall@db.internal:5432/app",
            "rows": [1, 2],
            "prompt_tokens": 12
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
        assert_eq!(v["prompt_tokens"], 12);
        assert!(serde_json::from_str::<serde_json::Value>(&t).is_ok());
    }

    #[test]
    fn a_redacted_copy_leaves_the_original_alone() {
        let args = serde_json::json!({"sql": "ALTER ROLE app PASSWORD 'x-secret'"});
        let shown = redacted(&args);
        assert_eq!(args["sql"], "ALTER ROLE app PASSWORD 'x-secret'");
        assert_eq!(shown["sql"], "ALTER ROLE app PASSWORD [REDACTED:password]");
    }
}
