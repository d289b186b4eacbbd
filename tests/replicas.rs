//! Three real `oncall serve` replicas on loopback ports over one real PostgreSQL 15: a request
//! filed on one is approved on another and runs once; the same request approved on all three at
//! once, a hundred times, runs once each time; SIGKILL of a replica in the middle of its
//! investigations loses nothing a client saw, another replica marks them interrupted and resumes
//! them, and every audit log verifies against the store; a Slack retry, a replayed signature and
//! a repeated alert reaching another replica are recognised there.

mod common;

use common::ONCALL;
use common::pg::Pg;
use common::serve::{Serve, free_port};
use oncall::server::slack;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const OP: &str = "operator-replicas-token";
const SECRET: &str = "replicas-slack-signing-secret-0123";

/// One `oncall serve` process (SIGKILLed by its own pid when dropped) and its name.
struct Replica {
    name: String,
    serve: Serve,
    base: String,
    http: reqwest::Client,
}

/// The cluster: a database, a directory per replica, the counting action.
struct Cluster {
    _pg: Pg,
    url: String,
    dir: tempfile::TempDir,
    actions: PathBuf,
    count: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        let pg = Pg::start(120);
        pg.sql("postgres", "CREATE DATABASE incidents OWNER app");
        let url = pg.url("app", "incidents");
        let dir = tempfile::tempdir().expect("tempdir");
        // A live action that appends a line per run: the lines are the runs.
        let (actions, count) = common::counting_action(dir.path());
        Cluster {
            _pg: pg,
            url,
            dir,
            actions,
            count,
        }
    }

    fn env(&self, name: &str) -> Vec<(String, String)> {
        let data = self.dir.path().join(name);
        vec![
            ("ONCALL_SERVER__DATABASE_URL".into(), self.url.clone()),
            ("ONCALL_SERVER__REPLICA".into(), name.into()),
            ("ONCALL_SERVER__DATA_DIR".into(), data.display().to_string()),
            // Short, so the takeover test is quick; long enough that a replica busy on a
            // loaded CI machine is not taken for dead.
            ("ONCALL_SERVER__REPLICA_TIMEOUT_S".into(), "5".into()),
            ("ONCALL_SERVER__REQUESTS_PER_S".into(), "100000".into()),
            (
                "ONCALL_SERVER__MAX_INVESTIGATIONS_PER_USER".into(),
                "50".into(),
            ),
            // One investigator per replica: under load, rounds queue (and count as running).
            ("ONCALL_SERVER__MAX_INVESTIGATIONS".into(), "1".into()),
            (
                "ONCALL_ACTIONS__DIR".into(),
                self.actions.display().to_string(),
            ),
            ("ONCALL_HOST__WINDOW_MS".into(), "200".into()),
            ("SLACK_SIGNING_SECRET".into(), SECRET.into()),
        ]
    }

    async fn start(&self, name: &str) -> Replica {
        self.start_with(name, &[]).await
    }

    async fn start_with(&self, name: &str, extra: &[(&str, String)]) -> Replica {
        let port = free_port();
        let mut cmd = Command::new(ONCALL);
        cmd.arg("serve")
            .envs(self.env(name))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("ONCALL_CONFIG")
            .env_remove("SLACK_BOT_TOKEN")
            .env("ONCALL_TOKEN", OP)
            .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"));
        let serve = Serve::spawn(cmd, port)
            .await
            .unwrap_or_else(|e| panic!("replica {name} did not come up: {e}"));
        Replica {
            name: name.into(),
            base: serve.base.clone(),
            http: reqwest::Client::new(),
            serve,
        }
    }

    /// A token stored in the shared store (any replica knows it).
    fn token(&self, name: &str, role: &str) -> String {
        common::token_add(
            ("ONCALL_SERVER__DATABASE_URL", self.url.as_ref()),
            name,
            role,
        )
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(&self.count)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// `oncall audit verify --replicas` against the shared store.
    fn verify_audit(&self) -> (bool, String) {
        let out = Command::new(ONCALL)
            .args(["audit", "verify", "--replicas"])
            .env_remove("ONCALL_CONFIG")
            .env("ONCALL_SERVER__DATABASE_URL", &self.url)
            .output()
            .expect("oncall audit verify");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }

    fn audit_file(&self, replica: &str) -> PathBuf {
        self.dir.path().join(replica).join("audit.jsonl")
    }
}

impl Replica {
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        match r.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                let t = r.text().await.unwrap_or_default();
                (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    async fn open(&self, report: &str) -> String {
        let (s, v) = self
            .call(
                OP,
                "POST",
                "/api/v1/incidents",
                Some(json!({"report": report})),
            )
            .await;
        assert_eq!(s, 202, "{}: {v}", self.name);
        v["id"].as_str().expect("id").to_string()
    }

    async fn request(&self, incident: &str, tool: &str, args: Value) -> String {
        let (s, v) = self
            .call(
                OP,
                "POST",
                &format!("/api/v1/incidents/{incident}/actions"),
                Some(json!({"tool": tool, "args": args})),
            )
            .await;
        assert_eq!(s, 202, "{}: {v}", self.name);
        v["request"].as_str().expect("request").to_string()
    }

    async fn approve(&self, token: &str, request: &str) -> (u16, Value) {
        self.call(
            token,
            "POST",
            &format!("/api/v1/approvals/{request}/decision"),
            Some(json!({"approve": true})),
        )
        .await
    }

    async fn incident(&self, id: &str) -> Value {
        self.call(OP, "GET", &format!("/api/v1/incidents/{id}"), None)
            .await
            .1
    }

    async fn approval(&self, request: &str) -> Value {
        let (_, list) = self.call(OP, "GET", "/api/v1/approvals", None).await;
        list.as_array()
            .and_then(|l| l.iter().find(|x| x["id"] == request).cloned())
            .unwrap_or(Value::Null)
    }

    /// Polls the incident (on this replica) until `pred` holds for its events.
    async fn wait(
        &self,
        id: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.incident(id).await;
            let ev = v["events"].as_array().cloned().unwrap_or_default();
            if pred(&ev) {
                return ev;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what} in {id}: {:?}",
                self.name,
                common::server::kinds(&ev)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn has(kind: &str) -> impl Fn(&[Value]) -> bool + '_ {
    move |ev: &[Value]| ev.iter().any(|e| e["kind"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_filed_on_one_replica_is_approved_on_another_and_runs_once() {
    if !Pg::available() {
        eprintln!("PostgreSQL 15 is not installed: skipped");
        return;
    }
    let c = Cluster::new();
    let bo = c.token("bo", "approver");
    let (r1, r2, r3) = tokio::join!(c.start("r1"), c.start("r2"), c.start("r3"));

    // A real process, signalled through an approval filed on r1 and given on r2.
    let id = r1.open("a quiet report for the replica test").await;
    r1.wait(&id, 60, "the first round", has("investigation_finished"))
        .await;
    let mut victim = Command::new("sleep").arg("300").spawn().expect("victim");
    let req = r1
        .request(
            &id,
            "host.signal_process",
            json!({"pid": victim.id(), "signal": "TERM"}),
        )
        .await;
    // Listed on every replica, with the exact arguments it was filed with (bound to the
    // process's identity), pending.
    for r in [&r1, &r2, &r3] {
        let a = r.approval(&req).await;
        assert_eq!(a["state"]["state"], "pending", "{}: {a}", r.name);
        assert_eq!(a["args"]["pid"], json!(victim.id()), "{}: {a}", r.name);
    }
    // The requester cannot approve it on another replica either.
    let (s, v) = r3.approve(OP, &req).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = r2.approve(&bo, &req).await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while victim.try_wait().expect("try_wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the approved signal never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = r3
        .wait(&id, 30, "the verified action", has("action_verified"))
        .await;
    let count = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
    assert_eq!(count("action_executing"), 1);
    assert_eq!(count("action_executed"), 1);
    for r in [&r1, &r2, &r3] {
        let a = r.approval(&req).await;
        assert_eq!(a["state"]["state"], "executed", "{}: {a}", r.name);
    }
    // Approving it again anywhere never runs it again.
    for r in [&r1, &r3] {
        let (s, v) = r.approve(&bo, &req).await;
        assert_eq!(s, 409, "{}: {v}", r.name);
    }
    let (ok, out) = c.verify_audit();
    assert!(ok, "{out}");
    assert_eq!(out.matches("the chain is intact").count(), 3, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_approved_on_three_replicas_at_once_runs_once_a_hundred_times() {
    if !Pg::available() {
        eprintln!("PostgreSQL 15 is not installed: skipped");
        return;
    }
    let c = Cluster::new();
    let bo = c.token("bo", "approver");
    let (r1, r2, r3) = tokio::join!(c.start("r1"), c.start("r2"), c.start("r3"));
    let replicas = [&r1, &r2, &r3];
    // Four incidents, so executions of different incidents overlap while each incident keeps
    // one action in flight.
    let mut incidents = vec![];
    for (i, r) in replicas.iter().enumerate() {
        incidents.push(r.open(&format!("a quiet report {i} for the race")).await);
    }
    incidents.push(r1.open("a quiet report 3 for the race").await);
    const TRIES: usize = 100;
    let mut requests = vec![];
    for i in 0..TRIES {
        let r = replicas[i % 3];
        requests.push(
            r.request(&incidents[i % incidents.len()], "count.run", json!({}))
                .await,
        );
    }
    // Each request approved on all three replicas at the same moment; ten requests at a time.
    let mut answers = vec![];
    for chunk in requests.chunks(10) {
        let mut calls = vec![];
        for req in chunk {
            for r in replicas {
                let (bo, req) = (bo.clone(), req.clone());
                calls.push(async move { (req.clone(), r.approve(&bo, &req).await) });
            }
        }
        answers.extend(futures::future::join_all(calls).await);
    }
    for req in &requests {
        let codes: Vec<u16> = answers
            .iter()
            .filter(|(r, _)| r == req)
            .map(|(_, (s, _))| *s)
            .collect();
        assert!(codes.contains(&200), "{req}: {codes:?}");
        assert!(
            codes.iter().all(|s| *s == 200 || *s == 409),
            "{req}: {codes:?} {answers:?}"
        );
    }
    // Every request ends executed, and the action ran exactly once per request.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = r2.call(OP, "GET", "/api/v1/approvals", None).await;
        let done = list
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|a| a["state"]["state"] == "executed" && a["state"]["ok"] == true)
                    .count()
            })
            .unwrap_or(0);
        if done == TRIES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {TRIES} executed; runs so far {}",
            c.runs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each executed request ran at least once: as many runs as requests is once each.
    assert_eq!(c.runs(), TRIES, "runs of {TRIES} requests");
    let mut executing = 0;
    for id in &incidents {
        let ev = r3.incident(id).await;
        executing += ev["events"]
            .as_array()
            .map(|e| e.iter().filter(|e| e["kind"] == "action_executing").count())
            .unwrap_or(0);
    }
    assert_eq!(executing, TRIES, "one action_executing event per request");
    let (ok, out) = c.verify_audit();
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_replica_loses_nothing_and_another_replica_takes_over() {
    if !Pg::available() {
        eprintln!("PostgreSQL 15 is not installed: skipped");
        return;
    }
    let c = Cluster::new();
    let bo = c.token("bo", "approver");
    // r2 samples the host for 1 s per look, so its rounds are still running when it dies
    // (not finished in the time r1 takes to see them).
    let slow = [("ONCALL_HOST__WINDOW_MS", "1000".to_string())];
    let (r1, mut r2, r3) = tokio::join!(c.start("r1"), c.start_with("r2", &slow), c.start("r3"));
    // A request filed on r2 before it dies, pending.
    let quiet = r2.open("a quiet report before the crash").await;
    r2.wait(&quiet, 60, "the first round", has("investigation_finished"))
        .await;
    let pending = r2.request(&quiet, "count.run", json!({})).await;
    // Load: investigations running (and queued) on r2, one of them streamed from r1.
    let mut opened = vec![];
    for i in 0..4 {
        opened.push(
            r2.open(&format!("checkout errors for users, wave {i}"))
                .await,
        );
    }
    let watched = opened[1].clone();
    let seen = common::server::stream_until(
        &r1.base,
        OP,
        &watched,
        None,
        "tool_called",
        Duration::from_secs(30),
    )
    .await;
    assert!(!seen.is_empty(), "r1 streams r2's investigation");
    r2.serve.kill();
    let audit_before = std::fs::read_to_string(c.audit_file("r2")).expect("r2 audit");
    // What was still running when r2 died (the takeover needs 5 s without a heartbeat).
    let mut running = vec![];
    for id in &opened {
        if r1.incident(id).await["incident"]["status"] == "investigating" {
            running.push(id.clone());
        }
    }
    assert!(
        !running.is_empty(),
        "nothing was running on r2 when it died"
    );

    // A surviving replica notices (5 s without a heartbeat) and marks each one interrupted, once.
    for id in &running {
        let events = r3
            .wait(id, 30, "the interruption", has("interrupted"))
            .await;
        let stopped = events
            .iter()
            .find(|e| e["kind"] == "interrupted")
            .expect("interrupted");
        assert_eq!(stopped["data"]["owner"], "r2", "{stopped}");
        assert!(
            ["r1", "r3"].contains(&stopped["data"]["by"].as_str().unwrap_or("")),
            "{stopped}"
        );
        assert_eq!(
            events.iter().filter(|e| e["kind"] == "interrupted").count(),
            1,
            "marked once"
        );
        let inc = r3.incident(id).await;
        assert_eq!(inc["incident"]["status"], "interrupted", "{id}");
    }
    // No event a client saw is lost.
    let events = r1.incident(&watched).await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (seq, e) in &seen {
        let got = events
            .iter()
            .find(|x| x["seq"] == *seq)
            .unwrap_or_else(|| panic!("event {seq} a client saw is lost"));
        assert_eq!((&got["kind"], &got["data"]), (&e["kind"], &e["data"]));
    }
    // The pending approval survived: approved on r3, it runs there, once.
    let before = c.runs();
    let (s, v) = r3.approve(&bo, &pending).await;
    assert_eq!(s, 200, "{v}");
    r1.wait(&quiet, 30, "the verified action", has("action_verified"))
        .await;
    assert_eq!(c.runs(), before + 1);
    // The interrupted investigation resumes on r1 and finishes there.
    let (s, v) = r1
        .call(
            OP,
            "POST",
            &format!("/api/v1/incidents/{}/resume", running[0]),
            None,
        )
        .await;
    assert_eq!(s, 202, "{v}");
    r3.wait(&running[0], 60, "the resumed round", |ev| {
        ev.iter()
            .skip_while(|e| e["kind"] != "interrupted")
            .any(|e| e["kind"] == "investigation_finished")
    })
    .await;
    let inc = r3.incident(&running[0]).await;
    assert_eq!(inc["incident"]["owner"], "r1");
    // r2's audit log is intact and still holds what it recorded in the store; the others too.
    let audit_after = std::fs::read_to_string(c.audit_file("r2")).expect("r2 audit");
    assert_eq!(audit_before, audit_after);
    let (ok, out) = c.verify_audit();
    assert!(ok, "{out}");
    assert_eq!(out.matches("the chain is intact").count(), 3, "{out}");
    // A log cut back below what its replica recorded in the store is caught (here: emptied;
    // r2 beat several times after its request record).
    assert!(!audit_after.is_empty(), "r2 audited its request");
    std::fs::write(c.audit_file("r2"), "").expect("cut");
    let (ok, out) = c.verify_audit();
    assert!(!ok, "a cut log passed: {out}");
    assert!(out.contains("r2: BROKEN"), "{out}");
}

/// SIGKILL of the replica running an action, between its write-ahead record and its result:
/// another replica marks it `outcome_unknown` with what to verify, and no replica runs it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_cut_by_a_dead_replica_is_never_run_again_by_another() {
    if !Pg::available() {
        eprintln!("PostgreSQL 15 is not installed: skipped");
        return;
    }
    let c = Cluster::new();
    let bo = c.token("bo", "approver");
    let marker = c.dir.path().join("paused-executing");
    let pause = [(
        "OC_TEST_PAUSE_AT",
        format!("executing:{}", marker.display()),
    )];
    let (r1, mut r2, r3) = tokio::join!(c.start("r1"), c.start_with("r2", &pause), c.start("r3"));
    let id = r1.open("a quiet report for the cut action").await;
    let req = r1.request(&id, "count.run", json!({})).await;
    // Approved on r2: r2 claims it, writes ahead, and stops right before running it.
    let (s, v) = r2.approve(&bo, &req).await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "r2 never reached the action");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(r3.approval(&req).await["state"]["state"], "executing");
    // Another replica cannot run what r2 is running.
    let (s, _) = r3.approve(&bo, &req).await;
    assert_eq!(s, 409);
    r2.serve.kill();
    let events = r1
        .wait(
            &id,
            30,
            "the unknown outcome",
            has("action_outcome_unknown"),
        )
        .await;
    let told = events
        .iter()
        .find(|e| e["kind"] == "action_outcome_unknown")
        .expect("told");
    assert_eq!(told["data"]["request"], json!(req));
    assert!(
        told["data"]["verify"]
            .as_str()
            .unwrap_or("")
            .contains("Verify by hand"),
        "{told}"
    );
    let a = r3.approval(&req).await;
    assert_eq!(a["state"]["state"], "outcome_unknown", "{a}");
    assert_eq!(a["state"]["approved_by"], "bo", "{a}");
    for r in [&r1, &r3] {
        let (s, v) = r.approve(&bo, &req).await;
        assert_eq!(s, 409, "{}: {v}", r.name);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.runs(), 0, "the cut action ran again");
    // The incident's next action is not blocked by the dead replica's slot.
    let next = r3.request(&id, "count.run", json!({})).await;
    let (s, v) = r1.approve(&bo, &next).await;
    assert_eq!(s, 200, "{v}");
    r3.wait(&id, 30, "the next action", |ev| {
        ev.iter()
            .any(|e| e["kind"] == "action_verified" && e["data"]["request"] == json!(next))
    })
    .await;
    assert_eq!(c.runs(), 1);
    let (ok, out) = c.verify_audit();
    assert!(ok, "{out}");
}

fn signed(body: &str, ts: i64) -> (String, String) {
    let ts = ts.to_string();
    let sig = slack::sign(SECRET, &ts, body.as_bytes()).expect("sign");
    (ts, sig)
}

async fn slack_post(r: &Replica, path: &str, body: &str, ts: &str, sig: &str) -> u16 {
    r.http
        .post(format!("{}{path}", r.base))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn incident_ids(r: &Replica) -> Vec<String> {
    let (_, list) = r.call(OP, "GET", "/api/v1/incidents", None).await;
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_retries_replays_and_repeated_alerts_are_recognised_on_every_replica() {
    if !Pg::available() {
        eprintln!("PostgreSQL 15 is not installed: skipped");
        return;
    }
    let c = Cluster::new();
    let (r1, r2, r3) = tokio::join!(c.start("r1"), c.start("r2"), c.start("r3"));
    let now = chrono::Utc::now().timestamp();
    // A mention reaches r1; Slack's retry (same event_id, new signature) reaches r2.
    let mention = json!({"type": "event_callback", "event_id": "EvRepl1", "team_id": "T1",
        "event": {"type": "app_mention", "user": "UBO", "text": "<@UBOT> api errors for users",
                  "channel": "C9", "ts": "1700000300.000100"}})
    .to_string();
    let (ts, sig) = signed(&mention, now);
    assert_eq!(
        slack_post(&r1, "/slack/events", &mention, &ts, &sig).await,
        200
    );
    let (ts2, sig2) = signed(&mention, now + 1);
    assert_eq!(
        slack_post(&r2, "/slack/events", &mention, &ts2, &sig2).await,
        200
    );
    // The very same signed request again, on r3: a replay.
    assert_eq!(
        slack_post(&r3, "/slack/events", &mention, &ts, &sig).await,
        401
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while incident_ids(&r3).await.is_empty() {
        assert!(Instant::now() < deadline, "the mention opened no incident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(incident_ids(&r3).await.len(), 1, "acted on once");

    // Alertmanager sends the same firing alert to r1, then (repeat, retry) to r2 and r3.
    let alert = json!({"version": "4", "status": "firing", "receiver": "oncall", "alerts": [
        {"status": "firing", "labels": {"alertname": "HighLatency", "service": "checkout"},
         "annotations": {"summary": "p99 above 2s"}, "startsAt": "2026-11-27T04:00:00Z",
         "fingerprint": "a1b2c3"}]});
    let (s, v) = r1
        .call(OP, "POST", "/api/v1/alerts", Some(alert.clone()))
        .await;
    assert_eq!(s, 202, "{v}");
    for r in [&r2, &r3] {
        let (s, v) = r
            .call(OP, "POST", "/api/v1/alerts", Some(alert.clone()))
            .await;
        assert_eq!(
            (s, v["incidents"].clone()),
            (200, json!([])),
            "{}: {v}",
            r.name
        );
    }
    assert_eq!(incident_ids(&r2).await.len(), 2);
    // The same alert firing again later (a new start) is a new incident.
    let mut again = alert.clone();
    again["alerts"][0]["startsAt"] = json!("2026-11-27T09:00:00Z");
    let (s, v) = r3.call(OP, "POST", "/api/v1/alerts", Some(again)).await;
    assert_eq!(s, 202, "{v}");
}
