//! The registry refuses live actions without an approval bound to their exact arguments, against
//! a real process that must survive every refused call.

use chrono::{Duration, Utc};
use oncall::config::Config;
use oncall::policy::{ActionRequest, Human, Role, approve};
use oncall::tool::ToolError;
use serde_json::json;
use std::sync::Arc;

mod common;

use common::Victim;

fn approver(name: &str) -> Human {
    Human {
        name: name.into(),
        roles: vec![Role::Approver],
    }
}

#[tokio::test]
async fn live_action_without_or_with_a_wrong_approval_never_runs() {
    let reg = oncall::app::builtin_registry(Arc::new(Config::default()));
    let mut v = Victim::start();
    let pid = v.0.id();
    let args = reg
        .bind("host.signal_process", json!({"pid": pid, "signal": "KILL"}))
        .unwrap();

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
    let reg = oncall::app::builtin_registry(Arc::new(Config::default()));
    let args = json!({"pid": 1, "signal": "TERM"});
    let req = ActionRequest::new("host.signal_process", args.clone(), "oncall", &[]);
    let ok = approve(&req, &approver("ana"), Duration::minutes(5), Utc::now()).unwrap();
    let err = reg
        .call("host.signal_process", args, Some(&ok))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("init"), "{err}");
}

/// A desk reopened on the same audit log (a restarted server) shows the same requests in the
/// same states, runs an approved one, and never runs an executed one again.
#[tokio::test]
async fn a_reopened_desk_restores_requests_from_the_audit_log() {
    use oncall::desk::{Desk, State};
    use oncall::policy::audit::AuditLog;
    use oncall::policy::rules::Actor;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let reg = oncall::app::builtin_registry(Arc::new(Config::default()));
    let (mut a, mut b, c) = (Victim::start(), Victim::start(), Victim::start());
    // Requests bind the process's identity: execute with the arguments as bound while alive.
    let bound: std::collections::HashMap<u32, serde_json::Value> = [&a, &b, &c]
        .iter()
        .map(|v| {
            let args = json!({"pid": v.0.id(), "signal": "TERM"});
            (v.0.id(), reg.bind("host.signal_process", args).unwrap())
        })
        .collect();
    let args = |v: &Victim| bound[&v.0.id()].clone();
    let (ra, rb, rc) = {
        let desk = Desk::new(
            Arc::new(AuditLog::open(&path).unwrap()),
            Duration::minutes(15),
        );
        let file = |v: &Victim| {
            desk.request(
                &reg,
                "inc-1",
                "host.signal_process",
                args(v),
                "oncall",
                Actor::Agent,
                &[],
            )
            .unwrap()
            .id
        };
        let (ra, rb, rc) = (file(&a), file(&b), file(&c));
        desk.decide(&reg, &ra, &approver("ana"), true, "", Utc::now())
            .unwrap();
        desk.execute(&reg, &ra, "host.signal_process", &args(&a), "ana")
            .await
            .unwrap();
        desk.decide(&reg, &rb, &approver("ana"), true, "", Utc::now())
            .unwrap();
        (ra, rb, rc)
    };
    assert!(!a.alive());
    let desk = Desk::new(
        Arc::new(AuditLog::open(&path).unwrap()),
        Duration::minutes(15),
    );
    let state = |id: &str| desk.entry(id).map(|e| e.state);
    assert_eq!(state(&ra), Some(State::Executed { ok: true }));
    assert_eq!(state(&rb), Some(State::Approved { by: "ana".into() }));
    assert_eq!(state(&rc), Some(State::Pending));
    let again = desk
        .execute(&reg, &ra, "host.signal_process", &args(&a), "ana")
        .await;
    assert!(again.unwrap_err().to_string().contains("already ran"));
    // The approval made before the restart still runs exactly what was approved.
    assert!(
        desk.execute(&reg, &rb, "host.signal_process", &args(&c), "ana")
            .await
            .is_err()
    );
    assert!(b.alive());
    desk.execute(&reg, &rb, "host.signal_process", &args(&b), "ana")
        .await
        .unwrap();
    assert!(!b.alive());
}

/// Two approved live actions in one incident: the second waits until the first one's effect
/// is recorded, then runs (one change at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_action_waits_for_the_last_ones_effect() {
    use oncall::desk::Desk;
    use oncall::policy::audit::AuditLog;
    use oncall::policy::rules::Actor;
    let reg = oncall::app::builtin_registry(Arc::new(Config::default()));
    let desk = Desk::new(Arc::new(AuditLog::in_memory()), Duration::minutes(15))
        .waiting(std::time::Duration::from_secs(60));
    let (mut a, mut b) = (Victim::start(), Victim::start());
    let args = |v: &Victim| {
        let args = json!({"pid": v.0.id(), "signal": "TERM"});
        reg.bind("host.signal_process", args).unwrap()
    };
    let file = |v: &Victim| {
        desk.request(
            &reg,
            "inc-2",
            "host.signal_process",
            args(v),
            "oncall",
            Actor::Agent,
            &[],
        )
        .unwrap()
        .id
    };
    let (ra, rb) = (file(&a), file(&b));
    desk.decide(&reg, &ra, &approver("ana"), true, "", Utc::now())
        .unwrap();
    desk.decide(&reg, &rb, &approver("ana"), true, "", Utc::now())
        .unwrap();
    let (aa, ab) = (args(&a), args(&b));
    let t0 = std::time::Instant::now();
    let (first, second) = tokio::join!(
        async {
            let r = desk
                .execute(&reg, &ra, "host.signal_process", &aa, "ana")
                .await;
            (r, t0.elapsed())
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let r = desk
                .execute(&reg, &rb, "host.signal_process", &ab, "ana")
                .await;
            (r, t0.elapsed())
        }
    );
    let (first, done1) = (first.0.unwrap(), first.1);
    let (second, done2) = (second.0.unwrap(), second.1);
    assert!(!first.effect.is_empty() && !second.effect.is_empty());
    // The effect check of host.signal_process settles for 2 s: the second ran after it.
    assert!(
        done2 >= done1 + std::time::Duration::from_secs(2),
        "{done1:?} then {done2:?}"
    );
    let records = desk.entries();
    assert_eq!(records.len(), 2);
    assert!(!a.alive() && !b.alive());
}

/// Audit records are redacted: a request whose requester or arguments lost a secret to
/// redaction comes back denied after a restart, never approvable by its own requester.
#[tokio::test]
async fn a_request_redacted_in_the_audit_log_is_not_approvable_after_a_restart() {
    use oncall::desk::{Desk, State};
    use oncall::policy::audit::AuditLog;
    use oncall::policy::rules::Actor;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let reg = oncall::app::builtin_registry(Arc::new(Config::default()));
    let v = Victim::start();
    let args = json!({"pid": v.0.id(), "signal": "TERM"});
    let id = {
        let desk = Desk::new(
            Arc::new(AuditLog::open(&path).unwrap()),
            Duration::minutes(15),
        );
        desk.request(
            &reg,
            "inc-3",
            "host.signal_process",
            args.clone(),
            "alice@corp.example",
            Actor::Approver,
            &[],
        )
        .unwrap()
        .id
    };
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("alice@corp.example"),
        "the audit log is redacted"
    );
    let desk = Desk::new(
        Arc::new(AuditLog::open(&path).unwrap()),
        Duration::minutes(15),
    );
    let e = desk.entry(&id).unwrap();
    assert!(matches!(e.state, State::Denied { .. }), "{:?}", e.state);
    let err = desk
        .decide(
            &reg,
            &id,
            &approver("alice@corp.example"),
            true,
            "",
            Utc::now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("already decided"), "{err}");
}

/// Two-person control at the desk: the model's request is filed for the human driving the
/// investigation; that human cannot approve it under any of their names (a Slack user mapped to
/// them is them), another approver can. A reopened desk keeps who it was filed for (so the rule
/// still holds after a restart), keeps withdrawals, and shows a request whose `executing` record
/// has no result as outcome unknown, never runnable again.
#[tokio::test]
async fn two_person_control_holds_across_names_and_restarts() {
    use oncall::desk::{Desk, DeskError, State};
    use oncall::policy::audit::AuditLog;
    use oncall::policy::rules::Actor;
    use oncall::policy::{Identities, MODEL, PolicyError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let reg = oncall::app::builtin_registry(Arc::new(Config::default()));
    let people = || Identities::new([("slack:U2CERLKJA".to_string(), "ana".to_string())]);
    let (a, b) = (Victim::start(), Victim::start());
    let args = |v: &Victim| json!({"pid": v.0.id(), "signal": "TERM"});
    let (ra, rb) = {
        let desk = Desk::new(
            Arc::new(AuditLog::open(&path).unwrap()),
            Duration::minutes(15),
        )
        .with_identities(people());
        let file = |v: &Victim, driver: &str| {
            desk.request_for(
                &reg,
                "inc-1",
                "host.signal_process",
                args(v),
                MODEL,
                Actor::Agent,
                Some(driver),
                &[],
            )
            .unwrap()
        };
        // Driven from Slack by ana's Slack user; ana approves from the web: the same person.
        let ra = file(&a, "slack:U2CERLKJA");
        assert_eq!(ra.requester(), "model, on behalf of slack:U2CERLKJA");
        let err = desk
            .decide(&reg, &ra.id, &approver("ana"), true, "", Utc::now())
            .unwrap_err();
        assert!(
            matches!(err, DeskError::Policy(PolicyError::TwoPerson { .. })),
            "{err}"
        );
        // Withdrawn by the person it was filed for.
        let rb = file(&b, "bo");
        assert!(desk.withdraw(&rb.id, &approver("cy"), "").is_err());
        assert_eq!(
            desk.withdraw(&rb.id, &approver("bo"), "not needed")
                .unwrap(),
            State::Withdrawn { by: "bo".into() }
        );
        (ra.id, rb.id)
    };
    // Without the alias the names differ; with it (as the server configures it) they do not.
    let desk = Desk::new(
        Arc::new(AuditLog::open(&path).unwrap()),
        Duration::minutes(15),
    )
    .with_identities(people());
    let e = desk.entry(&ra).unwrap();
    assert_eq!(e.request.on_behalf_of.as_deref(), Some("slack:U2CERLKJA"));
    assert_eq!(e.state, State::Pending);
    assert!(
        desk.decide(&reg, &ra, &approver("ana"), true, "", Utc::now())
            .is_err(),
        "the rule holds after a restart"
    );
    assert_eq!(
        desk.entry(&rb).unwrap().state,
        State::Withdrawn { by: "bo".into() }
    );
    desk.decide(&reg, &ra, &approver("dee"), true, "", Utc::now())
        .unwrap();
    drop(desk);

    // A crash right after the write-ahead record: append it by hand, as the desk would have.
    {
        let audit = AuditLog::open(&path).unwrap();
        audit
            .append(
                "executing",
                json!({"request": ra, "incident": "inc-1", "tool": "host.signal_process",
                       "args": args(&a), "approved_by": "dee", "by": "dee",
                       "verify": "outcome unknown: check pid"}),
            )
            .unwrap();
    }
    let desk = Desk::new(
        Arc::new(AuditLog::open(&path).unwrap()),
        Duration::minutes(15),
    );
    match desk.entry(&ra).unwrap().state {
        State::OutcomeUnknown {
            approved_by,
            verify,
            ..
        } => {
            assert_eq!(approved_by, "dee");
            assert!(verify.contains("check pid"));
        }
        other => panic!("{other:?}"),
    }
    assert!(desk.executed(&ra));
    let again = desk
        .execute(&reg, &ra, "host.signal_process", &args(&a), "dee")
        .await;
    assert!(again.is_err());
    assert!(
        desk.decide(&reg, &ra, &approver("eve"), true, "", Utc::now())
            .is_err()
    );
    let mut a = a;
    assert!(a.alive(), "never run");
}
