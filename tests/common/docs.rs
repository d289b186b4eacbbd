//! Reading the documentation the way the deploy and backup tests check it: the fenced blocks of
//! a Markdown file, each with the name of the test that covers it (`<!-- test: NAME -->` on
//! the line before its fence). Included with `#[path]` by the tests that use it.
#![allow(dead_code)]

/// One fenced block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The fence's language (`sh`, `toml`, ...).
    pub lang: String,
    /// The `<!-- test: NAME -->` marker right before it, if any.
    pub test: Option<String>,
    pub body: String,
}

/// Every fenced block of a Markdown text, in order.
pub fn blocks(md: &str) -> Vec<Block> {
    let mut out = vec![];
    let mut lines = md.lines().peekable();
    let mut last_marker: Option<String> = None;
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(lang) = t.strip_prefix("```") {
            let mut body = String::new();
            for l in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            out.push(Block {
                lang: lang.trim().to_string(),
                test: last_marker.take(),
                body,
            });
            continue;
        }
        if let Some(m) = t
            .strip_prefix("<!-- test:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            last_marker = Some(m.trim().to_string());
        } else if !t.is_empty() {
            last_marker = None;
        }
    }
    out
}

/// The body of the block marked `name` (panics naming it when missing).
pub fn marked(md: &str, name: &str) -> String {
    blocks(md)
        .into_iter()
        .find(|b| b.test.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no block marked <!-- test: {name} --> in the document"))
        .body
}

/// The commands of a shell block: its non-empty lines without comments.
pub fn commands(body: &str) -> Vec<String> {
    body.lines()
        .map(|l| match l.find(" #") {
            Some(i) => l[..i].trim(),
            None => l.trim(),
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The repository's `docs/deploy.md`.
pub fn deploy_md() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md"))
        .expect("docs/deploy.md")
}

/// A systemd unit file: (section, key, value) in order; comments and blank lines left out.
pub fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = vec![];
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') && l.ends_with(']') {
            section = l[1..l.len() - 1].to_string();
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The repository's `deploy/oncall.service`.
pub fn unit() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/oncall.service"
    ))
    .expect("deploy/oncall.service")
}

/// Every value of `key` in `[Service]` (and the other sections).
pub fn unit_values(text: &str, key: &str) -> Vec<String> {
    unit_entries(text)
        .into_iter()
        .filter(|(_, k, _)| k == key)
        .map(|(_, _, v)| v)
        .collect()
}

/// The one value of `key` (panics when absent or repeated).
pub fn unit_value(text: &str, key: &str) -> String {
    let v = unit_values(text, key);
    assert_eq!(
        v.len(),
        1,
        "{key} should be set once in the unit, got {v:?}"
    );
    v[0].clone()
}
