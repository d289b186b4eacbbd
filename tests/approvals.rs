//! The registry refuses live actions without an approval bound to their exact arguments, against
//! a real process that must survive every refused call.

use chrono::{Duration, Utc};
use oncall::config::Config;
use oncall::policy::{ActionRequest, Human, Role, approve};
use oncall::tool::{Registry, ToolError};
use serde_json::json;
use std::process::{Child, Command};
use std::sync::Arc;

struct Victim(Child);

impl Victim {
    fn start() -> Victim {
        Victim(
            Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("spawn sleep"),
        )
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn approver(name: &str) -> Human {
    Human {
        name: name.into(),
        roles: vec![Role::Approver],
    }
}

#[tokio::test]
async fn live_action_without_or_with_a_wrong_approval_never_runs() {
    let reg = Registry::builtin(Arc::new(Config::default()));
    let mut v = Victim::start();
    let pid = v.0.id();
    let args = json!({"pid": pid, "signal": "KILL"});

    let err = reg
        .call("host.signal_process", args.clone(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::ApprovalRequired { .. }), "{err}");

    // Approved for another pid: refused.
    let other = ActionRequest::new(
        "host.signal_process",
        json!({"pid": pid + 1, "signal": "KILL"}),
        "oncall",
        &[],
    );
    let a = approve(&other, &approver("ana"), Duration::minutes(5), Utc::now()).unwrap();
    let err = reg
        .call("host.signal_process", args.clone(), Some(&a))
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::ApprovalMismatch { .. }), "{err}");

    // Approved, but already expired: refused.
    let req = ActionRequest::new("host.signal_process", args.clone(), "oncall", &[]);
    let stale = approve(
        &req,
        &approver("ana"),
        Duration::minutes(5),
        Utc::now() - Duration::minutes(10),
    )
    .unwrap();
    let err = reg
        .call("host.signal_process", args.clone(), Some(&stale))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(v.alive(), "no refused call may touch the process");

    // The real approval runs exactly once.
    let ok = approve(&req, &approver("ana"), Duration::minutes(5), Utc::now()).unwrap();
    reg.call("host.signal_process", args.clone(), Some(&ok))
        .await
        .expect("approved call runs");
    let status = v.0.wait().expect("wait");
    assert!(!status.success(), "killed by the approved signal");
    let err = reg
        .call("host.signal_process", args, Some(&ok))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
}

#[test]
fn requester_and_non_approvers_cannot_approve() {
    let req = ActionRequest::new(
        "host.signal_process",
        json!({"pid": 4242, "signal": "TERM"}),
        "bo",
        &[],
    );
    assert!(approve(&req, &approver("bo"), Duration::minutes(5), Utc::now()).is_err());
    let responder = Human {
        name: "cy".into(),
        roles: vec![Role::Responder, Role::Viewer],
    };
    assert!(approve(&req, &responder, Duration::minutes(5), Utc::now()).is_err());
}

#[tokio::test]
async fn approved_action_still_refuses_init_and_itself() {
    let reg = Registry::builtin(Arc::new(Config::default()));
    let args = json!({"pid": 1, "signal": "TERM"});
    let req = ActionRequest::new("host.signal_process", args.clone(), "oncall", &[]);
    let ok = approve(&req, &approver("ana"), Duration::minutes(5), Utc::now()).unwrap();
    let err = reg
        .call("host.signal_process", args, Some(&ok))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("init"), "{err}");
}
