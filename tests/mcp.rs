//! oncall and MCP, with a real peer: the Python `mcp` SDK (installed by
//! scripts/setup-test-deps.sh into target/otel-venv) is the client of `oncall mcp` (stdio) and of
//! `/mcp` under `oncall serve` (Streamable HTTP), and, written as tests/mcp/toolserver.py, the
//! external MCP server whose tool oncall's agent uses.
//!
//! The faults are real: a busy-looping process for the investigation, a live `sleep` and a
//! counting action for the actions no MCP call may run. TEST DOUBLE: the model in the
//! external-toolset tests is `ScriptedLlm` (tests/common/llm.rs), since a paid model cannot
//! run here.

mod common;

use common::llm::{Scripted, ScriptedLlm, text_turn, tool_turn};
use common::serve::{OPERATOR, Serve};
use common::{Fault, ONCALL, Victim, counting_action};
use oncall::config::{Config, McpServerSettings};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with the `mcp` SDK, or None (a skip, refused under CI) when it is missing.
fn python() -> Option<PathBuf> {
    common::venv_python("mcp")
}

/// Runs tests/mcp/client.py with `plan`; its answer, one entry per step after `initialized`.
fn client(py: &Path, plan: Value) -> Vec<Value> {
    let mut child = Command::new(py)
        .arg(manifest().join("tests/mcp/client.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the MCP client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(plan.to_string().as_bytes())
        .expect("write the plan");
    let out = child.wait_with_output().expect("the MCP client");
    assert!(
        out.status.success(),
        "the MCP client failed: {}",
        out.status
    );
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    assert!(all[0]["initialized"].is_object(), "{all:?}");
    all[1..].to_vec()
}

fn names(listing: &Value) -> Vec<String> {
    listing["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {listing}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn tool<'a>(listing: &'a Value, name: &str) -> &'a Value {
    listing["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {listing}"))
}

/// The text of a tool result, and whether it is an error.
fn said(result: &Value) -> (String, bool) {
    let text = result["content"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|| result.to_string());
    (text, result["isError"] == true)
}

const ACTIONS: [&str; 4] = [
    "host.signal_process",
    "postgres.cancel_backend",
    "postgres.terminate_backend",
    "count.run",
];

#[test]
fn stdio_serves_read_tools_and_an_investigation_of_a_real_busy_loop() {
    let Some(py) = python() else { return };
    let data = tempfile::tempdir().unwrap();
    let hog = Fault::cpu_hog("mcp-burner");
    // The person is who their token says, as over HTTP.
    let tok = token(data.path(), "ana", "responder");
    let stdio = |steps: Value| {
        json!({
            "transport": "stdio",
            "command": [ONCALL, "mcp"],
            "env": {"ONCALL_SERVER__DATA_DIR": data.path(), "ONCALL_HOST__WINDOW_MS": "500", "ONCALL_MCP_TOKEN": tok},
            "steps": steps,
        })
    };
    let out = client(
        &py,
        stdio(json!([
            {"op": "list_tools"},
            {"op": "call", "tool": "host.use_snapshot", "args": {}},
            {"op": "call", "tool": "start_investigation", "args": {"question": "the api is slow on this host (db url postgres://app:hunter2secret@db/app)", "wait_s": 90}},
            {"op": "call", "tool": "host.signal_process", "args": {"pid": hog.pid, "signal": "KILL"}},
        ])),
    );
    let listed = names(&out[0]);
    for t in [
        "host.use_snapshot",
        "start_investigation",
        "get_board",
        "request_action",
    ] {
        assert!(
            listed.contains(&t.to_string()),
            "{t} missing from {listed:?}"
        );
    }
    for a in ACTIONS {
        assert!(
            !listed.contains(&a.to_string()),
            "{a} is listed: {listed:?}"
        );
    }
    let snap = tool(&out[0], "host.use_snapshot");
    assert_eq!(snap["annotations"]["readOnlyHint"], true, "{snap}");
    assert!(
        snap["inputSchema"]["properties"]["window_ms"].is_object(),
        "{snap}"
    );
    assert_eq!(
        tool(&out[0], "request_action")["annotations"]["destructiveHint"],
        true
    );

    let (text, err) = said(&out[1]);
    assert!(
        !err && text.contains("mcp-burner"),
        "the snapshot names the hog: {text}"
    );

    let (text, err) = said(&out[2]);
    assert!(!err, "{text}");
    let board: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(board["running"], false, "{board}");
    assert_eq!(
        board["hypotheses"][0]["category"], "host.cpu_saturation",
        "{board}"
    );
    let progress: Vec<String> = out[2]["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        progress
            .iter()
            .any(|m| m.contains("calling host.use_snapshot")),
        "progress while it ran: {progress:?}"
    );
    let (text, err) = said(&out[3]);
    assert!(err && text.contains("never runs over MCP"), "{text}");

    // A second client reads the incident as resources.
    let id = board["incident"]["id"].as_str().unwrap().to_string();
    let out = client(
        &py,
        stdio(json!([
            {"op": "list_resources"},
            {"op": "read", "uri": format!("oncall://incidents/{id}/events")},
            {"op": "read", "uri": format!("oncall://incidents/{id}/postmortem")},
            {"op": "call", "tool": "get_board", "args": {"incident": id}},
            {"op": "read", "uri": "oncall://incidents/1999-01-01-01"},
        ])),
    );
    let uris: Vec<&str> = out[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(
        uris.contains(&format!("oncall://incidents/{id}").as_str()),
        "{uris:?}"
    );
    let events = out[1]["contents"][0]["text"].as_str().unwrap();
    assert!(events.contains("investigation_finished"), "{events}");
    for r in &out {
        assert!(
            !r.to_string().contains("hunter2secret"),
            "a secret went out over MCP: {r}"
        );
    }
    let md = out[2]["contents"][0]["text"].as_str().unwrap();
    assert!(md.starts_with('#'), "{md}");
    let (text, err) = said(&out[3]);
    assert!(!err && text.contains("host.cpu_saturation"), "{text}");
    assert!(
        out[4]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no incident"),
        "{:?}",
        out[4]
    );
    drop(hog);
}

fn token(data: &Path, name: &str, role: &str) -> String {
    common::token_add(("ONCALL_SERVER__DATA_DIR", data.as_os_str()), name, role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_no_role_can_run_an_action_and_a_request_waits_for_a_human() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (actions, count) = counting_action(dir.path());
    let mut victim = Victim::start();
    let srv = Serve::start(
        &data,
        &[
            ("ONCALL_ACTIONS__DIR", actions.display().to_string()),
            ("ONCALL_HOST__WINDOW_MS", "100".to_string()),
        ],
    )
    .await
    .expect("oncall serve");
    let url = format!("{}/mcp", srv.base);

    // No token, no MCP.
    let r = srv.http.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // An incident to ask in.
    let opened: Value = srv
        .http
        .post(format!("{}/api/v1/incidents", srv.base))
        .bearer_auth(OPERATOR)
        .json(&json!({"report": "a worker is stuck"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let incident = opened["id"].as_str().unwrap().to_string();

    let roles = ["viewer", "responder", "approver"];
    let tokens: Vec<String> = roles
        .iter()
        .map(|r| token(&data, &format!("mcp-{r}"), r))
        .collect();
    let http = |tok: &str, steps: Value| json!({"transport": "http", "url": url, "token": tok, "steps": steps});
    let listing = client(&py, http(&tokens[2], json!([{"op": "list_tools"}])));
    let mut every: Vec<String> = names(&listing[0]);
    every.extend(ACTIONS.iter().map(|s| s.to_string()));
    let victim_pid = victim.pid();
    let args_for = |name: &str| match name {
        "host.signal_process" => json!({"pid": victim_pid, "signal": "KILL"}),
        "count.run" => json!({}),
        "postgres.cancel_backend" | "postgres.terminate_backend" => json!({"pid": 1}),
        "start_investigation" => json!({"question": "is anything wrong?", "wait_s": 0}),
        "get_board" | "get_postmortem" => json!({"incident": incident}),
        "request_action" => {
            json!({"incident": incident, "tool": "count.run", "args": {}, "why": "to see it wait"})
        }
        _ => json!({}),
    };
    for (role, tok) in roles.iter().zip(&tokens) {
        let mut steps = vec![json!({"op": "list_tools"})];
        steps.extend(
            every
                .iter()
                .map(|n| json!({"op": "call", "tool": n, "args": args_for(n)})),
        );
        let out = client(&py, http(tok, Value::Array(steps)));
        let listed = names(&out[0]);
        if *role == "viewer" {
            assert_eq!(
                listed,
                ["get_board", "get_postmortem", "list_incidents"],
                "{role}"
            );
        }
        for a in ACTIONS {
            assert!(!listed.contains(&a.to_string()), "{role} sees {a}");
        }
        for (n, r) in every.iter().zip(&out[1..]) {
            let (text, err) = said(r);
            if ACTIONS.contains(&n.as_str()) {
                assert!(err || r["error"].is_string(), "{role} ran {n}: {r}");
            }
            let viewers = ["get_board", "get_postmortem", "list_incidents"];
            if *role == "viewer" && !viewers.contains(&n.as_str()) && !ACTIONS.contains(&n.as_str())
            {
                assert!(
                    err && text.contains("viewer role"),
                    "{role} called {n}: {r}"
                );
            }
            if *role != "viewer" && n == "request_action" {
                assert!(!err && text.contains("filed, not run"), "{role}: {text}");
            }
        }
        assert!(victim.alive(), "{role}: the live process was signalled");
        let runs = std::fs::read_to_string(&count).unwrap_or_default();
        assert_eq!(runs.lines().count(), 0, "{role}: the counting action ran");
    }
    // The requests wait for a human: pending, unexecuted.
    let approvals: Value = srv
        .http
        .get(format!("{}/api/v1/approvals?incident={incident}", srv.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine: Vec<&Value> = approvals
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["tool"] == "count.run")
        .collect();
    assert_eq!(
        mine.len(),
        2,
        "responder and approver each filed one: {approvals}"
    );
    for a in mine {
        assert_eq!(a["state"]["state"], "pending", "{a}");
    }
    assert_eq!(std::fs::read_to_string(&count).unwrap_or_default(), "");
    drop(srv);
}

fn toolset(py: &Path, calls: &Path, read_only: bool) -> McpServerSettings {
    McpServerSettings {
        name: "queues".into(),
        command: vec![
            py.display().to_string(),
            manifest()
                .join("tests/mcp/toolserver.py")
                .display()
                .to_string(),
            calls.display().to_string(),
        ],
        url: String::new(),
        headers: Default::default(),
        env: Default::default(),
        read_only,
        read_tools: vec![],
        timeout_s: 20,
    }
}

fn model_config(base_url: &str) -> Config {
    let mut c = common::llm::model_config(base_url);
    c.llm.timeout_s = 5;
    c.llm.deadline_s = 60;
    c
}

async fn investigate_with(c: &Config, report: &str) -> oncall::agent::Investigation {
    let registry =
        oncall::app::with_toolsets(oncall::app::builtin_registry(Arc::new(c.clone())), c).await;
    let model = oncall::llm::openai::OpenAiModel::new(&c.llm).unwrap();
    let events = oncall::agent::events::Collect::default();
    oncall::reasoner::investigate(report, &registry, c, &model, &events)
        .await
        .unwrap()
}

/// The model double: it asks for `queues.queue_depth` of `orders`, then answers `last`.
async fn model_asking_for_the_orders_queue(last: &str) -> ScriptedLlm {
    ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[(
            "queues.queue_depth",
            r#"{"queue": "orders"}"#,
        )])),
        Scripted::Reply(text_turn(last)),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_uses_a_read_only_toolset_from_an_external_mcp_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls.txt");
    let llm = model_asking_for_the_orders_queue("The orders queue has no consumers.").await;
    let mut c = model_config(&llm.base_url);
    c.mcp.servers = vec![
        toolset(&py, &calls, true),
        // A server that cannot start degrades its own toolset only.
        McpServerSettings {
            name: "dead".into(),
            command: vec!["/bin/false".into()],
            ..toolset(&py, &calls, true)
        },
    ];
    let inv = investigate_with(&c, "orders are piling up").await;
    assert!(inv.fallback.is_none(), "{:?}", inv.notices);
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "orders\n");
    let offered = llm.requests()[0]["tools"].as_array().unwrap().clone();
    let q = offered
        .iter()
        .find(|t| t["function"]["name"] == "queues__queue_depth")
        .unwrap_or_else(|| panic!("not offered: {offered:?}"));
    assert!(
        q["function"]["description"]
            .as_str()
            .unwrap()
            .contains("[from the MCP server `queues`; reads]"),
        "{q}"
    );
    assert!(
        q["function"]["parameters"]["properties"]["queue"].is_object(),
        "{q}"
    );
    let answer = &llm.tool_messages(1)[0];
    assert!(answer.contains("48210"), "{answer}");
    assert!(
        !answer.contains("hunter2secret"),
        "the password reached the model: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toolset_not_marked_read_only_needs_an_approval_and_is_not_called() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls.txt");
    let llm = model_asking_for_the_orders_queue("Could not look.").await;
    let mut c = model_config(&llm.base_url);
    c.mcp.servers = vec![toolset(&py, &calls, false)];
    let _inv = investigate_with(&c, "orders are piling up").await;
    let answer = &llm.tool_messages(1)[0];
    assert!(answer.contains("status=\"error\""), "{answer}");
    assert!(answer.contains("approv"), "{answer}");
    assert!(!calls.exists(), "the server was called without an approval");
}

/// A process killed and reaped (by its own pid) when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_toolset_works_and_a_slow_call_degrades_only_its_toolset() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls.txt");
    let port = common::free_port();
    let _server = Proc(
        Command::new(&py)
            .arg(manifest().join("tests/mcp/toolserver.py"))
            .arg(&calls)
            .args(["http", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the MCP tool server"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tool server never listened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let over_http = McpServerSettings {
        name: "queues".into(),
        command: vec![],
        url: format!("http://127.0.0.1:{port}/mcp"),
        headers: Default::default(),
        env: Default::default(),
        read_only: true,
        read_tools: vec![],
        timeout_s: 3,
    };
    let unset = McpServerSettings {
        name: "tickets".into(),
        headers: [(
            "Authorization".to_string(),
            "ONCALL_TEST_UNSET_MCP_AUTH".to_string(),
        )]
        .into(),
        ..over_http.clone()
    };
    let (tools, problems) = oncall::toolsets::mcp::connect_all(&[over_http, unset]).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    let why = problems[0].to_string();
    assert!(
        why.contains("tickets") && why.contains("ONCALL_TEST_UNSET_MCP_AUTH"),
        "{why}"
    );
    let registry = oncall::registry::Registry::from_tools(tools);
    let out = registry
        .call("queues.queue_depth", json!({"queue": "payments"}), None)
        .await
        .unwrap();
    assert_eq!(out["depth"], 48210, "{out}");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "payments\n");
    assert!(!registry.spec("queues.queue_depth").unwrap().unavailable);
    let err = registry
        .call("queues.stall", json!({"seconds": 8}), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not answer within 3 s"), "{err}");
    // Withdrawn from the model for a while; the rest of oncall is untouched.
    assert!(registry.spec("queues.queue_depth").unwrap().unavailable);
}

#[test]
fn oncall_tools_lists_an_external_toolset_and_warns_about_a_dead_one() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oncall.toml");
    std::fs::write(
        &config,
        format!(
            "[[mcp.servers]]\nname = \"queues\"\ncommand = [{:?}, {:?}, {:?}]\nread_only = true\n\n[[mcp.servers]]\nname = \"dead\"\ncommand = [\"/bin/false\"]\ntimeout_s = 5\n",
            py.display().to_string(),
            manifest().join("tests/mcp/toolserver.py").display().to_string(),
            dir.path().join("calls.txt").display().to_string(),
        ),
    )
    .unwrap();
    let out = Command::new(ONCALL)
        .args(["--config", config.to_str().unwrap(), "tools"])
        .env_remove("ONCALL_CONFIG")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    // The server's own word makes a tool stricter, never looser.
    assert!(
        stdout.contains("queues.purge_queue  [live_action, external MCP]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("queues.queue_depth  [read, external MCP]"),
        "{stdout}"
    );
    assert!(stdout.contains("host.use_snapshot  [read]"), "{stdout}");
    assert!(
        stderr.contains("warning: MCP server `dead`") && stderr.contains("left out"),
        "{stderr}"
    );
}

#[test]
fn oncall_mcp_needs_a_token_it_knows() {
    let data = tempfile::tempdir().unwrap();
    let run = |token: Option<&str>| {
        let mut cmd = Command::new(ONCALL);
        cmd.arg("mcp")
            .env_remove("ONCALL_CONFIG")
            .env_remove("ONCALL_MCP_TOKEN")
            .env("ONCALL_SERVER__DATA_DIR", data.path())
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("ONCALL_MCP_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(None);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ONCALL_MCP_TOKEN") && err.contains("oncall token add"),
        "{err}"
    );
    let (code, err) = run(Some("oc_not_a_token_this_store_knows_0123456789"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not one this store knows"), "{err}");
}
