//! The redactor: secrets out of every text that is about to reach a model, a viewer or Slack.
//!
//! Applied by the agent to the report and to every tool output before a prompt is built, by the
//! server to every incident event before it is stored, to the copies of action requests it shows
//! (the approval desk keeps the exact arguments: the approval binds their hash), to the triage
//! answer, and to every message posted to Slack. Each secret is replaced by a typed placeholder
//! (`[REDACTED:slack_token]`), so the reader still sees that something was there and what kind.
//!
//! The formats follow the public secret scanners' rule sets (gitleaks, trufflehog), with rules
//! written here: vendor tokens with a recognisable shape (Slack, GitHub, GitLab, Stripe, AWS,
//! Azure, GCP, npm, PyPI, SendGrid, Twilio, DigitalOcean, Vault, OpenAI-style `sk-`, oncall's own
//! `oc_` tokens), private key blocks, JWTs, `Authorization` headers, credentials in URLs, SQL
//! `PASSWORD` literals (single-quoted, `E''` and dollar-quoted, as `pg_stat_activity` shows
//! them), and keyed values (`password=`, `"token": "..."`, `secret: ...`, `--api-key x`) in
//! env-like, JSON, YAML and command-line forms; e-mail addresses too.
//!
//! What must survive, because diagnosis needs it: query ids, trace and span ids, hashes, UUIDs,
//! pids, SQL placeholders (`password = $1`) and ordinary SQL. A keyed value that is a placeholder
//! (`$1`, `?`, `${env:X}`, `null`), a path or a column reference is left alone.
//!
//! Speed: each rule is searched on its own. Almost every rule starts with a literal (`xox`,
//! `AKIA`, `password`, `://`), so a search is a fast literal scan, and a text without a secret
//! costs one such scan per rule (20 to 55 µs per KiB in a debug build). A [`regex::RegexSet`]
//! prefilter was measured and dropped: the union of the rules has no literal to scan for, and its
//! lazy DFA overflowed on dense text (milliseconds per KiB). The rules are compiled once.

use regex::Regex;
use std::ops::Range;
use std::sync::LazyLock;

/// Whether a candidate really is a secret, given the whole text and the candidate's span.
type Check = fn(&str, Range<usize>) -> bool;

/// Where, in a match, the secret is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Span {
    /// The whole match.
    Whole,
    /// The first capture group that took part in the match (a rule's alternatives each capture
    /// the value in their own group).
    Group,
    /// A SQL string literal whose opening quote (`'`, `E'`, `$$`, `$tag$`) is group 1; it ends
    /// where SQL says it ends (doubled quotes, backslash escapes, the same dollar tag).
    SqlLiteral,
}

struct Rule {
    kind: String,
    re: Regex,
    span: Span,
    check: Option<Check>,
}

/// A built-in rule: (kind, pattern, where the secret is, extra check).
type Spec = (&'static str, String, Span, Option<Check>);

/// Values in a quoted, JSON-escaped quoted, single-quoted or bare form (groups 1 to 4).
const VALUE: &str = r#"(?:"((?:[^"\\\r\n]|\\.)*)"|\\"((?:[^"\\\r\n]|\\[^"\r\n])*)\\"|'([^'\r\n]*)'|([^\s"'\\&;,<>`]+))"#;

/// The value after a command-line flag: quoted, or a bare word that is not the next flag.
const FLAG_VALUE: &str = r#"(?:"((?:[^"\\\r\n]|\\.)*)"|'([^'\r\n]*)'|([^\s"'\-][^\s"']*))"#;

/// Key words of keyed secrets, by the kind their value is shown as. A key may have any prefix
/// (`DB_PASSWORD`, `PGPASSWORD`, `x-api-key`, `client_secret`) but must end with the word:
/// `prompt_tokens: 12` and `password_hash = $1` are not secrets.
const KEYED: [(&str, &str); 4] = [
    (
        "password",
        r"passw(?:or)?d|passphrase|(?:^|[^a-z])(?:pass|pwd)",
    ),
    (
        "secret",
        r"secret(?:[_-]?access)?(?:[_-]?key(?:[_-]?base)?)?",
    ),
    ("token", r"token"),
    (
        "api_key",
        r"(?:api|access|auth|private|master|signing|encryption|subscription)[_-]?key",
    ),
];

fn specs() -> Vec<Spec> {
    let mut v: Vec<Spec> = vec![
        // Key material first: a private key may contain anything the later rules look for.
        (
            "private_key",
            r"-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----|(?:\\[rn]|[A-Za-z0-9+/=\s:,.-])*)".into(),
            Span::Whole,
            None,
        ),
        // Vendor tokens with a shape of their own.
        ("oncall_token", r"\boc_[A-Za-z0-9]{40}\b".into(), Span::Whole, None),
        (
            "slack_token",
            r"\b(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})".into(),
            Span::Whole,
            None,
        ),
        (
            "slack_webhook",
            r"(?i)\bhooks\.slack\.com/((?:services|workflows|triggers)/[A-Za-z0-9+/_-]{16,})".into(),
            Span::Group,
            None,
        ),
        (
            "github_token",
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})".into(),
            Span::Whole,
            None,
        ),
        (
            "gitlab_token",
            r"\bgl(?:pat|rt|dt|ptt|soat|cbt)-[A-Za-z0-9_-]{20,}".into(),
            Span::Whole,
            None,
        ),
        (
            "stripe_key",
            r"\b(?:(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{20,})".into(),
            Span::Whole,
            None,
        ),
        (
            "aws_access_key",
            r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b".into(),
            Span::Whole,
            None,
        ),
        (
            "aws_secret_key",
            r#"(?i)(?:aws)?[_-]?secret[_-]?access[_-]?key\\?["']?[ \t]*[=: \t][ \t]*\\?["']?([A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)"#.into(),
            Span::Group,
            None,
        ),
        (
            "azure_key",
            r#"(?i)\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)[ \t]*=[ \t]*([^\s;"'<>]+)"#.into(),
            Span::Group,
            None,
        ),
        (
            "azure_sas",
            r"(?i)[?&;]sig=([A-Za-z0-9%+/=_-]{16,})".into(),
            Span::Group,
            None,
        ),
        ("gcp_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b".into(), Span::Whole, None),
        ("gcp_token", r"\bya29\.[0-9A-Za-z_-]{20,}".into(), Span::Whole, None),
        ("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b".into(), Span::Whole, None),
        (
            "pypi_token",
            r"\bpypi-AgE[A-Za-z0-9_-]{40,}".into(),
            Span::Whole,
            None,
        ),
        (
            "sendgrid_key",
            r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}".into(),
            Span::Whole,
            None,
        ),
        ("twilio_key", r"\bSK[0-9a-fA-F]{32}\b".into(), Span::Whole, None),
        (
            "digitalocean_token",
            r"\bdo[opr]_v1_[a-f0-9]{64}\b".into(),
            Span::Whole,
            None,
        ),
        (
            "vault_token",
            r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}".into(),
            Span::Whole,
            None,
        ),
        ("api_key", r"\bsk-[A-Za-z0-9_-]{16,}\b".into(), Span::Whole, None),
        (
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*".into(),
            Span::Whole,
            None,
        ),
        // Credentials in a URL: scheme://user:password@host (the password may hold `@`, `#`
        // and `?` when whoever wrote it did not percent-encode them).
        (
            "password",
            r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@"'<>]*:([^\s/"'<>]+)@"#.into(),
            Span::Group,
            None,
        ),
        // SQL: CREATE/ALTER ROLE/USER ... [ENCRYPTED] PASSWORD '...', user mappings'
        // `password '...'`, `IDENTIFIED BY '...'`.
        (
            "password",
            r"(?i)\b(?:PASSWORD|IDENTIFIED\s+BY)(?:\s+|\s*=\s*|\s*\(\s*)(E'|'|\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)".into(),
            Span::SqlLiteral,
            None,
        ),
        // HTTP authorization.
        (
            "basic_auth",
            r"(?i)\bbasic[ \t]+([A-Za-z0-9+/]{6,}={0,2})".into(),
            Span::Group,
            Some(basic_credentials),
        ),
        (
            "bearer_token",
            r"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/=-]{8,})".into(),
            Span::Group,
            Some(opaque_token),
        ),
        (
            "authorization",
            r#"(?i)\b(?:proxy-)?authorization\\?["']?[ \t]*[:=][ \t]*\\?["']?((?:[A-Za-z0-9-]+[ \t]+)?[^\s"'\\,;]+)"#.into(),
            Span::Group,
            Some(other_authorization),
        ),
        (
            "cookie",
            r#"(?i)\b(?:set-)?cookie\\?["']?[ \t]*[:=][ \t]*\\?["']?([^\r\n"'\\]+)"#.into(),
            Span::Group,
            Some(keyed_value),
        ),
        // Passwords on the command lines of the clients that take them there.
        (
            "password",
            r#"\bmysql(?:dump|admin|import|check|sh)?\b[^\n|;&]*?[ \t]-p([^\s'"\-][^\s'"]*)|\bredis-cli\b[^\n|;&]*?[ \t]-a[ \t]+([^\s'"]+)|\bsshpass[ \t]+-p[ \t]*([^\s'"]+)|\bcurl\b[^\n|;&]*?[ \t](?:-u|--user)[ \t]+['"]?[^\s:'"]+:([^\s'"]+)|\bdocker[ \t]+login\b[^\n|;&]*?[ \t]-p[ \t]+([^\s'"]+)"#.into(),
            Span::Group,
            Some(keyed_value),
        ),
    ];
    // Keyed values: `key=value`, `key: value`, `"key": "value"`, `key => value`, then
    // `--key value` on command lines.
    for (kind, words) in KEYED {
        v.push((
            kind,
            format!(r#"(?i)(?:{words})\\?["']?[ \t]*(?:=>|:=|[=:])[ \t]*{VALUE}"#),
            Span::Group,
            Some(keyed_value),
        ));
        v.push((
            kind,
            format!(r#"(?i)(?:^|[\s"'])--?[a-z0-9-]*?(?:{words})[ \t]+{FLAG_VALUE}"#),
            Span::Group,
            Some(keyed_value),
        ));
    }
    v.push((
        "email",
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b".into(),
        Span::Whole,
        Some(not_a_url_user),
    ));
    v
}

/// The built-in rules, in the order they apply (a test checks that every one compiled).
static BUILTIN: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    specs()
        .iter()
        .filter_map(|(kind, pat, span, check)| {
            Regex::new(pat).ok().map(|re| Rule {
                kind: kind.to_string(),
                re,
                span: *span,
                check: *check,
            })
        })
        .collect()
});

/// A team's own secret pattern: every match is replaced by `[REDACTED:<kind>]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomRedaction {
    pub kind: String,
    pub pattern: String,
}

/// The team's own patterns (`[policy] redact`), applied after the built-in ones.
static CUSTOM: std::sync::RwLock<Vec<Rule>> = std::sync::RwLock::new(Vec::new());

/// Installs the configured custom patterns for every later redaction. A pattern that does not
/// compile is an error naming it; nothing is installed then.
pub fn configure(custom: &[CustomRedaction]) -> Result<(), String> {
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
            span: Span::Whole,
            check: None,
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
    let mut out: Option<String> = None;
    let run = |rule: &Rule, out: &mut Option<String>| {
        let cur = out.as_deref().unwrap_or(text);
        if let Some(next) = apply(cur, rule) {
            *out = Some(next);
        }
    };
    BUILTIN.iter().for_each(|r| run(r, &mut out));
    if let Ok(custom) = CUSTOM.read() {
        for r in custom.iter() {
            run(r, &mut out);
        }
    }
    out.unwrap_or_else(|| text.to_string())
}

/// `text` with `rule`'s secrets replaced, or None when it has none.
fn apply(text: &str, rule: &Rule) -> Option<String> {
    let mut out = String::new();
    let mut last = 0;
    let mut pos = 0;
    while pos <= text.len() {
        let Some(caps) = rule.re.captures_at(text, pos) else {
            break;
        };
        let Some(m) = caps.get(0) else { break };
        let span = match rule.span {
            Span::Whole => m.range(),
            Span::Group => caps
                .iter()
                .skip(1)
                .flatten()
                .next()
                .map_or(m.range(), |g| g.range()),
            Span::SqlLiteral => match caps.get(1) {
                Some(open) => open.start()..sql_literal_end(text, open.range()),
                None => m.range(),
            },
        };
        let end = span.end.max(m.end());
        pos = if end > m.start() {
            end
        } else {
            // An empty match: step over one character.
            end + text[end..].chars().next().map_or(1, char::len_utf8)
        };
        if span.is_empty()
            || span.start < last
            || text[span.clone()].starts_with("[REDACTED:")
            || rule.check.is_some_and(|c| !c(text, span.clone()))
        {
            continue;
        }
        out.push_str(&text[last..span.start]);
        out.push_str("[REDACTED:");
        out.push_str(&rule.kind);
        out.push(']');
        last = span.end;
    }
    if last == 0 && out.is_empty() {
        return None;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// Where a SQL string literal that opens at `open` ends (just after its closing quote). A
/// literal that never closes (a query text cut at `track_activity_query_size`) runs to the end
/// of its line.
fn sql_literal_end(text: &str, open: Range<usize>) -> usize {
    let opener = &text[open.clone()];
    let body = open.end;
    let line_end = || text[body..].find('\n').map_or(text.len(), |i| body + i);
    if opener.starts_with('$') {
        return text[body..]
            .find(opener)
            .map_or_else(line_end, |i| body + i + opener.len());
    }
    let backslash_escapes = opener.len() == 2; // E'...'
    let b = text.as_bytes();
    let mut i = body;
    while i < b.len() {
        match b[i] {
            b'\\' if backslash_escapes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    line_end()
}

/// A keyed value that is a real value: not a [`placeholder`], and not, in SQL (`token =
/// t.token`, `password = crypt($1, ...)`), a column or a function call.
fn keyed_value(text: &str, span: Range<usize>) -> bool {
    let v = text[span.clone()].trim();
    if placeholder(v) {
        return false;
    }
    let before = &text[..span.start];
    let spaced_eq = before.ends_with("= ") || before.trim_end().ends_with(" =");
    static SQL_REF: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"^(?:[a-z_][a-z0-9_]*\(.*|[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)$").ok()
    });
    !(spaced_eq && SQL_REF.as_ref().is_some_and(|re| re.is_match(v)))
}

/// A value that stands for a secret without being one: a bind parameter (`$1`, `?`, `%s`,
/// `:name`), a reference (`${env:X}`, `$VAR`, `{{x}}`, `<x>`), a path, a mask (`***`), or
/// `null`-like.
fn placeholder(v: &str) -> bool {
    if v.is_empty() || v.starts_with('/') || v.starts_with('~') {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    if [
        "null",
        "none",
        "nil",
        "true",
        "false",
        "undefined",
        "redacted",
        "<redacted>",
        "?",
        "%s",
    ]
    .contains(&lower.as_str())
    {
        return true;
    }
    static PLACEHOLDER: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(
            r"^(?:\$\d+|\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|\{\{.*\}\}|<[^>]*>|%\([a-z_]+\)s|:[a-z_][a-z0-9_]*|[*xX]{3,})$",
        )
        .ok()
    });
    PLACEHOLDER.as_ref().is_some_and(|re| re.is_match(v))
}

/// `Basic <base64>` whose base64 decodes to `user:password`.
fn basic_credentials(text: &str, span: Range<usize>) -> bool {
    use base64::Engine;
    let v = text[span].trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(v)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .is_some_and(|s| s.contains(':') && s.chars().all(|c| !c.is_control()))
}

/// A bearer token looks random: a digit in it, or long and of mixed case (`Bearer
/// authentication failed` is prose).
fn opaque_token(text: &str, span: Range<usize>) -> bool {
    let v = &text[span];
    v.bytes().any(|b| b.is_ascii_digit())
        || (v.len() >= 16
            && v.bytes().any(|b| b.is_ascii_uppercase())
            && v.bytes().any(|b| b.is_ascii_lowercase()))
}

/// An `Authorization` value other than Basic and Bearer (which have their own rules).
fn other_authorization(text: &str, span: Range<usize>) -> bool {
    let v = &text[span.clone()];
    let scheme = v
        .split([' ', '\t'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    scheme != "basic" && scheme != "bearer" && !v.contains("[REDACTED:") && keyed_value(text, span)
}

/// `user@host` right after `scheme://` is a URL's user, not an e-mail address.
fn not_a_url_user(text: &str, span: Range<usize>) -> bool {
    !text[..span.start].ends_with("://")
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
    fn every_built_in_rule_compiles() {
        assert_eq!(BUILTIN.len(), specs().len());
    }

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
    fn sql_password_literals_end_where_sql_says() {
        let cases = [
            (
                "ALTER ROLE app PASSWORD 'it''s-a-secret' VALID UNTIL 'infinity'",
                "ALTER ROLE app PASSWORD [REDACTED:password] VALID UNTIL 'infinity'",
            ),
            (
                r"CREATE ROLE app LOGIN PASSWORD E'back\\sl\'ash' CONNECTION LIMIT 5",
                "CREATE ROLE app LOGIN PASSWORD [REDACTED:password] CONNECTION LIMIT 5",
            ),
            (
                "ALTER USER app WITH ENCRYPTED PASSWORD $pw$has$$dollars'and quotes$pw$;",
                "ALTER USER app WITH ENCRYPTED PASSWORD [REDACTED:password];",
            ),
            (
                "alter role app password $$x$$",
                "alter role app password [REDACTED:password]",
            ),
            (
                "ALTER ROLE app PASSWORD 'cut-by-track_activity_query_si\nnext line",
                "ALTER ROLE app PASSWORD [REDACTED:password]\nnext line",
            ),
        ];
        for (input, expect) in cases {
            assert_eq!(redact(input), expect, "{input}");
        }
    }

    #[test]
    fn placeholders_and_ordinary_sql_are_not_secrets() {
        for t in [
            "UPDATE users SET password = $1 WHERE id = $2",
            "SELECT id FROM sessions WHERE token = ? AND expires_at > now()",
            "ALTER ROLE app PASSWORD $1",
            "UPDATE users SET password_hash = crypt($1, gen_salt('bf'))",
            "SELECT * FROM api_keys k WHERE k.token = t.token",
            "FATAL: password authentication failed for user \"app\"",
            r#"{"prompt_tokens": 1200, "completion_tokens": 30, "max_tokens": 4096}"#,
            "token=${env:SLACK_BOT_TOKEN} password=$DB_PASSWORD secret: null",
            "Bearer authentication is required",
            "PWD=/srv/app OLDPWD=/root --password-stdin --token-file /run/secrets/token",
            "basic troubleshooting steps for the payments service",
            "the password's expiry is tomorrow",
        ] {
            assert_eq!(redact(t), t);
        }
    }

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
