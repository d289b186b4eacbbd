//! Statement text as evidence: literals replaced, secrets redacted, and the tables it names.

use regex::Regex;
use std::sync::LazyLock;

static STRING_LITERAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"'(?:[^']|'')*'").ok());
static NUMBER_LITERAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(\$?)\b\d+(?:\.\d+)?\b").ok());

/// Query text as evidence: literals replaced (pg_stat_statements normalizes most, but not
/// utility statements), secrets redacted, whitespace collapsed, length capped.
pub fn evidence_sql(query: &str, max_chars: usize) -> String {
    let q = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let q = STRING_LITERAL
        .as_ref()
        .map(|r| r.replace_all(&q, "'?'").into_owned())
        .unwrap_or(q);
    // Numbers become `?`, but `$1` placeholders stay as they are.
    let q = NUMBER_LITERAL
        .as_ref()
        .map(|r| {
            r.replace_all(&q, |c: &regex::Captures| {
                if c[1].is_empty() {
                    "?".to_string()
                } else {
                    c[0].to_string()
                }
            })
            .into_owned()
        })
        .unwrap_or(q);
    let q = crate::redact::redact(&q);
    if q.chars().count() > max_chars {
        format!("{}...", q.chars().take(max_chars).collect::<String>())
    } else {
        q
    }
}

static TABLE_REF: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(?:from|join|update|into)\s+(?:only\s+)?((?:"?[a-z_][a-z0-9_$]*"?\.)?"?[a-z_][a-z0-9_$]*"?)"#).ok()
});

/// Tables a statement names (FROM, JOIN, UPDATE, INSERT INTO), without schema.
pub fn tables_in(query: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    if let Some(re) = TABLE_REF.as_ref() {
        for c in re.captures_iter(query) {
            if let Some(m) = c.get(1) {
                let t = m
                    .as_str()
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string();
                if !t.starts_with("pg_")
                    && !out.contains(&t)
                    && !["select", "lateral"].contains(&t.to_lowercase().as_str())
                {
                    out.push(t);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_sql_drops_literals_and_secrets() {
        assert_eq!(
            evidence_sql("SELECT * FROM t WHERE a = 'x''y' AND b = 42", 200),
            "SELECT * FROM t WHERE a = '?' AND b = ?"
        );
        let s = evidence_sql("ALTER ROLE app PASSWORD 'hunter2'", 200);
        assert!(!s.contains("hunter2"), "{s}");
        assert!(evidence_sql(&"x ".repeat(500), 20).ends_with("..."));
        assert_eq!(evidence_sql("select $1, $2, 7", 50), "select $1, $2, ?");
        assert_eq!(
            evidence_sql("SELECT * FROM t WHERE id = $12", 50),
            "SELECT * FROM t WHERE id = $12"
        );
    }

    #[test]
    fn tables_named_by_a_statement() {
        assert_eq!(
            tables_in(
                "SELECT * FROM public.orders o JOIN customers c ON c.id = o.cid WHERE x = $1"
            ),
            vec!["orders", "customers"]
        );
        assert_eq!(
            tables_in("UPDATE \"Accounts\" SET a = $1"),
            vec!["Accounts"]
        );
        assert_eq!(
            tables_in("INSERT INTO audit_log VALUES ($1)"),
            vec!["audit_log"]
        );
        assert!(tables_in("SELECT 1").is_empty());
    }
}
