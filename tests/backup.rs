//! Backup and restore, as docs/deploy.md tells an operator to do them, against the real
//! `oncall serve`:
//!
//! - SQLite: incidents, events, tokens, incident memory and an approved and executed action are
//!   made; `oncall backup` runs while a client keeps filing action requests (each one an audit
//!   record and an event); the copy is consistent (integrity, gapless event logs, every request
//!   the store shows is in the audit copy); the server stops; `oncall restore` refuses a live and
//!   a non-empty data directory, restores into a fresh one, and the new server has it all, with
//!   the executed action still executed (409) and the audit chain verified at the manifest head.
//! - PostgreSQL: the same with `pg_dump --format=custom` and `pg_restore` against a throwaway
//!   cluster.
//!
//! The documented command blocks are run line by line: `systemctl stop|start oncall` stops and
//! starts this test's server, and `runuser -u oncall --` is a test double (a script earlier on
//! PATH that checks the user is the unit's and runs the rest as this test's user), since this
//! machine has no running systemd and no `oncall` user. Every other line runs as written.

mod common;
#[path = "common/docs.rs"]
mod docs;

use common::ONCALL;
use common::pg::Pg;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OP: &str = "operator-backup-token";

/// `oncall serve`, stopped with SIGTERM (as systemd stops it) when asked or dropped.
struct Server(Option<Child>);

impl Server {
    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The settings every command of this test gets: the data directory (and the store's URL).
#[derive(Clone)]
struct Site {
    data: PathBuf,
    database_url: Option<String>,
}

impl Site {
    fn env(&self) -> Vec<(String, String)> {
        let mut e = vec![(
            "ONCALL_SERVER__DATA_DIR".to_string(),
            self.data.display().to_string(),
        )];
        if let Some(u) = &self.database_url {
            e.push(("ONCALL_SERVER__DATABASE_URL".into(), u.clone()));
        }
        e
    }

    fn oncall(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(ONCALL)
            .args(args)
            .env_remove("ONCALL_CONFIG")
            .envs(self.env())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn serve(&self, port: u16) -> Server {
        let child = Command::new(ONCALL)
            .arg("serve")
            .env_remove("ONCALL_CONFIG")
            .envs(self.env())
            .env("ONCALL_TOKEN", OP)
            .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("ONCALL_SERVER__REPLICA", "r1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("oncall serve");
        let s = Server(Some(child));
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
}

#[derive(Clone)]
struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(port: u16) -> Client {
        Client {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

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
        self.wait_n(id, kind, 1, secs).await
    }

    /// Waits until the incident's log holds `n` events of `kind`.
    async fn wait_n(&self, id: &str, kind: &str, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let ev = self.events(id).await;
            if ev.iter().filter(|e| e["kind"] == kind).count() >= n {
                return ev;
            }
            assert!(Instant::now() < deadline, "no {kind} in {id}: {ev:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn request(&self, incident: &str, pid: u32, why: &str) -> (u16, Value) {
        self.call(
            OP,
            "POST",
            &format!("/api/v1/incidents/{incident}/actions"),
            Some(json!({"tool": "host.signal_process", "args": {"pid": pid, "signal": "TERM"}, "why": why})),
        )
        .await
    }

    async fn approval_state(&self, incident: &str, request: &str) -> Value {
        let (_, list) = self
            .call(
                OP,
                "GET",
                &format!("/api/v1/approvals?incident={incident}"),
                None,
            )
            .await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == request)
            .map(|x| x["state"]["state"].clone())
            .unwrap_or(Value::Null)
    }
}

/// What the tests make before the backup: an investigated incident with an approved and
/// executed action, a resolved (remembered) incident, and an approver's token.
struct Made {
    incident: String,
    executed: String,
    bo: String,
}

async fn make_history(site: &Site, c: &Client) -> Made {
    let (code, bo, err) = site.oncall(&["token", "add", "bo", "--role", "approver"]);
    assert_eq!(code, 0, "{err}");
    let bo = bo.trim().to_string();
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
    c.wait(&a, "investigation_finished", 90).await;
    let mut victim = Command::new("sleep").arg("300").spawn().unwrap();
    let (s, v) = c.request(&a, victim.id(), "stop the sleeper").await;
    assert_eq!(s, 202, "{v}");
    let r1 = v["request"].as_str().unwrap().to_string();
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
    assert!(!victim.wait().unwrap().success(), "the approved signal ran");
    let (s, v) = c
        .call(
            OP,
            "POST",
            &format!("/api/v1/incidents/{a}/messages"),
            Some(json!({"text": "the sleeper was the culprit"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    // The message started a second round: resolving waits for it.
    c.wait_n(&a, "investigation_finished", 2, 90).await;
    let (s, v) = c
        .call(
            OP,
            "POST",
            &format!("/api/v1/incidents/{a}/status"),
            Some(json!({"status": "resolved"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    Made {
        incident: a,
        executed: r1,
        bo,
    }
}

/// A directory with the test doubles for `runuser` (checks the user is the unit's, runs the
/// rest as this test's user). `systemctl` lines are handled by [`run_block`] itself.
fn doubles(dir: &Path) -> PathBuf {
    let bin = dir.join("doubles");
    std::fs::create_dir_all(&bin).unwrap();
    let user = docs::unit_value(&docs::unit(), "User");
    let runuser = bin.join("runuser");
    std::fs::write(
        &runuser,
        format!(
            "#!/bin/sh\n# Test double for runuser(1): this machine has no `{user}` user.\n[ \"$1\" = -u ] && [ \"$2\" = {user} ] && [ \"$3\" = -- ] || {{ echo \"runuser double: expected -u {user} --, got $*\" >&2; exit 97; }}\nshift 3\nexec \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runuser, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs one documented block line by line: `systemctl stop oncall` and `systemctl start oncall`
/// stop and start this test's server; every other line runs in bash as written, with `oncall`,
/// PostgreSQL's client tools and the `runuser` double on PATH.
async fn run_block(
    name: &str,
    site: &Site,
    env: &[(&str, String)],
    server: &mut Server,
    port: u16,
    scratch: &Path,
) -> Vec<String> {
    let md = docs::deploy_md();
    let block = docs::marked(&md, name);
    // PostgreSQL's client tools where tests/common/pg.rs finds the server's.
    let pg_bin =
        std::env::var("ONCALL_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let path = format!(
        "{}:{}:{pg_bin}:/usr/local/bin:/usr/bin:/bin",
        doubles(scratch).display(),
        Path::new(ONCALL).parent().unwrap().display()
    );
    let mut outputs = vec![];
    for cmd in docs::commands(&block) {
        match cmd.as_str() {
            "systemctl stop oncall" => server.stop(),
            "systemctl start oncall" => *server = site.serve(port).await,
            _ => {
                let out = Command::new("bash")
                    .args(["-euo", "pipefail", "-c", &cmd])
                    .env_remove("ONCALL_CONFIG")
                    .env("PATH", &path)
                    .envs(site.env())
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .current_dir(scratch)
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(
                    out.status.success(),
                    "{name}: `{cmd}` failed: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                outputs.push(stdout);
            }
        }
    }
    outputs
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// The request ids of the audit records of `kind` in a log.
fn audit_requests(log: &str, kind: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == kind)
        .filter_map(|r| r["data"]["request"].as_str().map(str::to_string))
        .collect()
}

/// Checks a SQLite backup copy on its own: integrity, each incident's log gapless from 1, the
/// manifest's counts; returns each incident's events as (seq, kind) and every request the
/// events mention.
/// Each incident's events as (seq, kind).
type Logs = BTreeMap<String, Vec<(i64, String)>>;

fn check_sqlite_copy(backup: &Path) -> (Logs, BTreeSet<String>) {
    let m = manifest(backup);
    let c = rusqlite::Connection::open(backup.join("oncall.db")).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut st = c
        .prepare("SELECT incident, seq, kind, data FROM events ORDER BY incident, seq")
        .unwrap();
    let rows: Vec<(String, i64, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut logs: Logs = BTreeMap::new();
    let mut requests = BTreeSet::new();
    for (inc, seq, kind, data) in &rows {
        logs.entry(inc.clone())
            .or_default()
            .push((*seq, kind.clone()));
        if kind.starts_with("action_")
            && let Some(r) = serde_json::from_str::<Value>(data).unwrap()["request"].as_str()
        {
            requests.insert(r.to_string());
        }
    }
    for (inc, evs) in &logs {
        let seqs: Vec<i64> = evs.iter().map(|e| e.0).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{inc}'s log has a gap"
        );
    }
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        m["store"]["incidents"],
        count("SELECT COUNT(*) FROM incidents")
    );
    assert_eq!(m["store"]["events"], rows.len() as i64);
    assert_eq!(m["store"]["tokens"], count("SELECT COUNT(*) FROM tokens"));
    (logs, requests)
}

/// The audit copy verifies at the manifest's head with the real CLI.
fn verify_audit_copy(backup: &Path) -> String {
    let m = manifest(backup);
    let head = m["audit"]["head"].as_str().unwrap().to_string();
    let (code, out, err) = common::oncall(
        &[
            "audit",
            "verify",
            "--file",
            &backup.join("audit.jsonl").display().to_string(),
            "--head",
            &head,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the chain is intact"), "{out}");
    let log = std::fs::read_to_string(backup.join("audit.jsonl")).unwrap();
    assert_eq!(m["audit"]["records"], log.lines().count());
    log
}

/// The restored server's audit log verifies and continues the backup's chain: the backup's head
/// is one of its records (the server appended after it, e.g. the refused second approval).
fn audit_continues(site: &Site, head: &str) {
    let (code, out, err) = site.oncall(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the chain is intact"), "{out}");
    let log = std::fs::read_to_string(site.data.join("audit.jsonl")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("\"hash\":\"{head}\""))),
        "the backup's head {head} is in the restored chain"
    );
}

/// After a restore, the new server has the incidents, the events, the tokens and the executed
/// approval (still executed: approving it again is 409).
async fn check_restored(c: &Client, made: &Made, want_incidents: usize) {
    let (s, list) = c.call(OP, "GET", "/api/v1/incidents", None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(want_incidents),
        "{list}"
    );
    let events = c.events(&made.incident).await;
    for kind in [
        "report",
        "action_requested",
        "action_approved",
        "action_executed",
        "action_verified",
        "message",
        "status_changed",
    ] {
        assert!(
            events.iter().any(|e| e["kind"] == kind),
            "{kind} lost: {events:#?}"
        );
    }
    let (s, me) = c.call(&made.bo, "GET", "/api/v1/me", None).await;
    assert_eq!(
        (s, me["name"].clone()),
        (200, json!("bo")),
        "bo's token came back"
    );
    assert_eq!(
        c.approval_state(&made.incident, &made.executed).await,
        json!("executed")
    );
    let (s, v) = c
        .call(
            &made.bo,
            "POST",
            &format!("/api/v1/approvals/{}/decision", made.executed),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(s, 409, "an executed action never runs again: {v}");
    let (s, v) = c.call(OP, "GET", "/readyz", None).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_taken_while_the_server_writes_restores_everything_and_nothing_runs_twice()
{
    let root = tempfile::tempdir().unwrap();
    let site = Site {
        data: root.path().join("data"),
        database_url: None,
    };
    let port = free_port();
    let c = Client::new(port);
    let mut server = site.serve(port).await;
    let made = make_history(&site, &c).await;

    // A client keeps filing action requests (audit record, then event) during the backup.
    let victim = common::Victim::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let filed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (c, a, stop, filed, pid) = (
            c.clone(),
            made.incident.clone(),
            stop.clone(),
            filed.clone(),
            victim.pid(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (s, v) = c.request(&a, pid, &format!("load {i}")).await;
                assert_eq!(s, 202, "{v}");
                filed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let wait_filed = |n: usize| {
        let filed = filed.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while filed.load(std::sync::atomic::Ordering::Relaxed) < n {
                assert!(Instant::now() < deadline, "the writer is stuck");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_filed(5).await;
    let backup = root.path().join("backup-1");
    let at_start = filed.load(std::sync::atomic::Ordering::Relaxed);
    let out = run_block(
        "backup-sqlite",
        &site,
        &[("BACKUP_DIR", backup.display().to_string())],
        &mut server,
        port,
        root.path(),
    )
    .await;
    let at_end = filed.load(std::sync::atomic::Ordering::Relaxed);
    wait_filed(at_end + 5).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    eprintln!(
        "backup printed: {}; requests filed: {at_start} before it started, {at_end} when it ended",
        out.join("")
    );
    assert!(
        at_end > at_start,
        "the backup ran while the server was writing"
    );

    // The copy is consistent on its own and across its two files.
    let (logs, store_requests) = check_sqlite_copy(&backup);
    let audit = verify_audit_copy(&backup);
    let audited = audit_requests(&audit, "request");
    let missing: Vec<&String> = store_requests.difference(&audited).collect();
    assert!(
        missing.is_empty(),
        "the store copy names requests the audit copy lacks: {missing:?}"
    );
    let total_filed = filed.load(std::sync::atomic::Ordering::Relaxed);
    let in_copy = logs[&made.incident]
        .iter()
        .filter(|e| e.1 == "action_requested")
        .count();
    assert!(
        in_copy > 1 && in_copy < total_filed + 1,
        "the copy is a snapshot taken mid-writes: {in_copy} of {}",
        total_filed + 1
    );
    let m = manifest(&backup);
    assert!(
        m["store"]["memory"].as_i64().unwrap() >= 1,
        "the resolved incident is remembered: {m}"
    );
    assert!(m["store"]["tokens"].as_i64().unwrap() >= 1);
    let (code, _, err) = site.oncall(&["backup", "--to", &backup.display().to_string()]);
    assert_eq!(
        code, 2,
        "a second backup into the same directory is refused"
    );
    assert!(err.contains("already holds a backup"), "{err}");

    // Never under a live server, even with --force.
    let (code, _, err) = site.oncall(&[
        "restore",
        "--from",
        &backup.display().to_string(),
        "--force",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("running oncall"), "{err}");

    // The documented restore, onto a fresh data directory (a new host).
    let fresh = Site {
        data: root.path().join("restored"),
        database_url: None,
    };
    let head = m["audit"]["head"].as_str().unwrap().to_string();
    let outs = run_block(
        "restore-sqlite",
        &fresh,
        &[("BACKUP_DIR", backup.display().to_string())],
        &mut server,
        port,
        root.path(),
    )
    .await;
    assert!(
        outs[0].contains(&format!("verifies up to head {head}:")),
        "{outs:?}"
    );
    assert!(outs[1].contains("the chain is intact"), "{outs:?}");
    let want = m["store"]["incidents"].as_i64().unwrap() as usize;
    check_restored(&c, &made, want).await;
    // Exactly the copy's log, event for event.
    let events = c.events(&made.incident).await;
    let restored: Vec<(i64, String)> = events
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .take(logs[&made.incident].len())
        .collect();
    assert_eq!(&restored, &logs[&made.incident]);
    server.stop();
    audit_continues(&fresh, &head);

    // Into the old, stopped, non-empty directory: refused without --force, done with it, and
    // what was there is moved aside, not deleted.
    let (code, _, err) = site.oncall(&["restore", "--from", &backup.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--force") && err.contains("already holds data"),
        "{err}"
    );
    let (code, out, err) = site.oncall(&[
        "restore",
        "--from",
        &backup.display().to_string(),
        "--force",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("moved aside"), "{out}");
    let aside: Vec<String> = std::fs::read_dir(&site.data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".before-restore-"))
        .collect();
    assert!(
        aside.iter().any(|n| n.starts_with("oncall.db."))
            && aside.iter().any(|n| n.starts_with("audit.jsonl.")),
        "{aside:?}"
    );
    let mut server = site.serve(port).await;
    check_restored(&c, &made, want).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_is_backed_up_with_pg_dump_and_restored_with_pg_restore() {
    if !Pg::available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL 15 is missing at /usr/lib/postgresql/15/bin: run scripts/setup-test-deps.sh"
        );
        eprintln!("SKIPPED: PostgreSQL 15 is not installed at /usr/lib/postgresql/15/bin");
        return;
    }
    let mut pg = Pg::start(40);
    pg.sql("postgres", "CREATE DATABASE oncall_store OWNER app");
    pg.sql("postgres", "CREATE DATABASE oncall_restored OWNER app");
    let root = tempfile::tempdir().unwrap();
    let site = Site {
        data: root.path().join("data"),
        database_url: Some(pg.url("app", "oncall_store")),
    };
    let port = free_port();
    let c = Client::new(port);
    let mut server = site.serve(port).await;
    let made = make_history(&site, &c).await;

    let backup = root.path().join("backup-pg");
    run_block(
        "backup-postgres",
        &site,
        &[("BACKUP_DIR", backup.display().to_string())],
        &mut server,
        port,
        root.path(),
    )
    .await;
    assert!(backup.join("store.dump").is_file());
    let m = manifest(&backup);
    assert_eq!(m["store"]["kind"], "postgresql");
    verify_audit_copy(&backup);
    let incidents: usize = pg
        .sql("oncall_store", "SELECT COUNT(*) FROM incidents")
        .parse()
        .unwrap();

    // A new data directory and an empty database: the documented restore.
    let fresh = Site {
        data: root.path().join("restored"),
        database_url: Some(pg.url("app", "oncall_restored")),
    };
    run_block(
        "restore-postgres",
        &fresh,
        &[("BACKUP_DIR", backup.display().to_string())],
        &mut server,
        port,
        root.path(),
    )
    .await;
    check_restored(&c, &made, incidents).await;
    // The database going away: not ready, with the reason (what a load balancer acts on).
    pg.stop();
    let (s, v) = c.call(OP, "GET", "/readyz", None).await;
    assert_eq!(s, 503, "{v}");
    let why = v["error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("not ready:") && why.contains("incident store"),
        "{v}"
    );
    assert!(
        !why.contains(common::pg::PASSWORD),
        "the reason is redacted: {why}"
    );
    let (s, _) = c.call(OP, "GET", "/healthz", None).await;
    assert_eq!(s, 200, "still alive");
    server.stop();
    audit_continues(&fresh, m["audit"]["head"].as_str().unwrap());
}
