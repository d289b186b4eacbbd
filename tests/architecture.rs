//! The crate's shape, checked: the modules form layers (no import circles between top-level
//! modules), the model transport never sees collectors or the reasoner, the registry never
//! imports a tool, the agent and the reasoner read only the tools' published answers, the
//! incident flow never names Slack, and source files stay small.
//!
//! Dependencies are read from `crate::<module>` paths in each file's code (comments and the
//! `#[cfg(test)]` part left out), which is how every module in this crate names another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file before its tests, without comment lines.
fn code(p: &Path) -> String {
    let text = std::fs::read_to_string(p).expect("read");
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`src/agent/board.rs` → `agent`).
fn top(src: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "main" | "lib" | "bin")).then(|| name.to_string())
}

/// Every `crate::name` and each name inside `use crate::{a, b::c}`.
fn referenced(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// module → (module it uses → files that use it).
fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|p| top(&src, p)).collect();
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for p in &files {
        let Some(from) = top(&src, p) else { continue };
        g.entry(from.clone()).or_default();
        for to in referenced(&code(p)) {
            if to != from && modules.contains(&to) {
                let rel = p.strip_prefix(&src).unwrap_or(p).display().to_string();
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel);
            }
        }
    }
    g
}

/// A circle through `start`, if there is one (depth-first search).
fn circle(
    g: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    start: &str,
) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(at).map(|m| m.keys()).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(g, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_top_level_modules_import_each_other_without_circles() {
    let g = graph();
    assert!(g.len() > 10, "too few modules found: {:?}", g.keys());
    let mut circles = vec![];
    for m in g.keys() {
        if let Some(c) = circle(&g, m) {
            let hops: Vec<String> = c
                .windows(2)
                .map(|w| {
                    let files = &g[&w[0]][&w[1]];
                    format!(
                        "{} -> {} ({})",
                        w[0],
                        w[1],
                        files.iter().next().cloned().unwrap_or_default()
                    )
                })
                .collect();
            circles.push(hops.join(", "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_layers_hold() {
    let g = graph();
    let uses = |a: &str, b: &str| g.get(a).is_some_and(|m| m.contains_key(b));
    // The model layer is transport only: it never sees collectors, the agent or the reasoner.
    for below in ["collectors", "agent", "reasoner", "registry", "server"] {
        assert!(
            !uses("llm", below),
            "llm uses {below}: {:?}",
            g["llm"].get(below)
        );
    }
    // The registry receives its tools from the composition root; it imports none.
    for tool in ["collectors", "actions", "memory", "app"] {
        assert!(
            !uses("registry", tool),
            "registry imports {tool}: {:?}",
            g["registry"].get(tool)
        );
    }
    // The configuration is read by everything and reads nothing but the redactor.
    let config_uses: Vec<_> = g["config"].keys().cloned().collect();
    assert!(
        config_uses.iter().all(|m| m == "redact" || m == "taxonomy"),
        "config uses {config_uses:?}"
    );
    // Nothing below the composition root builds the parts: only binaries and the server's top
    // use `app`.
    for (m, to) in &g {
        if to.contains_key("app") {
            assert!(
                matches!(m.as_str(), "server" | "eval" | "cli"),
                "{m} uses the composition root: {:?}",
                to["app"]
            );
        }
    }
}

/// No source file has more than 500 lines before its tests. A test module counts only when it
/// comes last: the count stops at the first `#[cfg(test)]` line, so one placed early would hide
/// the code after it, and that is refused too.
#[test]
fn source_files_stay_under_500_lines_before_their_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut long = BTreeMap::new();
    let mut hidden = vec![];
    for p in &files {
        let text = std::fs::read_to_string(p).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        let n = lines
            .iter()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .count();
        let rel = p.strip_prefix(&src).unwrap_or(p).display().to_string();
        if n > 500 {
            long.insert(rel.clone(), n);
        }
        // After the tests, nothing but the tests: `#[cfg(test)] mod x;` (an outlined test file)
        // followed by more code would move that code out of the count.
        if n < lines.len() && lines[n + 1..].iter().any(|l| l.starts_with("pub ")) {
            hidden.push(rel);
        }
    }
    assert!(
        long.is_empty(),
        "over 500 lines before their tests: {long:?}"
    );
    assert!(hidden.is_empty(), "code after the tests in {hidden:?}");
}

/// The incident flow writes events and knows none of their readers: Slack and the web page
/// subscribe to the bus (`server::bus`) like any client. Only the Slack modules (`slack*.rs`:
/// the bridge, its routes, the client), the module root and the state that holds the bridge and
/// subscribes it (`state.rs`) may name Slack; the runner and the API handlers never do.
#[test]
fn the_incident_flow_knows_nothing_about_slack() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut files = vec![];
    rust_files(&server, &mut files);
    let mut knows = vec![];
    for p in &files {
        let name = p.strip_prefix(&server).unwrap_or(p).display().to_string();
        if name.starts_with("slack") || name == "mod.rs" || name == "state.rs" {
            continue;
        }
        let code = code(p);
        if code.contains("slack_bridge") || code.contains("st.slack") || code.contains(".slack.") {
            knows.push(name);
        }
    }
    assert!(knows.is_empty(), "these know about Slack: {knows:?}");
    // The check sees a call into the bridge when there is one.
    assert!(code(&server.join("state.rs")).contains("slack_bridge::follow"));
}

/// The agent and the offline reasoner read what tools answered as data: they may name the
/// collectors' published answers (`collectors::outputs`) and nothing else of a collector (its
/// sampling, sessions, parsers).
#[test]
fn the_agent_and_the_reasoner_see_tool_outputs_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut reached = vec![];
    for dir in ["agent", "reasoner"] {
        let mut files = vec![];
        rust_files(&src.join(dir), &mut files);
        for p in &files {
            let code = code(p);
            for (i, _) in code.match_indices("crate::collectors") {
                let rest = &code[i + "crate::collectors".len()..];
                if !rest.starts_with("::outputs::") {
                    let line: String = rest.chars().take_while(|c| *c != '\n').collect();
                    let rel = p.strip_prefix(&src).unwrap_or(p).display().to_string();
                    reached.push(format!("{rel}: crate::collectors{line}"));
                }
            }
        }
    }
    assert!(reached.is_empty(), "past the outputs: {reached:#?}");
    // The check sees the paths it is about.
    assert!(code(&src.join("reasoner/read.rs")).contains("crate::collectors::outputs::"));
}
