//! `host.signal_process` hits exactly the process that was approved: a request binds the pid,
//! the process's start time and its executable into the arguments (so the approval, which binds
//! the exact arguments, binds them too); execution checks all three again and refuses on any
//! difference; and pid 1, oncall itself, its threads and kernel threads are refused when the
//! request is filed and again at execution. Every target is a real process: children this test
//! starts, this test process and its threads, the host's init and kernel threads. The protected
//! targets are asked for CONT, which would do no harm if it ever slipped through.

use chrono::{Duration, Utc};
use oncall::config::Config;
use oncall::desk::Desk;
use oncall::policy::audit::AuditLog;
use oncall::policy::rules::Actor;
use oncall::policy::{ActionRequest, Human, Role, approve};
use oncall::registry::Registry;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

const TOOL: &str = "host.signal_process";

/// A child process this test owns; killed and reaped when dropped.
struct Victim(Child);

impl Victim {
    fn sleep() -> Victim {
        Victim(
            Command::new("sleep")
                .arg("300")
                .spawn()
                .expect("spawn sleep"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
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

/// Field 22 of /proc/<pid>/stat, read here independently of oncall.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn exe(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .display()
        .to_string()
}

fn approver(name: &str) -> Human {
    Human {
        name: name.into(),
        roles: vec![Role::Approver],
    }
}

fn registry() -> Registry {
    oncall::app::builtin_registry(Arc::new(Config::default()))
}

fn desk() -> Desk {
    Desk::new(Arc::new(AuditLog::in_memory()), Duration::minutes(15))
}

/// Files a request as the agent and has ana approve it; returns its id and bound arguments.
fn approved(reg: &Registry, desk: &Desk, args: Value) -> (String, Value) {
    let req = desk
        .request(reg, "inc-1", TOOL, args, "agent", Actor::Agent, &[])
        .expect("the request is filed");
    desk.decide(reg, &req.id, &approver("ana"), true, "", Utc::now())
        .expect("approved");
    (req.id, req.args)
}

/// Calls the registry with an approval made for exactly `args`, around the desk.
async fn call_approved(reg: &Registry, args: Value) -> Result<Value, String> {
    let req = ActionRequest::new(TOOL, args.clone(), "agent", &[]);
    let ok = approve(&req, &approver("ana"), Duration::minutes(5), Utc::now()).unwrap();
    reg.call(TOOL, args, Some(&ok))
        .await
        .map_err(|e| e.to_string())
}

/// A thread of this process, parked until the returned sender is dropped; and its tid.
fn own_thread() -> (u32, std::sync::mpsc::Sender<()>) {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
        let _ = stop_rx.recv();
    });
    let tid = tid_rx.recv().unwrap();
    assert_ne!(tid, std::process::id());
    (tid, stop_tx)
}

/// Kernel threads visible here: kthreadd (pid 2) and the tasks with PF_KTHREAD in their flags.
fn kernel_threads() -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let flags: u64 = rest.split_whitespace().nth(6).unwrap().parse().unwrap();
        if flags & 0x0020_0000 != 0 {
            out.push(pid);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_request_binds_the_process_start_time_and_executable() {
    let reg = registry();
    let desk = desk();
    let v = Victim::sleep();
    let pid = v.pid();
    let req = desk
        .request(
            &reg,
            "inc-1",
            TOOL,
            json!({"pid": pid, "signal": "TERM"}),
            "agent",
            Actor::Agent,
            &[],
        )
        .expect("filed");
    assert_eq!(
        req.args,
        json!({"pid": pid, "signal": "TERM", "start_time": start_time(pid), "exe": exe(pid)}),
        "the identity is in the arguments the approval will bind"
    );
    let entry = desk.entry(&req.id).unwrap();
    let plan = entry.plan.unwrap();
    assert_eq!(plan["start_time"], start_time(pid));
    assert_eq!(plan["exe"], exe(pid));
    assert_eq!(plan["would_run"], format!("kill -TERM {pid}"));
    // Given ones are checked, not trusted.
    let e = desk
        .request(
            &reg,
            "inc-1",
            TOOL,
            json!({"pid": pid, "signal": "TERM", "start_time": start_time(pid) + 1}),
            "agent",
            Actor::Agent,
            &[],
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("pid {pid} is now a different process")),
        "{e}"
    );
    let e = desk
        .request(
            &reg,
            "inc-1",
            TOOL,
            json!({"pid": pid, "signal": "TERM", "exe": "/usr/bin/yes"}),
            "agent",
            Actor::Agent,
            &[],
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("pid {pid} is now a different process")) && e.contains("/usr/bin/yes"),
        "{e}"
    );
    assert_eq!(desk.entries().len(), 1, "refused requests are not filed");
}

/// The check run at execution, on a live process: another start time or another executable
/// is another process, whatever the pid.
#[test]
fn the_identity_check_refuses_another_start_time_or_executable() {
    let mut v = Victim::sleep();
    let pid = v.pid();
    let id = oncall::actions::identify(pid).expect("a live child is identified");
    assert_eq!((id.start_time, id.exe.clone()), (start_time(pid), exe(pid)));
    oncall::actions::verify(pid, id.start_time, &id.exe).expect("the same process passes");
    let e = oncall::actions::verify(pid, id.start_time - 1, &id.exe)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "pid {pid} is now a different process: it started at {}",
            id.start_time
        )),
        "{e}"
    );
    let e = oncall::actions::verify(pid, id.start_time, "/usr/bin/python3")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "pid {pid} is now a different process: it runs {}",
            id.exe
        )) && e.contains("the approved one ran /usr/bin/python3"),
        "{e}"
    );
    assert!(v.alive());
    // An exited, reaped process is gone, not "someone else".
    drop(v);
    let e = oncall::actions::verify(pid, id.start_time, &id.exe).unwrap_err();
    assert!(
        matches!(e, oncall::actions::IdentityError::Gone { .. })
            || matches!(e, oncall::actions::IdentityError::Changed { .. }),
        "{e}"
    );
}

/// End to end through the desk: approved for a shell, which then exec()s another program under
/// the same pid (and the same start time); the approved signal is refused and the process lives.
#[tokio::test]
async fn a_process_that_became_another_program_after_approval_is_not_signalled() {
    let reg = registry();
    let desk = desk();
    let mut child = Victim(
        Command::new("/bin/sh")
            .args(["-c", "read line; exec sleep 300"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh"),
    );
    let pid = child.pid();
    let shell = exe(pid);
    let (id, args) = approved(&reg, &desk, json!({"pid": pid, "signal": "KILL"}));
    assert_eq!(args["exe"], shell.as_str());
    // Now the pid runs sleep.
    child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while exe(pid) == shell {
        assert!(
            std::time::Instant::now() < deadline,
            "the shell never exec'd"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ex = desk
        .execute(&reg, &id, TOOL, &args, "ana")
        .await
        .expect("the desk ran its checks");
    let e = ex.output.expect_err("the signal was refused");
    assert!(
        e.contains(&format!("pid {pid} is now a different process: it runs "))
            && e.contains(&format!("the approved one ran {shell}"))
            && e.contains("nothing was sent"),
        "{e}"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(child.alive(), "the process that took over the pid lives");
}

/// End to end through the desk: approved for one child, which then exits; a new child is
/// started (it cannot be forced onto the same pid). The approved signal reaches nobody.
#[tokio::test]
async fn an_approval_outlives_its_process_and_reaches_no_other() {
    let reg = registry();
    let desk = desk();
    let first = Victim::sleep();
    let pid = first.pid();
    let (id, args) = approved(&reg, &desk, json!({"pid": pid, "signal": "KILL"}));
    drop(first);
    let mut second = Victim::sleep();
    let ex = desk.execute(&reg, &id, TOOL, &args, "ana").await.unwrap();
    let e = ex.output.expect_err("refused");
    assert!(
        e.contains(&format!("pid {pid} does not exist any more"))
            || e.contains(&format!("pid {pid} is now a different process")),
        "{e}"
    );
    assert!(second.alive());
}

/// An approval made for arguments without the identity (around the desk) runs nothing: the
/// process it meant cannot be told from one that reused its pid.
#[tokio::test]
async fn arguments_without_an_identity_are_refused_at_execution() {
    let reg = registry();
    let mut v = Victim::sleep();
    let e = call_approved(&reg, json!({"pid": v.pid(), "signal": "KILL"}))
        .await
        .unwrap_err();
    assert!(e.contains("carry no start_time and exe"), "{e}");
    let e = call_approved(
        &reg,
        json!({"pid": v.pid(), "signal": "KILL", "start_time": start_time(v.pid())}),
    )
    .await
    .unwrap_err();
    assert!(e.contains("carry no exe"), "{e}");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(v.alive());
    // With the identity bound, the same approval path runs.
    let args = reg
        .bind(TOOL, json!({"pid": v.pid(), "signal": "KILL"}))
        .unwrap();
    call_approved(&reg, args).await.expect("runs");
    assert!(!v.0.wait().unwrap().success(), "killed");
}

/// pid 1, this process, one of its threads, kthreadd and a kernel thread: refused when the
/// request is filed (no request exists) and, for an approval made around the desk, at
/// execution.
#[tokio::test]
async fn init_oncall_its_threads_and_kernel_threads_are_refused_at_request_and_execution() {
    let reg = registry();
    let desk = desk();
    let me = std::process::id();
    let (tid, _keep) = own_thread();
    let kthreads = kernel_threads();
    let mut targets = vec![
        (1, "is init (pid 1)"),
        (me, "is oncall itself"),
        (tid, "is a thread of oncall itself"),
    ];
    match kthreads.iter().find(|&&p| p != 2) {
        Some(&k) => {
            targets.push((2, "is a kernel thread"));
            targets.push((k, "is a kernel thread"));
        }
        None => eprintln!(
            "SKIPPED the kernel-thread cases: no kernel thread is visible in /proc here (a PID namespace)"
        ),
    }
    for &(pid, why) in &targets {
        let e = desk
            .request(
                &reg,
                "inc-9",
                TOOL,
                json!({"pid": pid, "signal": "CONT"}),
                "agent",
                Actor::Agent,
                &[],
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("pid {pid} {why}")) && e.contains("refusing to signal it"),
            "{pid}: {e}"
        );
        let e = reg
            .dry_run(TOOL, &json!({"pid": pid, "signal": "CONT"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "dry run of {pid}: {e}");
        // An approval made around the desk, with an identity that matches: still refused.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/nonexistent".into());
        let args = json!({"pid": pid, "signal": "CONT", "start_time": start_time(pid), "exe": exe});
        let e = call_approved(&reg, args).await.unwrap_err();
        assert!(e.contains(why), "execution for {pid}: {e}");
    }
    assert!(desk.entries().is_empty(), "no request was filed");
    eprintln!(
        "protected targets: {} refused at request, dry run and execution",
        targets.len()
    );
}
