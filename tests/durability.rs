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
    let child = Command::new(ONCALL)
        .arg("serve")
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
    let out = Command::new(ONCALL)
        .args(["token", "add", name, "--role", role])
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_SERVER__DATA_DIR", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
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
