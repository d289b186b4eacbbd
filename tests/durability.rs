//! Durability: the real `oncall serve` is killed with SIGKILL in the middle of an investigation.
//! After a restart on the same data directory every acknowledged event, approval and audit
//! record is there, the cut investigation is marked interrupted and can be resumed, a pending
//! approval can still be decided, and an executed one never runs again.

mod common;

use common::ONCALL;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OP: &str = "operator-durability-token";

struct Server(Child);

impl Drop for Server {
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

async fn serve(dir: &Path, port: u16) -> Server {
    serve_with(dir, port, &[]).await
}

async fn serve_with(dir: &Path, port: u16, env: &[(&str, String)]) -> Server {
    let child = Command::new(ONCALL)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_TOKEN", OP)
        .env("ONCALL_SERVER__DATA_DIR", dir)
        .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ONCALL_SERVER__REPLICA", "r1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("oncall serve");
    let s = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok()
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("oncall serve did not come up");
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("send");
        let s = r.status().as_u16();
        let t = r.text().await.unwrap_or_default();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn events(&self, id: &str) -> Vec<Value> {
        let (_, v) = self
            .call(OP, "GET", &format!("/api/v1/incidents/{id}"), None)
            .await;
        v["events"].as_array().cloned().unwrap_or_default()
    }

    async fn wait(&self, id: &str, kind: &str, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let ev = self.events(id).await;
            if ev.iter().any(|e| e["kind"] == kind) {
                return ev;
            }
            assert!(Instant::now() < deadline, "no {kind} in {id}: {ev:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn token(dir: &Path, name: &str, role: &str) -> String {
    common::token_add(("ONCALL_SERVER__DATA_DIR", dir.as_os_str()), name, role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_investigation_loses_no_acknowledged_event_approval_or_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let bo = token(dir.path(), "bo", "approver");
    let port = free_port();
    let mut server = serve(dir.path(), port).await;
    let c = Client {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };

    // Incident A runs to the end; one action is approved and runs, another stays pending.
    let (s, v) = c
        .call(
            OP,
            "POST",
            "/api/v1/incidents",
            Some(json!({"report": "users see slow pages"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let a = v["id"].as_str().unwrap().to_string();
    c.wait(&a, "investigation_finished", 60).await;
    let mut first = Command::new("sleep").arg("300").spawn().unwrap();
    let mut second = Command::new("sleep").arg("300").spawn().unwrap();
    let request = |pid: u32| {
        let c = &c;
        let a = a.clone();
        async move {
            let (s, v) = c
                .call(
                    OP,
                    "POST",
                    &format!("/api/v1/incidents/{a}/actions"),
                    Some(json!({"tool": "host.signal_process", "args": {"pid": pid, "signal": "TERM"}})),
                )
                .await;
            assert_eq!(s, 202, "{v}");
            v["request"].as_str().unwrap().to_string()
        }
    };
    let r1 = request(first.id()).await;
    let r2 = request(second.id()).await;
    let (s, v) = c
        .call(
            &bo,
            "POST",
            &format!("/api/v1/approvals/{r1}/decision"),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    c.wait(&a, "action_verified", 30).await;
    assert!(!first.wait().unwrap().success());
    let (s, v) = c
        .call(
            OP,
            "POST",
            &format!("/api/v1/incidents/{a}/messages"),
            Some(json!({"text": "rolled back at 10:20"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let acked_message = v["seq"].as_i64().unwrap();

    // Incident B: killed as soon as its investigation has started.
    let (s, v) = c
        .call(
            OP,
            "POST",
            "/api/v1/incidents",
            Some(json!({"report": "checkout errors for users"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let b = v["id"].as_str().unwrap().to_string();
    let seen_b = common::server::stream_until(
        &c.base,
        OP,
        &b,
        None,
        "tool_called",
        Duration::from_secs(30),
    )
    .await;
    server.0.kill().unwrap(); // SIGKILL
    let _ = server.0.wait();
    let audit_before = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();

    // Restart on the same directory.
    let _server = serve(dir.path(), port).await;
    let after_b = c.events(&b).await;
    for (seq, e) in &seen_b {
        let got = after_b
            .iter()
            .find(|x| x["seq"] == *seq)
            .unwrap_or_else(|| panic!("acknowledged event {seq} of {b} is lost"));
        assert_eq!(got["kind"], e["kind"]);
        assert_eq!(got["data"], e["data"]);
    }
    assert!(
        after_b.iter().any(|e| e["kind"] == "interrupted"),
        "{after_b:#?}"
    );
    let (_, inc) = c
        .call(OP, "GET", &format!("/api/v1/incidents/{b}"), None)
        .await;
    assert_eq!(inc["incident"]["status"], "interrupted");
    let after_a = c.events(&a).await;
    assert!(
        after_a
            .iter()
            .any(|e| e["seq"] == acked_message && e["kind"] == "message")
    );
    for kind in [
        "action_requested",
        "action_approved",
        "action_executed",
        "action_verified",
    ] {
        assert!(after_a.iter().any(|e| e["kind"] == kind), "{kind} lost");
    }
    // The audit log kept every record and still verifies.
    let audit_after = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit_after.starts_with(&audit_before));
    let out = Command::new(ONCALL)
        .args(["audit", "verify", "--file"])
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Approvals came back: the executed one never runs again, the pending one can be decided.
    let (_, list) = c
        .call(OP, "GET", &format!("/api/v1/approvals?incident={a}"), None)
        .await;
    let state = |r: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == r)
            .map(|x| x["state"]["state"].clone())
    };
    assert_eq!(state(&r1), Some(json!("executed")));
    assert_eq!(state(&r2), Some(json!("pending")));
    let (s, _) = c
        .call(
            &bo,
            "POST",
            &format!("/api/v1/approvals/{r1}/decision"),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(s, 409, "an executed request stays executed after a restart");
    let (s, v) = c
        .call(
            &bo,
            "POST",
            &format!("/api/v1/approvals/{r2}/decision"),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while second.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the pending request ran after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The interrupted investigation resumes and finishes.
    let (s, v) = c
        .call(OP, "POST", &format!("/api/v1/incidents/{b}/resume"), None)
        .await;
    assert_eq!(s, 202, "{v}");
    c.wait(&b, "investigation_finished", 60).await;
}

fn runs(count: &Path) -> usize {
    std::fs::read_to_string(count)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

async fn wait_file(path: &Path, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL at the two worst moments of an execution: after its write-ahead `executing` record
/// and before the action runs, and after the action returned and before its result is recorded.
/// Either way the restarted server shows the outcome as unknown with what to verify, and no
/// approval can make it run again: the action ran at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_write_ahead_record_and_the_result_never_runs_an_action_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bo = token(dir.path(), "bo", "approver");
    let (actions, count) = common::counting_action(dir.path());
    let port = free_port();
    let c = Client {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let env = |pause: Option<String>| {
        let mut e = vec![("ONCALL_ACTIONS__DIR", actions.display().to_string())];
        if let Some(p) = pause {
            e.push(("OC_TEST_PAUSE_AT", p));
        }
        e
    };
    let (s, v) = {
        let _s = serve_with(dir.path(), port, &env(None)).await;
        c.call(
            OP,
            "POST",
            "/api/v1/incidents",
            Some(json!({"report": "a quiet report for the crash test"})),
        )
        .await
    };
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    for (point, ran_before_crash) in [("executing", 0), ("executed", 1)] {
        let marker = dir.path().join(format!("paused-{point}"));
        let mut server = serve_with(
            dir.path(),
            port,
            &env(Some(format!("{point}:{}", marker.display()))),
        )
        .await;
        let before = runs(&count);
        let (s, v) = c
            .call(
                OP,
                "POST",
                &format!("/api/v1/incidents/{id}/actions"),
                Some(json!({"tool": "count.run", "args": {}, "why": point})),
            )
            .await;
        assert_eq!(s, 202, "{v}");
        let req = v["request"].as_str().unwrap().to_string();
        let (s, v) = c
            .call(
                &bo,
                "POST",
                &format!("/api/v1/approvals/{req}/decision"),
                Some(json!({"approve": true})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        wait_file(&marker, 30).await;
        // The write-ahead record is durable at this point.
        let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(
            audit
                .lines()
                .any(|l| l.contains("\"kind\":\"executing\"") && l.contains(&req)),
            "no executing record before the run"
        );
        server.0.kill().unwrap(); // SIGKILL at the worst moment
        let _ = server.0.wait();
        assert_eq!(runs(&count) - before, ran_before_crash, "{point}");

        // Restarted (no fault hook): the outcome is unknown, says what to verify, never reruns.
        let _server = serve_with(dir.path(), port, &env(None)).await;
        let (_, list) = c
            .call(OP, "GET", &format!("/api/v1/approvals?incident={id}"), None)
            .await;
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == json!(req))
            .cloned()
            .unwrap();
        assert_eq!(entry["state"]["state"], "outcome_unknown", "{entry}");
        assert_eq!(entry["state"]["approved_by"], "bo");
        let verify = entry["state"]["verify"].as_str().unwrap();
        assert!(verify.contains("Verify by hand"), "{verify}");
        let events = c.wait(&id, "action_outcome_unknown", 10).await;
        assert!(events.iter().any(|e| e["kind"] == "action_outcome_unknown"
            && e["data"]["request"] == json!(req)
            && e["data"]["verify"] == json!(verify)));
        for who in [&bo, &OP.to_string()] {
            let (s, v) = c
                .call(
                    who,
                    "POST",
                    &format!("/api/v1/approvals/{req}/decision"),
                    Some(json!({"approve": true})),
                )
                .await;
            assert!(s == 409 || s == 403, "{s} {v}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            runs(&count) - before,
            ran_before_crash,
            "{point}: the action ran again after the restart"
        );
    }
    // The log still verifies, and each restart announced its unknown outcome once.
    let _server = serve_with(dir.path(), port, &env(None)).await;
    let out = Command::new(ONCALL)
        .args(["audit", "verify", "--file"])
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let events = c.events(&id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["kind"] == "action_outcome_unknown")
            .count(),
        2,
        "{events:#?}"
    );
}
