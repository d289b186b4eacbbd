//! A torn audit tail against the real `oncall serve`: the server is killed with SIGKILL and its
//! audit log left ending in part of a record, as a write cut short leaves it. `oncall audit
//! verify` names the torn line and fails; the restarted server keeps the torn bytes aside,
//! records the recovery in the chain and serves (its approvals come back from the log), and
//! verify then passes, listing the recovery. A record edited in the middle of the log still stops
//! the server, naming the line.

mod common;

use common::ONCALL;
use oncall::policy::audit::AuditLog;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const OP: &str = "operator-audit-recovery-token";

/// A running `oncall serve`, killed (SIGKILL) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `sleep 300` for action requests to target, killed when dropped.
struct Target(Child);

impl Target {
    fn start() -> Target {
        Target(Command::new("sleep").arg("300").spawn().unwrap())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve_cmd(dir: &Path, port: u16) -> Command {
    let mut c = Command::new(ONCALL);
    c.arg("serve")
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_TOKEN", OP)
        .env("ONCALL_SERVER__DATA_DIR", dir)
        .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ONCALL_SERVER__REPLICA", "r1");
    c
}

/// Starts `oncall serve` on `dir` and waits for /healthz to answer 200.
async fn serve(dir: &Path, port: u16) -> Server {
    let child = serve_cmd(dir, port)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("oncall serve");
    let mut s = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status() == 200
        {
            return s;
        }
        if let Some(status) = s.0.try_wait().unwrap() {
            panic!("oncall serve exited ({status}) instead of serving");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("oncall serve did not come up");
}

async fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("http://127.0.0.1:{port}{path}"),
        )
        .bearer_auth(OP);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("send");
    let s = r.status().as_u16();
    let t = r.text().await.unwrap_or_default();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn verify(file: &Path) -> (bool, String) {
    let out: Output = Command::new(ONCALL)
        .args(["audit", "verify", "--file"])
        .arg(file)
        .env_remove("ONCALL_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_audit_tail_is_kept_aside_and_the_restarted_server_serves() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let port = free_port();
    let mut server = serve(dir.path(), port).await;

    // The server writes audit records: two action requests, left pending.
    let (s, v) = call(
        port,
        "POST",
        "/api/v1/incidents",
        Some(json!({"report": "users see slow pages"})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let incident = v["id"].as_str().unwrap().to_string();
    let mut targets = vec![];
    let mut requests = vec![];
    for _ in 0..2 {
        let child = Target::start();
        let (s, v) = call(
            port,
            "POST",
            &format!("/api/v1/incidents/{incident}/actions"),
            Some(json!({"tool": "host.signal_process", "args": {"pid": child.0.id(), "signal": "TERM"}})),
        )
        .await;
        assert_eq!(s, 202, "{v}");
        requests.push(v["request"].as_str().unwrap().to_string());
        targets.push(child);
    }

    // SIGKILL, and the log ends in the first 83 bytes of a record, without a newline.
    server.0.kill().unwrap();
    let _ = server.0.wait();
    let before = std::fs::read_to_string(&audit).unwrap();
    let complete = before.lines().count();
    assert!(complete >= 2, "{before}");
    let torn = &before.lines().last().unwrap().as_bytes()[..83];
    std::fs::write(&audit, [before.as_bytes(), torn].concat()).unwrap();
    let torn_line = complete + 1;

    // Before any recovery, verify names the torn line and fails.
    let (ok, out) = verify(&audit);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("line {torn_line}: a torn write"))
            && out.contains(&format!("TORN WRITE at line {torn_line}")),
        "{out}"
    );

    // The restarted server serves: /healthz, and the API answers from the recovered log.
    let _server = serve(dir.path(), port).await;
    let (s, list) = call(
        port,
        "GET",
        &format!("/api/v1/approvals?incident={incident}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{list}");
    for r in &requests {
        let e = list
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == *r)
            .unwrap_or_else(|| panic!("request {r} lost: {list}"));
        assert_eq!(e["state"]["state"], "pending", "{e}");
    }
    let child = Target::start();
    let (s, v) = call(
        port,
        "POST",
        &format!("/api/v1/incidents/{incident}/actions"),
        Some(
            json!({"tool": "host.signal_process", "args": {"pid": child.0.id(), "signal": "TERM"}}),
        ),
    )
    .await;
    assert_eq!(s, 202, "the log takes new records after the recovery: {v}");
    targets.push(child);

    // The complete records are untouched; the torn bytes are kept beside the log.
    let after = std::fs::read_to_string(&audit).unwrap();
    assert!(after.starts_with(&before), "{after}");
    let kept: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("audit.jsonl.torn-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), torn);

    // verify passes and lists the recovery where the torn line was.
    let (ok, out) = verify(&audit);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "line {torn_line}: recovered after a torn write: 83 bytes kept in {}",
            kept[0].display()
        )),
        "{out}"
    );
    assert!(
        out.contains("the chain is intact (1 recovery after a torn write)"),
        "{out}"
    );
    assert!(!out.contains("note:"), "the kept copy matches: {out}");
    drop(targets);
}

/// Runs `oncall serve` on `dir`, expecting it to refuse to start: returns its stderr.
async fn refused(dir: &Path) -> String {
    let mut child = serve_cmd(dir, free_port())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("oncall serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oncall serve started on a tampered audit log");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_middle_record_or_a_torn_middle_line_stops_the_server_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let rollback = |log: &AuditLog, r: &str| {
        log.append("request", json!({"request": r, "tool": "deploy.rollback"}))
            .unwrap();
    };
    // Two records, a torn write, its recovery (line 3), one record after it.
    {
        let log = AuditLog::open(&audit).unwrap();
        rollback(&log, "r0");
        rollback(&log, "r1");
    }
    let mut bytes = std::fs::read(&audit).unwrap();
    bytes.extend_from_slice(br#"{"seq":3,"at":"2026-"#);
    std::fs::write(&audit, &bytes).unwrap();
    {
        let log = AuditLog::open(&audit).unwrap();
        rollback(&log, "r2");
    }
    let good = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert!(lines[2].contains("\"kind\":\"recovered\""), "{good}");
    let (ok, out) = verify(&audit);
    assert!(
        ok && out.contains("line 3: recovered after a torn write: 20 bytes"),
        "{out}"
    );

    // Record 2's content edited.
    std::fs::write(&audit, good.replacen("\"r1\"", "\"r9\"", 1)).unwrap();
    let err = refused(dir.path()).await;
    assert!(
        err.contains("line 2: record 2 was edited") && err.contains("audit verify"),
        "{err}"
    );

    // The recovery record itself edited: it is chained like any other.
    std::fs::write(&audit, good.replacen("\"bytes\":20", "\"bytes\":2", 1)).unwrap();
    let err = refused(dir.path()).await;
    assert!(err.contains("line 3: record 3 was edited"), "{err}");

    // A torn line with records after it is not a torn tail.
    let torn_middle = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        lines[0],
        &lines[1][..40],
        lines[1],
        lines[2],
        lines[3]
    );
    std::fs::write(&audit, &torn_middle).unwrap();
    let err = refused(dir.path()).await;
    assert!(err.contains("line 2: not an audit record"), "{err}");

    // Nothing more was kept aside, cut or appended.
    assert_eq!(std::fs::read_to_string(&audit).unwrap(), torn_middle);
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".torn-")
        })
        .count();
    assert_eq!(kept, 1, "only the first recovery's copy");
    let (ok, out) = verify(&audit);
    assert!(!ok && out.contains("BROKEN: line 2"), "{out}");
}
