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

mod checks;
mod rules;
mod value;

pub use value::{redact_value, redacted};

use rules::BUILTIN;

use regex::Regex;
use std::ops::Range;

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

/// A team's own secret pattern: every match is replaced by `[REDACTED:<kind>]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomRedaction {
    pub kind: String,
    pub pattern: String,
}

/// The team's own patterns (`[policy] redact`), applied after the built-in ones.
static CUSTOM: std::sync::RwLock<Vec<Rule>> = std::sync::RwLock::new(Vec::new());

/// A custom pattern of `[policy] redact` that cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("[policy] redact: kind {0:?} must be letters, digits or _")]
    Kind(String),
    #[error("[policy] redact: pattern for {kind:?}: {source}")]
    Pattern { kind: String, source: regex::Error },
    #[error("the redactor's custom patterns are unavailable")]
    Unavailable,
}

/// Installs the configured custom patterns for every later redaction. A pattern that does not
/// compile is an error naming it; nothing is installed then.
pub fn configure(custom: &[CustomRedaction]) -> Result<(), ConfigureError> {
    let mut rules = vec![];
    for c in custom {
        if c.kind.is_empty()
            || !c
                .kind
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(ConfigureError::Kind(c.kind.clone()));
        }
        let re = Regex::new(&c.pattern).map_err(|source| ConfigureError::Pattern {
            kind: c.kind.clone(),
            source,
        })?;
        rules.push(Rule {
            kind: c.kind.clone(),
            re,
            span: Span::Whole,
            check: None,
        });
    }
    let mut slot = CUSTOM.write().map_err(|_| ConfigureError::Unavailable)?;
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
    fn ordinary_evidence_is_untouched() {
        let t = r#"{"resource":"fs:/","u":["space_used=19 % -- 73.5 GiB free of 252.0 GiB"],"name":"ledger-sync","pid":4242}"#;
        assert_eq!(redact(t), t);
        assert_eq!(
            redact("p99 latency > 2s on /api/checkout"),
            "p99 latency > 2s on /api/checkout"
        );
    }
}
