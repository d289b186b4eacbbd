//! The command line's contract: bad input is one line naming the problem and the fix, exit 2.

mod common;

use common::*;
use std::io::Write;

fn one_line_error(code: i32, stderr: &str) {
    assert_eq!(code, 2, "exit code 2 for bad input; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn empty_report() {
    let (code, _, err) = oncall(&["triage", "  "], &[]);
    one_line_error(code, &err);
    assert!(
        err.contains("report is empty") && err.contains("oncall triage \""),
        "{err}"
    );
}

#[test]
fn missing_report() {
    let (code, _, err) = oncall(&["triage"], &[]);
    one_line_error(code, &err);
    assert!(err.contains("REPORT"), "{err}");
}

#[test]
fn unknown_flag() {
    let (code, _, err) = oncall(&["triage", "--jsn", "slow"], &[]);
    one_line_error(code, &err);
    assert!(err.contains("--jsn") && err.contains("--help"), "{err}");
}

#[test]
fn unreadable_config_file() {
    let (code, _, err) = oncall(
        &["--config", "/nonexistent/oncall.toml", "triage", "slow"],
        &[],
    );
    one_line_error(code, &err);
    assert!(err.contains("/nonexistent/oncall.toml"), "{err}");
    let (code, _, err) = oncall(
        &["triage", "slow"],
        &[("ONCALL_CONFIG", "/nonexistent/x.toml")],
    );
    one_line_error(code, &err);
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
}

fn config_file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

#[test]
fn config_value_of_the_wrong_type() {
    let f = config_file("[host]\nwindow_ms = \"soon\"\n");
    let (code, _, err) = oncall(
        &["--config", f.path().to_str().unwrap(), "triage", "slow"],
        &[],
    );
    one_line_error(code, &err);
    assert!(err.contains("window_ms") && err.contains("soon"), "{err}");
}

#[test]
fn unknown_config_key_is_named() {
    let f = config_file("[thresholds.cpu]\nutilisation_pct = { warn = 80, crit = 90 }\n");
    let (code, _, err) = oncall(
        &["--config", f.path().to_str().unwrap(), "triage", "slow"],
        &[],
    );
    one_line_error(code, &err);
    assert!(err.contains("utilisation_pct"), "{err}");
    let (code, _, err) = oncall(&["triage", "slow"], &[("ONCALL_HOST__WINDOW", "5")]);
    one_line_error(code, &err);
    assert!(err.contains("window"), "{err}");
}

#[test]
fn env_overrides_the_file() {
    let f = config_file("[host]\nwindow_ms = 5000\n");
    let (code, _, err) = oncall(&["--config", f.path().to_str().unwrap(), "tools"], &[]);
    one_line_error(code, &err);
    let (code, _, err) = oncall(
        &["--config", f.path().to_str().unwrap(), "tools"],
        &[("ONCALL_HOST__WINDOW_MS", "300")],
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn tools_lists_every_tool_with_risk_and_schema() {
    let (code, out, err) = oncall(&["tools", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let tools: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tools = tools.as_array().unwrap();
    let snap = tools
        .iter()
        .find(|t| t["name"] == "host.use_snapshot")
        .unwrap();
    assert_eq!(snap["risk"], "read");
    assert!(
        snap["parameters"]["properties"]["window_ms"]["description"]
            .as_str()
            .unwrap()
            .contains("100 to 1000")
    );
    let sig = tools
        .iter()
        .find(|t| t["name"] == "host.signal_process")
        .unwrap();
    assert_eq!(sig["risk"], "live_action");
    let (code, text, _) = oncall(&["tools"], &[]);
    assert_eq!(code, 0);
    assert!(
        text.contains("host.signal_process  [live_action]"),
        "{text}"
    );
    assert!(text.contains("board.evidence  [read, board]"), "{text}");
    let board = tools.iter().find(|t| t["name"] == "board.propose").unwrap();
    assert_eq!(board["kind"], "board");
}

/// The committed schemas in tools/schemas.json are what the binary generates.
/// Regenerate with: UPDATE_TOOL_SCHEMAS=1 cargo nextest run --test cli
#[test]
fn committed_tool_schemas_are_current() {
    let (code, out, _) = oncall(&["tools", "--json"], &[]);
    assert_eq!(code, 0);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/schemas.json");
    if std::env::var_os("UPDATE_TOOL_SCHEMAS").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed, out,
        "tools/schemas.json is stale: regenerate with UPDATE_TOOL_SCHEMAS=1"
    );
}

/// The configuration block of docs/configuration.md is a file oncall loads as written.
#[test]
fn the_documented_configuration_block_loads() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .expect("docs/configuration.md");
    let start = readme
        .find("```toml\nlog = ")
        .expect("the configuration block")
        + "```toml\n".len();
    let len = readme[start..].find("```").expect("its end");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oncall.toml");
    std::fs::write(&path, &readme[start..start + len]).unwrap();
    let (code, _, err) = oncall(&["--config", path.to_str().unwrap(), "tools"], &[]);
    assert_eq!(
        code, 0,
        "docs/configuration.md's configuration does not load: {err}"
    );
}

#[test]
fn audit_verify_exits_1_on_a_tampered_log_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = oncall::policy::audit::AuditLog::open(&path).unwrap();
    for i in 0..3 {
        log.append("request", serde_json::json!({"i": i})).unwrap();
    }
    let f = path.display().to_string();
    let (code, out, err) = oncall(&["audit", "verify", "--file", &f], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("3 record(s)") && out.contains("intact"),
        "{out}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"i\":1", "\"i\":5", 1)).unwrap();
    let (code, out, _) = oncall(&["audit", "verify", "--file", &f], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN: line 2: record 2 was edited"), "{out}");
    // Without --file it verifies the log the server writes (here: the data dir's audit.jsonl).
    let d = dir.path().display().to_string();
    let (code, out, _) = oncall(&["audit", "verify"], &[("ONCALL_SERVER__DATA_DIR", &d)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 2: record 2 was edited"), "{out}");
}

#[test]
fn dry_run_shows_the_argv_and_refuses_injection() {
    let (code, out, err) = oncall(
        &[
            "dry-run",
            "deploy.rollback",
            r#"{"deployment": "storefront"}"#,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("deployment/storefront") && out.contains("nothing was run"),
        "{out}"
    );
    let (code, _, err) = oncall(
        &[
            "dry-run",
            "deploy.rollback",
            r#"{"deployment": "api; rm -rf /"}"#,
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("does not match its pattern"), "{err}");
    let (code, _, err) = oncall(&["dry-run", "host.use_snapshot", "{}"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no dry run"), "{err}");
}

/// `oncall config check`: a misspelt setting stops it with one line naming the variable; a name
/// one underscore short of a setting is a warning naming the setting; a secret's value is never
/// printed, only whether its variable is set.
#[test]
fn config_check_names_bad_variables_and_never_prints_secrets() {
    let (code, _, err) = oncall(&["config", "check"], &[("ONCALL_HOST__WINDOWMS", "500")]);
    one_line_error(code, &err);
    assert!(err.contains("windowms"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oncall.toml");
    std::fs::write(
        &path,
        "[postgres.app]\nurl = \"postgres://oncall:inline-secret@db/app\"\npassword_env = \"ONCALL_PG_PASSWORD\"\n",
    )
    .unwrap();
    let (code, out, err) = oncall(
        &["--config", path.to_str().unwrap(), "config", "check"],
        &[
            ("ONCALL_PG_PASSWORD", "env-secret-value"),
            ("ONCALL_HOST_WINDOW_MS", "500"),
            ("ONCALL_HOST__TOP_PROCESSES", "7"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "ONCALL_HOST_WINDOW_MS is not a setting; did you mean ONCALL_HOST__WINDOW_MS?"
        ),
        "{err}"
    );
    assert!(
        !out.contains("inline-secret") && !out.contains("env-secret-value"),
        "{out}"
    );
    assert!(
        out.contains("postgres.app.url = \"postgres://oncall:****@db/app\""),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("host.top_processes = 7")
            && l.ends_with("# env ONCALL_HOST__TOP_PROCESSES")),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.starts_with("postgres.app.password_env = \"ONCALL_PG_PASSWORD\"")
                && l.contains("the variable is set")
        ),
        "{out}"
    );
    assert!(
        out.contains("ONCALL_PG_PASSWORD: named by postgres.app.password_env"),
        "{out}"
    );
}

/// `log_format = "json"`: every line `oncall serve` writes on stderr is one JSON object a log
/// pipeline can read, the listening line included.
#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(ONCALL)
        .arg("serve")
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_TOKEN", "operator-json-logs")
        .env("ONCALL_LOG", "info")
        .env("ONCALL_LOG_FORMAT", "json")
        .env("ONCALL_SERVER__DATA_DIR", dir.path())
        .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = vec![];
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        let done = line.contains("listening");
        lines.push(line);
        if done || lines.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let listening = lines
        .iter()
        .find(|l| l.contains("listening"))
        .expect("a listening line");
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    let v: serde_json::Value = serde_json::from_str(listening).unwrap();
    assert_eq!(
        v["fields"]["address"],
        format!("127.0.0.1:{port}"),
        "{listening}"
    );
}
