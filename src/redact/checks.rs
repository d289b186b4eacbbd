//! The extra checks a candidate must pass to be a secret: not a placeholder, not a SQL column,
//! credentials that decode, tokens that look random.

use regex::Regex;
use std::ops::Range;
use std::sync::LazyLock;

/// A keyed value that is a real value: not a [`placeholder`], and not, in SQL (`token =
/// t.token`, `password = crypt($1, ...)`), a column or a function call.
pub(super) fn keyed_value(text: &str, span: Range<usize>) -> bool {
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
pub(super) fn placeholder(v: &str) -> bool {
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
pub(super) fn basic_credentials(text: &str, span: Range<usize>) -> bool {
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
pub(super) fn opaque_token(text: &str, span: Range<usize>) -> bool {
    let v = &text[span];
    v.bytes().any(|b| b.is_ascii_digit())
        || (v.len() >= 16
            && v.bytes().any(|b| b.is_ascii_uppercase())
            && v.bytes().any(|b| b.is_ascii_lowercase()))
}

/// An `Authorization` value other than Basic and Bearer (which have their own rules).
pub(super) fn other_authorization(text: &str, span: Range<usize>) -> bool {
    let v = &text[span.clone()];
    let scheme = v
        .split([' ', '\t'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    scheme != "basic" && scheme != "bearer" && !v.contains("[REDACTED:") && keyed_value(text, span)
}

/// `user@host` right after `scheme://` is a URL's user, not an e-mail address.
pub(super) fn not_a_url_user(text: &str, span: Range<usize>) -> bool {
    !text[..span.start].ends_with("://")
}
