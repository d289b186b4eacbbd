//! The built-in rules: vendor token shapes, key material, HTTP authorization, credentials in
//! URLs and SQL, and keyed values in env-like, JSON, YAML and command-line forms.

use super::checks::{
    basic_credentials, keyed_value, not_a_url_user, opaque_token, other_authorization,
};
use super::{Check, Rule, Span};
use regex::Regex;
use std::sync::LazyLock;

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
pub(super) static BUILTIN: LazyLock<Vec<Rule>> = LazyLock::new(|| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_rule_compiles() {
        assert_eq!(BUILTIN.len(), specs().len());
    }
}
