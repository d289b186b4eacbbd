//! Real faults against a throwaway PostgreSQL 15 cluster, diagnosed by the real `oncall` binary:
//! an unindexed query under load (then fixed by an index), a lock chain behind a session idle in
//! transaction, connections opened up to the limit, a healthy database; and the bad inputs
//! (wrong password, missing extension, statement timeout, a database that goes away) that must
//! become clear evidence while the investigation carries on.

mod common;

use common::pg::Pg;
use common::*;
use oncall::collectors::postgres::{PgAnswer, ProblemKind};
use oncall::config::{Config, PgSettings};
use oncall::registry::Registry;
use oncall::tool::ToolError;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Skips (with a message) where PostgreSQL 15 is not installed; in CI (`CI` set) its absence
/// is a failure instead, since scripts/setup-test-deps.sh installs it.
fn skip() -> bool {
    if Pg::available() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "PostgreSQL 15 is missing at /usr/lib/postgresql/15/bin: run scripts/setup-test-deps.sh"
    );
    eprintln!(
        "SKIPPED: PostgreSQL 15 is not installed at /usr/lib/postgresql/15/bin (scripts/setup-test-deps.sh installs it)"
    );
    true
}

/// Runs the real binary against the cluster (in a blocking thread, so the load keeps running).
async fn triage(pg: &Pg, report: &str) -> Value {
    let env = pg.oncall_env();
    let report = report.to_string();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        triage_json(&report, &env)
    })
    .await
    .expect("triage thread")
}

fn top(answer: &Value) -> &Value {
    &hypotheses(answer)[0]
}

/// Clients that run a statement in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Load {
    async fn start(pg: &Pg, workers: usize, app: &str, sql: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = vec![];
        for w in 0..workers {
            let client = pg.connect("app", "app", app).await;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("cust-{}", (n * 7919 + w as u64 * 104729) % 50_000);
                    if client.query(sql, &[&key]).await.is_err() {
                        break;
                    }
                    n += 1;
                }
                n
            }));
        }
        Load { stop, tasks }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in self.tasks {
            total += t.await.unwrap_or(0);
        }
        total
    }
}

const LOOKUP: &str = "SELECT id, amount FROM orders WHERE customer_ref = $1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unindexed_query_under_load_is_top1_slow_query_and_an_index_fixes_it() {
    if skip() {
        return;
    }
    let pg = Pg::start(50);
    pg.sql(
        "app",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_ref text NOT NULL, amount int NOT NULL, created_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO orders (customer_ref, amount) SELECT 'cust-' || (g % 50000), g % 1000 FROM generate_series(1, 1000000) g; \
         ANALYZE orders; GRANT SELECT ON orders TO app",
    );
    // A distractor: a cheap query that runs often.
    let chatter = Load::start(
        &pg,
        1,
        "session-cache",
        "SELECT 1 WHERE $1::text IS NOT NULL",
    )
    .await;
    let load = Load::start(&pg, 2, "checkout-api", LOOKUP).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let answer = triage(&pg, "checkout is slow").await;
    let h = top(&answer);
    let tq_out = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tool"] == "postgres.explain" || c["tool"] == "postgres.table_stats")
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        h["category"],
        "db.slow_query",
        "ranking:\n{}\ntop_queries: {tq_out}",
        ranking(&answer)
    );
    assert_eq!(h["status"], "confirmed");
    assert_eq!(h["culprit"]["name"], "orders");
    let statement = h["statement"].as_str().unwrap();
    assert!(
        statement.contains("orders") && statement.contains("Seq Scan"),
        "{statement}"
    );
    let tools: Vec<&str> = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["tool"].as_str())
        .collect();
    assert!(
        tools.contains(&"postgres.explain") && tools.contains(&"postgres.table_stats"),
        "{tools:?}"
    );
    // oncall's own statements never show up as findings.
    let tq = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tool"] == "postgres.top_queries")
        .unwrap();
    assert!(
        !tq["output"].to_string().contains("oncall */"),
        "oncall's own queries leaked into top_queries"
    );

    pg.sql(
        "app",
        "CREATE INDEX orders_customer_ref ON orders (customer_ref)",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = triage(&pg, "checkout is slow").await;
    let threshold = after["confidence_threshold"].as_f64().unwrap();
    let slow = hypotheses(&after)
        .iter()
        .find(|h| h["category"] == "db.slow_query")
        .expect("slow-query hypothesis");
    assert!(
        slow["confidence"].as_f64().unwrap() < threshold,
        "after the index the query is no longer reported:\n{}",
        ranking(&after)
    );
    assert_eq!(slow["status"], "rejected");
    assert!(load.stop().await > 0);
    chatter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_chain_names_the_root_holder_not_the_middle_victim() {
    if skip() {
        return;
    }
    let pg = Pg::start(50);
    pg.sql("app", "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO accounts VALUES (1, 100), (2, 100); GRANT ALL ON accounts TO app");
    let holder = pg.connect("app", "app", "billing-worker").await;
    holder
        .batch_execute("BEGIN; UPDATE accounts SET balance = balance + 1 WHERE id = 1")
        .await
        .unwrap();
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let mut victims = vec![];
    let mut victim_pids = vec![];
    for _ in 0..2 {
        let c = pg.connect("app", "app", "checkout-api").await;
        victim_pids.push(
            c.query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
        );
        victims.push(tokio::spawn(async move {
            c.execute(
                "UPDATE accounts SET balance = balance - 1 WHERE id = 1",
                &[],
            )
            .await
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let answer = triage(&pg, "checkout requests hang").await;
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "db.lock_contention",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["status"], "confirmed");
    assert_eq!(
        h["culprit"]["pid"], holder_pid,
        "names the root holder: {h}"
    );
    assert_eq!(h["culprit"]["name"], "billing-worker");
    let blocking = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tool"] == "postgres.blocking")
        .unwrap();
    let roots = blocking["output"]["data"]["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "the middle victim is not a root: {roots:?}");
    let middle = roots[0]["victims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["pid"] == victim_pids[0])
        .unwrap();
    assert!(
        middle["blocks"].as_u64().unwrap() >= 1,
        "the first victim blocks the second: {middle}"
    );
    // The stabilizer is a request, not an action: terminate is refused without an approval.
    let mut c = Config::default();
    c.postgres.insert(
        "app".into(),
        PgSettings {
            url: pg.url("oncall", "app"),
            action_url: pg.url("postgres", "app"),
            ..Default::default()
        },
    );
    let reg = oncall::app::builtin_registry(Arc::new(c));
    let err = reg
        .call(
            "postgres.terminate_backend",
            json!({"pid": holder_pid}),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::ApprovalRequired { .. }), "{err}");
    let alive: i64 = pg
        .sql(
            "app",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {holder_pid}"),
        )
        .parse()
        .unwrap();
    assert_eq!(alive, 1, "the holder survives the refused call");
    holder.batch_execute("ROLLBACK").await.unwrap();
    for v in victims {
        assert!(v.await.unwrap().is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_at_the_limit_name_the_application_holding_them() {
    if skip() {
        return;
    }
    // 20 slots, 3 reserved for superusers: 17 usable; the batch takes 16, oncall the last one.
    let pg = Pg::start(20);
    let mut held = vec![];
    for _ in 0..16 {
        held.push(pg.connect("app", "app", "report-batch").await);
    }
    let answer = triage(&pg, "new requests fail to get a database connection").await;
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "db.connection_exhaustion",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["status"], "confirmed");
    assert_eq!(h["culprit"]["name"], "report-batch");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_database_abstains() {
    if skip() {
        return;
    }
    let pg = Pg::start(50);
    let answer = triage(&pg, "routine check of the database").await;
    let threshold = answer["confidence_threshold"].as_f64().unwrap();
    let above: Vec<&Value> = hypotheses(&answer)
        .iter()
        .filter(|h| h["confidence"].as_f64().unwrap() >= threshold)
        .collect();
    assert!(above.is_empty(), "nothing is wrong:\n{}", ranking(&answer));
    assert_eq!(answer["abstained"], true);
    let cats: Vec<&str> = hypotheses(&answer)
        .iter()
        .filter_map(|h| h["category"].as_str())
        .collect();
    for c in [
        "db.slow_query",
        "db.lock_contention",
        "db.connection_exhaustion",
    ] {
        assert!(cats.contains(&c), "{c} was examined: {cats:?}");
    }
}

fn registry_for(settings: PgSettings) -> Registry {
    let mut c = Config::default();
    c.postgres.insert("app".into(), settings);
    oncall::app::builtin_registry(Arc::new(c))
}

fn problem(v: &Value) -> (ProblemKind, String) {
    let a: PgAnswer<Value> = serde_json::from_value(v.clone()).unwrap();
    let p = a.problem.expect("a problem");
    (p.kind, format!("{} | {}", p.message, p.hint))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_become_clear_evidence() {
    if skip() {
        return;
    }
    let mut pg = Pg::start(50);
    // Wrong password.
    let wrong = pg
        .url("oncall", "app")
        .replace(common::pg::PASSWORD, "not-the-password");
    let reg = registry_for(PgSettings {
        url: wrong,
        ..Default::default()
    });
    let (kind, msg) = problem(
        &reg.call("postgres.connections", json!({}), None)
            .await
            .unwrap(),
    );
    assert_eq!(kind, ProblemKind::AuthFailed, "{msg}");
    assert!(
        msg.contains("password") && !msg.contains("not-the-password"),
        "{msg}"
    );
    // A database without pg_stat_statements.
    let reg = registry_for(PgSettings {
        url: pg.url("oncall", "noext"),
        window_ms: 100,
        ..Default::default()
    });
    let (kind, msg) = problem(
        &reg.call("postgres.top_queries", json!({}), None)
            .await
            .unwrap(),
    );
    assert_eq!(kind, ProblemKind::MissingExtension, "{msg}");
    assert!(
        msg.contains("CREATE EXTENSION pg_stat_statements")
            && msg.contains("shared_preload_libraries"),
        "{msg}"
    );
    // A statement timeout.
    let reg = registry_for(PgSettings {
        url: pg.url("oncall", "app"),
        statement_timeout_ms: 1,
        ..Default::default()
    });
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "{}?options=-c%20statement_timeout%3D50",
            pg.url("oncall", "app")
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let err = client.query("SELECT pg_sleep(1)", &[]).await.unwrap_err();
    let p = oncall::collectors::postgres::classify(
        "app",
        &PgSettings {
            statement_timeout_ms: 50,
            ..Default::default()
        },
        &err,
    );
    assert_eq!(p.kind, ProblemKind::Timeout, "{p:?}");
    assert!(p.hint.contains("statement_timeout"), "{p:?}");
    drop(reg);
    // A wrong URL (nothing listens there), then a database that goes away mid-investigation.
    let reg = registry_for(PgSettings {
        url: "postgres://oncall:x@127.0.0.1:1/app".into(),
        connect_timeout_s: 2,
        ..Default::default()
    });
    let (kind, msg) = problem(
        &reg.call("postgres.activity", json!({}), None)
            .await
            .unwrap(),
    );
    assert_eq!(kind, ProblemKind::Unreachable, "{msg}");
    let reg = Arc::new(registry_for(PgSettings {
        url: pg.url("oncall", "app"),
        window_ms: 3000,
        ..Default::default()
    }));
    let r2 = reg.clone();
    let call = tokio::spawn(async move { r2.call("postgres.top_queries", json!({}), None).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    pg.stop();
    let (kind, msg) = problem(&call.await.unwrap().unwrap());
    assert_eq!(kind, ProblemKind::Unreachable, "{msg}");
    // The whole investigation carries on with the other tools and says what happened.
    let env = [
        (
            "ONCALL_POSTGRES__APP__URL",
            "postgres://oncall:x@127.0.0.1:1/app",
        ),
        ("ONCALL_POSTGRES__APP__CONNECT_TIMEOUT_S", "2"),
        ("ONCALL_HOST__WINDOW_MS", "200"),
    ];
    let answer = tokio::task::spawn_blocking(move || triage_json("checkout is slow", &env))
        .await
        .unwrap();
    let cats: Vec<&str> = hypotheses(&answer)
        .iter()
        .filter_map(|h| h["category"].as_str())
        .collect();
    assert!(
        cats.contains(&"host.cpu_saturation"),
        "host tools still ran: {cats:?}"
    );
    let down = hypotheses(&answer)
        .iter()
        .find(|h| h["category"] == "dependency.errors")
        .expect("the unreachable database is evidence");
    assert!(
        down["statement"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{down}"
    );
    assert_eq!(down["status"], "confirmed");
}

/// Old news: an OOM kill in an unrelated memory cgroup minutes before, then a live lock chain
/// and a report about hanging payouts. The lock chain is the answer; the kill stays on the
/// board below it, as a secondary finding. The kill is real (a process grown past a 64 MiB
/// cgroup limit), so the test waits until it is older than `oom_recent_s` (two minutes): the
/// tests that run after it then see an old kill too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_oom_kill_elsewhere_does_not_outrank_a_live_lock_chain() {
    if skip() {
        return;
    }
    let Some(cg) = cgroup_for_test("memory", || TestCgroup::memory(64 << 20)) else {
        return;
    };
    // The victim: grows past the cgroup's limit and is killed by the kernel.
    let script = format!(
        "echo $$ > '{}' && exec '{FAULT}' --name batch-import --seconds 30 memory --rate-mib-per-s 200 --max-mib 1000",
        cg.dir().join("cgroup.procs").display()
    );
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .stdout(std::process::Stdio::null())
            .status()
    })
    .await
    .expect("join")
    .expect("run the victim");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the OOM killer's SIGKILL: {status:?}"
    );
    let killed_at = std::time::Instant::now();
    drop(cg);

    let pg = Pg::start(50);
    pg.sql("app", "CREATE SCHEMA payments; CREATE TABLE payments.payouts (id int PRIMARY KEY, state text NOT NULL); INSERT INTO payments.payouts SELECT g, 'queued' FROM generate_series(1, 100) g; GRANT USAGE ON SCHEMA payments TO app; GRANT ALL ON payments.payouts TO app");
    let holder = pg.connect("app", "app", "payout-batcher").await;
    holder
        .batch_execute("BEGIN; UPDATE payments.payouts SET state = 'sending' WHERE id = 7")
        .await
        .unwrap();
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let mut waiting = vec![];
    for _ in 0..3 {
        let c = pg.connect("app", "app", "payout-api").await;
        waiting.push(tokio::spawn(async move {
            c.execute(
                "UPDATE payments.payouts SET state = 'paid' WHERE id = 7",
                &[],
            )
            .await
        }));
    }
    // Minutes earlier, as in the incident: past the two minutes in which a kill is news.
    let old = Duration::from_secs(125);
    if let Some(rest) = old.checked_sub(killed_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let answer = triage(&pg, "payouts are hanging").await;
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "db.lock_contention",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["pid"], holder_pid, "{h}");
    let oom = hypotheses(&answer)
        .iter()
        .find(|h| h["category"] == "host.memory_pressure")
        .expect("the kill stays on the board");
    let note = oom["evidence"][0]["note"].as_str().unwrap_or_default();
    assert!(
        oom["statement"]
            .as_str()
            .unwrap_or_default()
            .contains("batch-import")
            && note.contains("secondary"),
        "listed as a secondary finding: {oom}"
    );
    assert!(
        oom["confidence"].as_f64().unwrap_or(1.0) < h["confidence"].as_f64().unwrap_or(0.0),
        "below the answer:\n{}",
        ranking(&answer)
    );
    drop(holder);
    for w in waiting {
        w.abort();
    }
}

/// Runs postgres.explain_analyze with an approval made for exactly this statement.
async fn analyze(reg: &Registry, sql: &str) -> Result<Value, ToolError> {
    use oncall::policy::{ActionRequest, Human, Role, approve};
    let args = json!({"sql": sql});
    let req = ActionRequest::new("postgres.explain_analyze", args.clone(), "agent", &[]);
    let ana = Human {
        name: "ana".into(),
        roles: vec![Role::Approver],
    };
    let ok = approve(&req, &ana, chrono::Duration::minutes(5), chrono::Utc::now()).unwrap();
    reg.call("postgres.explain_analyze", args, Some(&ok)).await
}

/// The monitoring role (`url`) is `oncall` (pg_monitor, pg_read_all_data); the action role
/// (`action_url`) is the superuser, which EXPLAIN ANALYZE must never use.
fn explain_registry(pg: &Pg, statement_timeout_ms: u64) -> Registry {
    registry_for(PgSettings {
        url: pg.url("oncall", "app"),
        action_url: pg.url("postgres", "app"),
        statement_timeout_ms,
        ..Default::default()
    })
}

/// A table, a user-defined volatile function that inserts, and every statement of the
/// monitoring role written to the server log.
fn explain_fixture(pg: &Pg) {
    pg.sql(
        "app",
        "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL); \
         INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 100) g; \
         CREATE TABLE audit_t (n int); \
         CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO audit_t VALUES (1) RETURNING 1'; \
         CREATE SEQUENCE order_ids",
    );
    pg.sql("postgres", "ALTER ROLE oncall SET log_statement = 'all'");
}

/// What the monitoring role sent, from the server log.
fn monitoring_log(pg: &Pg) -> String {
    pg.sql(
        "postgres",
        "SELECT pg_read_file(current_setting('data_directory') || '/../log')",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_refuses_writes_locks_and_volatile_functions_before_sending_them() {
    if skip() {
        return;
    }
    let pg = Pg::start(50);
    explain_fixture(&pg);
    let victim = pg.connect("app", "app", "victim-app").await;
    let victim_pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let reg = explain_registry(&pg, 5000);
    let hostile: Vec<(String, &str)> = vec![
        (
            "UPDATE orders SET status = 'probe-1'".into(),
            "writes (UPDATE)",
        ),
        (
            "WITH gone AS (DELETE FROM orders WHERE id < 50 RETURNING *) SELECT count(*) FROM gone"
                .into(),
            "writes (a data-modifying WITH or subquery: DELETE)",
        ),
        (
            "INSERT INTO orders VALUES (1000, 'probe-2')".into(),
            "writes (INSERT)",
        ),
        ("DELETE FROM orders".into(), "writes (DELETE)"),
        ("TRUNCATE orders".into(), "writes (TRUNCATE)"),
        ("DROP TABLE orders".into(), "writes (DROP TABLE)"),
        (
            "SELECT * INTO orders_copy FROM orders".into(),
            "SELECT ... INTO",
        ),
        (
            "SELECT * FROM orders WHERE id = 1 FOR UPDATE".into(),
            "locks rows",
        ),
        (
            format!("SELECT pg_terminate_backend({victim_pid})"),
            "calls pg_terminate_backend()",
        ),
        (
            format!("SELECT pg_catalog.pg_cancel_backend({victim_pid})"),
            "calls pg_catalog.pg_cancel_backend()",
        ),
        ("SELECT pg_reload_conf()".into(), "calls pg_reload_conf()"),
        ("SELECT nextval('order_ids')".into(), "calls nextval()"),
        (
            "SELECT id FROM orders WHERE id = bump()".into(),
            "calls public.bump(), which PostgreSQL marks volatile",
        ),
        (
            "SELECT * FROM orders, LATERAL (SELECT bump()) b".into(),
            "calls public.bump()",
        ),
        (
            "SELECT 1; UPDATE orders SET status = 'probe-3'".into(),
            "holds 2 statements",
        ),
        ("SET statement_timeout = 0".into(), "writes (SET)"),
        ("LOCK TABLE orders".into(), "writes (LOCK)"),
        ("GRANT ALL ON orders TO oncall".into(), "writes (GRANT)"),
    ];
    for (sql, why) in &hostile {
        let e = analyze(&reg, sql).await.expect_err("refused").to_string();
        assert!(
            e.contains(why) && e.contains("nothing was sent to the database"),
            "{sql}: {e}"
        );
    }
    // The same refusal when the request is filed: it never becomes a request.
    let desk = oncall::desk::Desk::new(
        Arc::new(oncall::policy::audit::AuditLog::in_memory()),
        chrono::Duration::minutes(15),
    );
    let e = desk
        .request(
            &reg,
            "inc-1",
            "postgres.explain_analyze",
            json!({"sql": "UPDATE orders SET status = 'probe-4'"}),
            "agent",
            oncall::policy::rules::Actor::Agent,
            &[],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("writes (UPDATE)"), "{e}");
    assert!(desk.entries().is_empty());
    // Nothing changed, the victim session lives, and no statement reached the server.
    assert_eq!(
        pg.sql(
            "app",
            "SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'new') FROM orders"
        ),
        "100 100"
    );
    assert_eq!(pg.sql("app", "SELECT count(*) FROM audit_t"), "0");
    assert_eq!(
        pg.sql(
            "app",
            "SELECT count(*) FROM pg_class WHERE relname = 'orders_copy'"
        ),
        "0"
    );
    assert_eq!(pg.sql("app", "SELECT last_value FROM order_ids"), "1");
    assert_eq!(
        pg.sql(
            "app",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {victim_pid}")
        ),
        "1",
        "the victim session survived"
    );
    let log = monitoring_log(&pg);
    assert!(
        !log.contains("EXPLAIN (ANALYZE") && !log.contains("probe-"),
        "a refused statement reached the server:\n{log}"
    );
    eprintln!(
        "explain_analyze: {} hostile statements, 0 sent",
        hostile.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_runs_reads_as_the_monitoring_role_read_only_and_within_the_timeout() {
    if skip() {
        return;
    }
    let pg = Pg::start(50);
    explain_fixture(&pg);
    let reg = explain_registry(&pg, 1500);
    // A plain read with now() (stable) and random() (volatile, allowed) runs and is analyzed.
    let v = analyze(
        &reg,
        "SELECT id, now() FROM orders WHERE status = 'new' AND random() < 2",
    )
    .await
    .expect("a read runs");
    let a: PgAnswer<Value> = serde_json::from_value(v).unwrap();
    let plan = a.data.unwrap_or_else(|| panic!("a plan: {:?}", a.problem));
    assert_eq!(plan["analyzed"], true, "{plan}");
    assert_eq!(plan["tables"], json!(["orders"]));
    assert_eq!(plan["costly_nodes"][0]["node"], "Seq Scan", "{plan}");
    assert_eq!(plan["costly_nodes"][0]["actual_rows"], 100.0, "{plan}");
    // Inside, the session is the monitoring role in a read-only transaction: the filter holds,
    // so the Result node returned its one row (with the action role it would return none).
    let v = analyze(
        &reg,
        "SELECT 1 WHERE current_user = 'oncall' AND current_setting('transaction_read_only') = 'on'",
    )
    .await
    .unwrap();
    let a: PgAnswer<Value> = serde_json::from_value(v).unwrap();
    let plan = a.data.unwrap_or_else(|| panic!("a plan: {:?}", a.problem));
    assert_eq!(plan["costly_nodes"][0]["node"], "Result", "{plan}");
    assert_eq!(
        plan["costly_nodes"][0]["actual_rows"], 1.0,
        "ran as oncall, read-only: {plan}"
    );
    // A slow read is stopped by statement_timeout; while it runs, pg_stat_activity shows who.
    let reg = Arc::new(reg);
    let r2 = reg.clone();
    let t0 = std::time::Instant::now();
    let slow = tokio::spawn(async move { analyze(&r2, "SELECT pg_sleep(30)").await });
    let mut user = String::new();
    while user.is_empty() && t0.elapsed() < Duration::from_millis(1400) {
        user = pg.sql(
            "app",
            "SELECT coalesce(string_agg(usename::text, ','), '') FROM pg_stat_activity WHERE query LIKE '%EXPLAIN (ANALYZE%pg_sleep%' AND pid <> pg_backend_pid()",
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(user, "oncall", "the statement runs as the monitoring role");
    let v = slow
        .await
        .unwrap()
        .expect("a timeout is evidence, not an error");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "stopped at the timeout"
    );
    let (kind, msg) = problem(&v);
    assert_eq!(kind, ProblemKind::Timeout, "{msg}");
    assert!(
        msg.contains(
            "EXPLAIN ANALYZE was stopped by statement_timeout after 1500 ms and rolled back"
        ),
        "{msg}"
    );
    assert!(monitoring_log(&pg).contains("BEGIN READ ONLY"));
}

/// A database that accepts TCP but never answers (a hung server): parallel tools all give up at
/// the connect timeout, together, and the next call fails at once from the remembered failure
/// instead of waiting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_fails_parallel_tools_together_and_then_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = vec![];
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let reg = Arc::new(registry_for(PgSettings {
        url: format!("postgres://oncall:x@127.0.0.1:{port}/app"),
        connect_timeout_s: 1,
        ..Default::default()
    }));
    let t0 = std::time::Instant::now();
    let calls: Vec<_> = [
        "postgres.activity",
        "postgres.connections",
        "postgres.blocking",
        "postgres.activity",
        "postgres.connections",
        "postgres.blocking",
    ]
    .into_iter()
    .map(|tool| {
        let reg = reg.clone();
        tokio::spawn(async move { reg.call(tool, json!({}), None).await })
    })
    .collect();
    for c in calls {
        let (kind, msg) = problem(&c.await.unwrap().unwrap());
        assert_eq!(kind, ProblemKind::Unreachable, "{msg}");
    }
    let together = t0.elapsed();
    assert!(
        together < Duration::from_millis(3500),
        "six parallel tools gave up together, not one after another: {together:?}"
    );
    let t1 = std::time::Instant::now();
    let (kind, msg) = problem(
        &reg.call("postgres.activity", json!({}), None)
            .await
            .unwrap(),
    );
    assert_eq!(kind, ProblemKind::Unreachable, "{msg}");
    assert!(
        t1.elapsed() < Duration::from_millis(500),
        "the remembered failure answers at once: {:?}",
        t1.elapsed()
    );
    eprintln!(
        "hung database: 6 parallel tools in {together:?}, the next in {:?}",
        t1.elapsed()
    );
    held.abort();
}
