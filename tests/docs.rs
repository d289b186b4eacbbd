//! Documented means tested. Every fenced block, command and `ONCALL_*` name in README.md and the
//! Markdown files under docs/ and tools/ is loaded, parsed or run here, so a documented path can
//! not break silently:
//! - a ```toml block is a settings file `oncall config check` loads as written (a block that is
//!   something else starts with `# not an oncall config: <what it is>`);
//! - a ```json block is JSON (one document, or one per line);
//! - a ```sql block parses as PostgreSQL;
//! - a command (```sh blocks, `$ ` lines, inline `oncall ...` / `cargo ...` spans) parses with
//!   oncall's own command line, names a bench, test, fuzz target or script that exists, or is run
//!   verbatim by another test (its text appears under tests/);
//! - an `ONCALL_<SECTION>__<KEY>` name sets that setting, and any other `ONCALL_*` name (a secret
//!   such as `ONCALL_PG_PASSWORD`) can be set without breaking the configuration;
//! - the secret-variable example of docs/investigations.md runs under `oncall serve`, against a real PostgreSQL
//!   with password authentication and a real HTTP flag service (a local capture server).

mod common;

use clap::Parser;
use common::*;
use oncall::cli::Cli;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, then every Markdown file under docs/ and tools/.
fn documents() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs", "tools"] {
        if let Ok(rd) = std::fs::read_dir(root().join(dir)) {
            let mut more: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect();
            more.sort();
            files.extend(more);
        }
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read a document");
            let name = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
            (name, text)
        })
        .collect()
}

/// A fenced block: where it starts, its language tag, its text, and the test that runs it when
/// the line before its fence says so (`<!-- test: NAME -->`, see tests/common/docs.rs).
struct Block {
    at: String,
    lang: String,
    text: String,
    test: Option<String>,
}

fn blocks() -> Vec<Block> {
    let mut out = vec![];
    for (name, text) in documents() {
        let mut open: Option<(usize, String, String, Option<String>)> = None;
        let mut marker: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(tag) = trimmed.strip_prefix("```") {
                match open.take() {
                    None => {
                        open = Some((i + 1, tag.trim().to_string(), String::new(), marker.take()))
                    }
                    Some((start, lang, body, test)) => out.push(Block {
                        at: format!("{name}:{start}"),
                        lang,
                        text: body,
                        test,
                    }),
                }
            } else if let Some((_, _, body, _)) = open.as_mut() {
                body.push_str(line);
                body.push('\n');
            } else if let Some(m) = trimmed
                .trim_end()
                .strip_prefix("<!-- test:")
                .and_then(|r| r.strip_suffix("-->"))
            {
                marker = Some(m.trim().to_string());
            } else if !trimmed.trim().is_empty() {
                marker = None;
            }
        }
        assert!(open.is_none(), "{name}: a fenced block is never closed");
    }
    out
}

/// Runs `oncall` in the repository (so `tools/` and `prompts/` resolve as for a user in a
/// checkout) with no `ONCALL_*` variable but those given.
fn oncall_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(ONCALL);
    c.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ONCALL_") {
            c.env_remove(k);
        }
    }
    let out = c.envs(env.iter().copied()).output().expect("run oncall");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const NOT_CONFIG: &str = "# not an oncall config:";

#[test]
fn every_toml_block_is_a_settings_file_oncall_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = vec![];
    let mut loaded = 0;
    for b in blocks().into_iter().filter(|b| b.lang == "toml") {
        if b.text.trim_start().starts_with(NOT_CONFIG) {
            toml::from_str::<toml::Table>(&b.text)
                .unwrap_or_else(|e| panic!("{}: not TOML: {e}", b.at));
            continue;
        }
        let path = dir.path().join("oncall.toml");
        std::fs::write(&path, &b.text).unwrap();
        let (code, _, err) = oncall_in(
            &root(),
            &["--config", path.to_str().unwrap(), "config", "check"],
            &[],
        );
        if code != 0 {
            failures.push(format!("{}: {}", b.at, err.trim()));
        }
        loaded += 1;
    }
    assert!(loaded >= 6, "only {loaded} settings blocks found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_json_and_sql_block_parses() {
    let mut seen = 0;
    for b in blocks() {
        match b.lang.as_str() {
            "json" => {
                if serde_json::from_str::<Value>(&b.text).is_err() {
                    for (i, line) in b.text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                        serde_json::from_str::<Value>(line).unwrap_or_else(|e| {
                            panic!("{}: line {} is not JSON: {e}", b.at, i + 1)
                        });
                    }
                }
                seen += 1;
            }
            "sql" => {
                let dialect = sqlparser::dialect::PostgreSqlDialect {};
                if let Err(e) = sqlparser::parser::Parser::parse_sql(&dialect, &psql_free(&b.text))
                {
                    panic!("{}: not PostgreSQL: {e}", b.at);
                }
                seen += 1;
            }
            _ => {}
        }
    }
    assert!(seen >= 2, "only {seen} json/sql blocks");
}

/// psql's own syntax (`\c`, `:'var'`) is not SQL: blank it out before parsing.
fn psql_free(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with('\\'))
        .map(|l| {
            let mut s = l.to_string();
            while let Some(i) = s.find(":'") {
                let end = s[i + 2..].find('\'').map_or(s.len(), |j| i + 3 + j);
                s.replace_range(i..end, "'placeholder'");
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A documented command and where it is.
struct Documented {
    at: String,
    text: String,
    /// Inline in prose: may name a subcommand without its arguments.
    inline: bool,
}

fn commands() -> Vec<Documented> {
    let mut out = vec![];
    let tests = test_sources();
    for b in blocks() {
        let shell = matches!(b.lang.as_str(), "sh" | "bash" | "shell" | "console");
        if let Some(test) = &b.test {
            // A block another test runs as written: that test must exist.
            if !tests.contains(&format!("\"{test}\"")) {
                out.push(Documented {
                    at: b.at.clone(),
                    text: format!("UNOWNED block marked `{test}`: no test names it"),
                    inline: false,
                });
            }
            continue;
        }
        for line in b.text.lines() {
            let line = line.trim();
            let cmd = if let Some(c) = line.strip_prefix("$ ") {
                c
            } else if shell && !line.starts_with('#') && !line.is_empty() {
                line
            } else {
                continue;
            };
            out.push(Documented {
                at: b.at.clone(),
                text: cmd.to_string(),
                inline: false,
            });
        }
    }
    for (name, text) in documents() {
        let mut in_fence = false;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            if in_fence {
                continue;
            }
            for (j, span) in line.split('`').enumerate() {
                let looks = span.starts_with("oncall ")
                    || span.starts_with("cargo ")
                    || span.starts_with("scripts/")
                    || (span.contains('=') && span.contains(" oncall "));
                if j % 2 == 1 && looks {
                    out.push(Documented {
                        at: format!("{name}:{}", i + 1),
                        text: span.to_string(),
                        inline: true,
                    });
                }
            }
        }
    }
    out
}

/// `a && b | c; d` into simple commands, each with its leading `NAME=value` assignments split
/// off; `$(...)` substitutions become commands of their own.
/// One simple command: its `NAME=value` assignments and its words.
type Simple = (Vec<(String, String)>, Vec<String>);

fn simple_commands(text: &str) -> Vec<Simple> {
    let mut text = strip_comment(text);
    let mut subs = vec![];
    while let Some(i) = text.find("$(") {
        let mut depth = 0;
        let mut end = text.len();
        for (k, ch) in text[i + 1..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1 + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        subs.push(text[i + 2..end].to_string());
        text.replace_range(i..(end + 1).min(text.len()), "SUBSTITUTED");
    }
    let mut out = vec![];
    for part in split_operators(&text)
        .iter()
        .map(String::as_str)
        .chain(subs.iter().map(String::as_str))
    {
        let Some(words) = shlex::split(part.trim()) else {
            out.push((vec![], vec![format!("UNPARSABLE {part}")]));
            continue;
        };
        let mut env = vec![];
        let mut words = words.into_iter().peekable();
        if words.peek().is_some_and(|w| w == "export") {
            words.next();
        }
        while let Some(w) = words.peek() {
            match w.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
                {
                    env.push((k.to_string(), v.to_string()));
                    words.next();
                }
                _ => break,
            }
        }
        let words: Vec<String> = words.collect();
        if !words.is_empty() || !env.is_empty() {
            out.push((env, words));
        }
    }
    out
}

/// Splits at `&&`, `||`, `|` and `;` outside quotes.
fn split_operators(s: &str) -> Vec<String> {
    let (mut single, mut double) = (false, false);
    let mut parts = vec![String::new()];
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '&' | '|' | ';' if !single && !double => {
                if chars.get(i + 1) == Some(&c) {
                    i += 1;
                }
                parts.push(String::new());
                i += 1;
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
        i += 1;
    }
    parts
}

/// Drops a trailing `# comment` that is outside quotes.
fn strip_comment(s: &str) -> String {
    let (mut single, mut double) = (false, false);
    let bytes: Vec<char> = s.chars().collect();
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && (i == 0 || bytes[i - 1].is_whitespace()) => {
                return bytes[..i].iter().collect::<String>().trim_end().to_string();
            }
            _ => {}
        }
    }
    s.to_string()
}

/// Every file under tests/ and .ci/, for commands another test runs verbatim.
fn test_sources() -> String {
    let mut all = std::fs::read_to_string(root().join(".ci/run")).unwrap_or_default();
    fn walk(dir: &Path, all: &mut String) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, all);
                } else if p
                    .extension()
                    .is_some_and(|x| x == "rs" || x == "sh" || x == "py")
                {
                    all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
    }
    walk(&root().join("tests"), &mut all);
    all
}

/// Why a documented command is not known to work, or None when it is.
fn check_command(words: &[String], inline: bool, tests: &str) -> Option<String> {
    // Usage notation: `[--out FILE]` is an optional part; check it as if given.
    let words: Vec<String> = words
        .iter()
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let first = words.first()?.as_str();
    let parse = |args: &[String]| -> Option<String> {
        let argv = std::iter::once("oncall".to_string()).chain(args.iter().cloned());
        match Cli::try_parse_from(argv) {
            Ok(_) => None,
            Err(e) => {
                use clap::error::ErrorKind::*;
                match e.kind() {
                    DisplayHelp | DisplayVersion => None,
                    MissingRequiredArgument | DisplayHelpOnMissingArgumentOrSubcommand
                        if inline =>
                    {
                        None
                    }
                    _ => Some(format!("does not parse: {}", e.to_string().lines().next()?)),
                }
            }
        }
    };
    match first {
        "oncall" => parse(&words[1..]),
        "cargo" => {
            let sub = words.get(1).map(String::as_str).unwrap_or("");
            if let Some(dash) = words.iter().position(|w| w == "--")
                && sub == "run"
            {
                return parse(&words[dash + 1..]);
            }
            match sub {
                "run" => parse(&[]),
                "bench" => names_after(&words, "--bench", |n| {
                    root().join("benches").join(format!("{n}.rs")).exists()
                }),
                "nextest" | "test" if words.iter().any(|w| w == "--test") => {
                    names_after(&words, "--test", |n| {
                        root().join("tests").join(format!("{n}.rs")).exists()
                    })
                }
                "+nightly" if words.get(2).is_some_and(|w| w == "fuzz") => {
                    let target = words.get(4)?;
                    let exists = root()
                        .join("fuzz/fuzz_targets")
                        .join(format!("{target}.rs"))
                        .exists();
                    (!exists).then(|| format!("no fuzz target {target}"))
                }
                "fmt" | "clippy" | "nextest" | "test" => {
                    let text = words.join(" ");
                    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap_or_default();
                    (!ci.contains(&text)).then(|| "not what .ci/run runs".into())
                }
                _ => verbatim(&words, tests),
            }
        }
        w if w.starts_with("scripts/") || w.starts_with("eval/") || w.starts_with("./") => {
            let p = root().join(w.trim_start_matches("./"));
            let ok = std::fs::metadata(&p)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                .unwrap_or(false);
            (!ok).then(|| format!("{w} is not an executable file in the repository"))
        }
        _ => verbatim(&words, tests),
    }
}

/// A command oncall does not own: a test must run exactly this text.
fn verbatim(words: &[String], tests: &str) -> Option<String> {
    let text = words.join(" ");
    (!tests.contains(&text)).then(|| format!("no test runs `{text}` verbatim"))
}

fn names_after(words: &[String], flag: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
    let missing: Vec<&String> = words
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| &w[1])
        .filter(|n| !exists(n))
        .collect();
    (!missing.is_empty()).then(|| format!("no such {flag}: {missing:?}"))
}

#[test]
fn every_documented_command_parses_or_is_run_by_a_test() {
    let tests = test_sources();
    let mut failures = vec![];
    let mut checked = 0;
    for d in commands() {
        for (_, words) in simple_commands(&d.text) {
            if words.is_empty() {
                continue;
            }
            checked += 1;
            if let Some(why) = check_command(&words, d.inline, &tests) {
                failures.push(format!("{}: `{}`: {why}", d.at, d.text));
            }
        }
    }
    assert!(checked >= 20, "only {checked} commands found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `ONCALL_*` name the documents mention, with the value they give it (if any).
fn documented_names() -> Vec<(String, String, Option<String>)> {
    let re = regex::Regex::new(r"ONCALL_[A-Z0-9_]*[A-Z0-9]").unwrap();
    let mut out: Vec<(String, String, Option<String>)> = vec![];
    for (name, text) in documents() {
        for (i, line) in text.lines().enumerate() {
            for m in re.find_iter(line) {
                let value = line[m.end()..]
                    .strip_prefix('=')
                    .and_then(|rest| shlex::split(rest).and_then(|w| w.into_iter().next()))
                    .filter(|v| !v.contains("SUBSTITUTED") && !v.starts_with("$("));
                if !out.iter().any(|(n, _, _)| n == m.as_str()) {
                    out.push((m.as_str().to_string(), format!("{name}:{}", i + 1), value));
                }
            }
        }
    }
    out
}

#[test]
fn every_documented_oncall_variable_does_what_the_docs_say() {
    let names = documented_names();
    assert!(
        names.iter().any(|(n, _, _)| n == "ONCALL_PG_PASSWORD"),
        "{names:?}"
    );
    // The defaults, to know each setting's type.
    let (code, out, err) = oncall_in(&root(), &["config", "check", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let defaults: Value = serde_json::from_str(&out).unwrap();
    let default_of = |key: &str| {
        defaults["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .map(|s| s["value"].clone())
    };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("oncall.toml");
    // Per-database settings need a database to belong to.
    std::fs::write(
        &base,
        "[postgres.app]\nurl = \"postgres://oncall@db/app\"\n",
    )
    .unwrap();
    let mut failures = vec![];
    for (name, at, value) in names {
        if name == "ONCALL_CONFIG" {
            continue;
        }
        let setting = name.contains("__") || name == "ONCALL_LOG";
        let key = name["ONCALL_".len()..]
            .to_ascii_lowercase()
            .replace("__", ".");
        let value = match (&value, setting) {
            (Some(v), _) if !v.is_empty() && v != "..." => v.clone(),
            (_, true) => match default_of(&key) {
                Some(Value::String(s)) => s,
                Some(v) => v.to_string(),
                None => {
                    failures.push(format!("{at}: {name}: no setting {key}"));
                    continue;
                }
            },
            (_, false) => "a-secret-value".into(),
        };
        let (code, out, err) = oncall_in(
            &root(),
            &[
                "--config",
                base.to_str().unwrap(),
                "config",
                "check",
                "--json",
            ],
            &[(name.as_str(), value.as_str())],
        );
        if code != 0 {
            failures.push(format!("{at}: {name}={value} stops oncall: {}", err.trim()));
            continue;
        }
        let report: Value = serde_json::from_str(&out).unwrap();
        let ok = if setting {
            report["settings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["key"] == key.as_str() && s["source"] == format!("env {name}"))
        } else {
            report["not_settings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == name.as_str())
        };
        if !ok {
            failures.push(format!(
                "{at}: {name} is not what the docs say it is: {out}"
            ));
        }
        if out.contains("a-secret-value") {
            failures.push(format!("{at}: config check printed the value of {name}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `[postgres.app]` block of docs/investigations.md, pointed at a real cluster.
fn documented_postgres_block(pg: &pg::Pg) -> String {
    let doc = std::fs::read_to_string(root().join("docs/investigations.md")).unwrap();
    let block = blocks()
        .into_iter()
        .find(|b| b.lang == "toml" && b.text.starts_with("[postgres.app]"))
        .expect("the [postgres.app] block of docs/investigations.md")
        .text;
    assert!(doc.contains(&block));
    assert!(
        block.contains("password_env = \"ONCALL_PG_PASSWORD\""),
        "{block}"
    );
    block.replace("db.internal:5432", &format!("127.0.0.1:{}", pg.port))
}

/// A local HTTP server standing in for the team's flag service (a test double: no such service
/// runs here); it records each request's method, path and Authorization header.
async fn flag_service() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let s2 = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap| {
            let seen = s2.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(format!("{method} {uri} {auth}"));
                axum::Json(serde_json::json!({"ok": true}))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_secret_variables_work_under_oncall_serve() {
    if !pg::Pg::available() {
        panic!("PostgreSQL 15 is not installed: run scripts/setup-test-deps.sh");
    }
    let pg = pg::Pg::start(40);
    pg.sql(
        "postgres",
        &format!(
            "CREATE ROLE oncall_actions LOGIN PASSWORD '{}'; GRANT pg_signal_backend TO oncall_actions",
            pg::PASSWORD
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oncall.toml");
    std::fs::write(&config, documented_postgres_block(&pg)).unwrap();
    let (flags_url, seen) = flag_service().await;
    let op = "operator-token-docs";
    let port = free_port();
    let data = dir.path().join("data");
    let env: Vec<(&str, String)> = vec![
        ("ONCALL_TOKEN", op.to_string()),
        ("ONCALL_PG_PASSWORD", pg::PASSWORD.to_string()),
        ("ONCALL_FLAGS_URL", flags_url.clone()),
        ("ONCALL_FLAGS_TOKEN", "flag-token-from-env".into()),
        ("ONCALL_SERVER__DATA_DIR", data.display().to_string()),
        ("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}")),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cfg = config.to_str().unwrap();

    // A second approver, made with the documented command under the same settings.
    let (code, bo, err) = oncall_in(
        dir.path(),
        &["--config", cfg, "token", "add", "bo", "--role", "approver"],
        &env_ref,
    );
    assert_eq!(code, 0, "{err}");
    let bo = bo.trim().to_string();

    let mut c = Command::new(ONCALL);
    c.current_dir(root()).args(["--config", cfg, "serve"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("ONCALL_") {
            c.env_remove(k);
        }
    }
    c.envs(env_ref.iter().copied());
    let server = serve::Serve::spawn(c, port).await.expect("oncall serve");
    let http = reqwest::Client::new();
    let call = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = http
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(token.to_string());
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // The password from ONCALL_PG_PASSWORD reaches PostgreSQL (scram over TCP): the database
    // answers as the read-only role.
    let (s, v) = call(
        op,
        reqwest::Method::POST,
        "/api/v1/triage",
        Some(serde_json::json!({"report": "queries on the app database are slow"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("postgres.") && text.contains("\"reachable\":true"),
        "no answer from the database: {}",
        &text[..text.len().min(3000)]
    );
    assert!(!text.contains("auth_failed"), "{text}");

    // The shipped flag action reads ${env:ONCALL_FLAGS_URL} and ${env:ONCALL_FLAGS_TOKEN}.
    let (s, v) = call(
        op,
        reqwest::Method::POST,
        "/api/v1/incidents",
        Some(serde_json::json!({"report": "checkout errors since the new-checkout flag"})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let incident = v["id"].as_str().unwrap().to_string();
    let (s, v) = call(
        op,
        reqwest::Method::POST,
        &format!("/api/v1/incidents/{incident}/actions"),
        Some(serde_json::json!({"tool": "flag.disable", "args": {"flag": "new-checkout"}})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let request = v["request"].as_str().unwrap().to_string();
    let (s, v) = call(
        &bo,
        reqwest::Method::POST,
        &format!("/api/v1/approvals/{request}/decision"),
        Some(serde_json::json!({"approve": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = seen.lock().unwrap().clone();
        if let Some(hit) = got.first() {
            assert_eq!(
                hit, "POST /flags/new-checkout/disable Bearer flag-token-from-env",
                "{got:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the approved flag.disable never reached the flag service"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The eval suite's counts as the documents state them (README.md, docs/, eval/README.md) are the
/// suite's: total, recorded, derived, `none` controls, unseen-style cases, and the cases the
/// memory recall scores (a category with a sibling, `none` aside). Each kind of statement must
/// still be there, so removing one fails too.
#[test]
fn the_counts_the_docs_state_match_the_repository() {
    let mut cases: Vec<(String, Value)> = vec![];
    for e in std::fs::read_dir(root().join("eval/cases")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            cases.push((name, v));
        }
    }
    let prov = |kind: &str| {
        cases
            .iter()
            .filter(|(_, c)| c["provenance"].as_str().unwrap_or("").starts_with(kind))
            .count()
    };
    let category = |c: &Value| c["truth"]["category"].as_str().unwrap_or("").to_string();
    let none = cases.iter().filter(|(_, c)| category(c) == "none").count();
    let unseen = cases
        .iter()
        .filter(|(n, _)| n.starts_with("unseen-") || n.starts_with("none-unseen-"))
        .count();
    let mut by_category = std::collections::HashMap::<String, usize>::new();
    for (_, c) in &cases {
        *by_category.entry(category(c)).or_default() += 1;
    }
    let scored: usize = by_category
        .iter()
        .filter(|(k, n)| k.as_str() != "none" && **n > 1)
        .map(|(_, n)| n)
        .sum();
    let (total, recorded, derived) = (cases.len(), prov("recorded"), prov("derived:"));
    assert!(total >= 30, "{total} cases");

    let mut texts = documents();
    let eval_readme = std::fs::read_to_string(root().join("eval/README.md")).unwrap();
    texts.push(("eval/README.md".into(), eval_readme));
    // (what, pattern with the count in its first group, the count in the repository)
    let statements: &[(&str, &str, usize)] = &[
        ("cases", r"(\d+) incidents in `eval/cases/`", total),
        ("cases", r"(\d+) cases, \d+ recorded and", total),
        ("cases", r"today's (\d+) cases", total),
        ("cases", r"(\d+) cases \((?:offline|release build)\)", total),
        ("recorded", r"\((\d+) recorded from real", recorded),
        ("recorded", r"\d+ cases, (\d+) recorded and", recorded),
        (
            "derived",
            r"(\d+) derived from public post-mortems and",
            derived,
        ),
        ("derived", r"recorded and\s+(\d+) derived", derived),
        ("none", r"(\d+) of them `none` controls", none),
        (
            "unseen",
            r"(\d+) come from `eval/scenarios/record-unseen.sh`",
            unseen,
        ),
        ("unseen", r"(\d+) of them \(`unseen-\*`", unseen),
        ("unseen", r"Of the (\d+) unseen-style cases", unseen),
        ("scored", r"cases, (\d+) are scored", scored),
    ];
    let mut failures = vec![];
    for (what, pattern, actual) in statements {
        let re = regex::Regex::new(pattern).unwrap();
        let mut found = 0;
        for (name, text) in &texts {
            for c in re.captures_iter(text) {
                found += 1;
                let said: usize = c[1].parse().unwrap();
                if said != *actual {
                    failures.push(format!(
                        "{name}: \"{}\" says {said} {what}; eval/cases/ has {actual}",
                        &c[0]
                    ));
                }
            }
        }
        if found == 0 {
            failures.push(format!(
                "no document states the {what} count as /{pattern}/"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
