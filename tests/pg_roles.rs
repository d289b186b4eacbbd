//! Least-privilege roles: docs/postgres-roles.sql, run with psql against a throwaway PostgreSQL
//! 15 cluster exactly as docs/postgres.md says, gives each job its role and no more: the
//! collectors work as `oncall`, which can neither signal nor write; the actions work as
//! `oncall_actions`, which can signal but not read; `oncall serve` keeps its store as
//! `oncall_store`, which owns its tables and cannot read the application's. The README and the
//! docs point at the file instead of copying it, so they cannot drift from it.

mod common;

use common::pg::Pg;
use common::serve::{Serve, sample};
use oncall::collectors::postgres::PgAnswer;
use oncall::config::{Config, PgSettings};
use oncall::policy::{ActionRequest, Human, Role, approve};
use oncall::registry::Registry;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MONITOR_PW: &str = "monitor-pw-1";
const ACTIONS_PW: &str = "actions-pw-2";
const STORE_PW: &str = "store-pw-3";

fn skip() -> bool {
    if Pg::available() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "PostgreSQL 15 is missing at /usr/lib/postgresql/15/bin: run scripts/setup-test-deps.sh"
    );
    eprintln!("SKIPPED: PostgreSQL 15 is not installed at /usr/lib/postgresql/15/bin");
    true
}

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs the psql command of docs/postgres.md (the block marked `postgres-roles-psql`) as
/// written, in the repository, with the password variables it reads set. The test cluster
/// already has an `oncall` role (tests/common/pg.rs): it goes first, as on a fresh cluster.
fn run_roles_sql(pg: &Pg) {
    pg.sql("postgres", "DROP ROLE oncall");
    let docs = repo("docs/postgres.md");
    let marker = format!("<!-- test: {} -->\n```sh\n", "postgres-roles-psql");
    let block = docs
        .split(marker.as_str())
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/postgres.md: the block marked postgres-roles-psql");
    let (ok, out) = pg.shell(
        block.trim(),
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &[
            ("ONCALL_PG_PASSWORD", MONITOR_PW),
            ("ONCALL_PG_ACTIONS_PASSWORD", ACTIONS_PW),
            ("ONCALL_STORE_PASSWORD", STORE_PW),
        ],
    );
    assert!(ok, "the documented psql command failed:\n{block}\n{out}");
}

fn url(pg: &Pg, user: &str, pw: &str, db: &str) -> String {
    format!("postgres://{user}:{pw}@127.0.0.1:{}/{db}", pg.port)
}

async fn session(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    c
}

/// The SQLSTATE of a statement that must fail.
async fn refused(c: &tokio_postgres::Client, sql: &str) -> String {
    let e = c
        .batch_execute(sql)
        .await
        .expect_err(&format!("must be refused: {sql}"));
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    format!("{} {}", db.code().code(), db.message())
}

async fn pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

async fn approved(reg: &Registry, tool: &str, args: Value) -> Value {
    let req = ActionRequest::new(tool, args.clone(), "agent", &[]);
    let ana = Human {
        name: "ana".into(),
        roles: vec![Role::Approver],
    };
    let ok =
        approve(&req, &ana, chrono::Duration::minutes(5), chrono::Utc::now()).expect("approve");
    reg.call(tool, args, Some(&ok))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_its_job_and_nothing_else() {
    if skip() {
        return;
    }
    let pg = Pg::start(50);
    run_roles_sql(&pg);
    pg.sql(
        "app",
        "CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders VALUES (1, 10); \
         GRANT ALL ON orders TO app",
    );

    // The collectors, as oncall.
    let mut c = Config::default();
    c.postgres.insert(
        "app".into(),
        PgSettings {
            url: url(&pg, "oncall", MONITOR_PW, "app"),
            action_url: url(&pg, "oncall_actions", ACTIONS_PW, "app"),
            window_ms: 200,
            ..Default::default()
        },
    );
    let reg = oncall::app::builtin_registry(Arc::new(c));
    for tool in [
        "postgres.connections",
        "postgres.activity",
        "postgres.blocking",
        "postgres.top_queries",
    ] {
        let v = reg.call(tool, json!({}), None).await.expect(tool);
        let a: PgAnswer<Value> = serde_json::from_value(v).expect("answer");
        assert!(a.data.is_some(), "{tool} as oncall: {:?}", a.problem);
    }
    // pg_monitor shows other roles' query text.
    let app = session(&url(&pg, "app", common::pg::PASSWORD, "app")).await;
    let app_pid = pid(&app).await;
    let v = reg
        .call("postgres.activity", json!({}), None)
        .await
        .expect("activity");
    assert!(
        v.to_string().contains("\"app\""),
        "sees the app's sessions: {v}"
    );

    // The monitoring role can neither signal nor write nor read the tables.
    let monitor = session(&url(&pg, "oncall", MONITOR_PW, "app")).await;
    let e = refused(&monitor, &format!("SELECT pg_terminate_backend({app_pid})")).await;
    assert!(e.starts_with("42501"), "{e}");
    let e = refused(&monitor, &format!("SELECT pg_cancel_backend({app_pid})")).await;
    assert!(e.starts_with("42501"), "{e}");
    let e = refused(&monitor, "INSERT INTO orders VALUES (2, 20)").await;
    assert!(e.starts_with("42501"), "{e}");
    let e = refused(&monitor, "CREATE TABLE monitor_was_here (x int)").await;
    assert!(e.starts_with("42501"), "{e}");
    let e = refused(&monitor, "SELECT * FROM orders").await;
    assert!(e.starts_with("42501"), "{e}");

    // The action role: cancel and terminate a non-superuser session, read nothing.
    let actions = session(&url(&pg, "oncall_actions", ACTIONS_PW, "app")).await;
    let e = refused(&actions, "SELECT * FROM orders").await;
    assert!(e.starts_with("42501"), "{e}");
    let sleeper = tokio::spawn(async move { app.batch_execute("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = approved(
        &reg,
        "postgres.cancel_backend",
        json!({"database": "app", "pid": app_pid}),
    )
    .await;
    assert_eq!(out["signalled"], true, "{out}");
    let e = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("cancelled in time")
        .expect("join")
        .expect_err("the query was cancelled");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("57014"),
        "query_canceled: {e:?}"
    );
    let idle = session(&url(&pg, "app", common::pg::PASSWORD, "app")).await;
    let idle_pid = pid(&idle).await;
    let out = approved(
        &reg,
        "postgres.terminate_backend",
        json!({"database": "app", "pid": idle_pid}),
    )
    .await;
    assert_eq!(out["signalled"], true, "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pg.sql(
            "app",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {idle_pid}")
        ),
        "0",
        "terminated"
    );
    assert!(idle.is_closed() || idle.simple_query("SELECT 1").await.is_err());
    // Superuser sessions are out of its reach.
    let su = session(&url(&pg, "postgres", common::pg::PASSWORD, "app")).await;
    let su_pid = pid(&su).await;
    let e = refused(&actions, &format!("SELECT pg_terminate_backend({su_pid})")).await;
    assert!(e.starts_with("42501"), "{e}");
    drop(reg);

    // The store, as oncall_store, under `oncall serve`: migrations make its tables.
    let data = tempfile::tempdir().expect("tempdir");
    // The password comes from the variable docs/postgres.md names, not from the URL.
    let srv = Serve::start(
        data.path(),
        &[
            (
                "ONCALL_SERVER__DATABASE_URL",
                format!("postgres://oncall_store@127.0.0.1:{}/oncall", pg.port),
            ),
            (
                "ONCALL_SERVER__DATABASE_PASSWORD_ENV",
                "ONCALL_STORE_PASSWORD".to_string(),
            ),
            ("ONCALL_STORE_PASSWORD", STORE_PW.to_string()),
        ],
    )
    .await
    .expect("oncall serve with the store role");
    let (s, body) = srv.get("/readyz").await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = srv.get("/api/v1/incidents").await;
    assert_eq!(s, 200, "{body}");
    let (s, metrics) = srv.get("/metrics").await;
    assert_eq!(s, 200);
    assert!(
        sample(
            &metrics,
            "oncall_pg_pool_connections{pool=\"store\",state=\"idle\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        pg.sql(
            "oncall",
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "oncall_store",
        "the store role owns oncall's tables"
    );
    assert!(
        pg.sql(
            "oncall",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'incidents'"
        ) == "1"
    );
    drop(srv);
    let store = session(&url(&pg, "oncall_store", STORE_PW, "app")).await;
    let e = refused(&store, "SELECT * FROM orders").await;
    assert!(e.starts_with("42501"), "{e}");
    // Nobody else may connect to the store's database.
    let e = tokio_postgres::connect(
        &url(&pg, "oncall", MONITOR_PW, "oncall"),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("the monitor role cannot connect to the store's database");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42501"),
        "permission denied: {e:?}"
    );
}

/// The README and docs/postgres.md point at docs/postgres-roles.sql rather than copy it, and
/// every ```toml block of docs/postgres.md loads as an oncall config.
#[test]
fn the_docs_point_at_the_roles_file_and_their_configs_load() {
    let readme = repo("README.md");
    let docs = repo("docs/postgres.md");
    let sql = repo("docs/postgres-roles.sql");
    assert!(readme.contains("docs/postgres-roles.sql") && readme.contains("docs/postgres.md"));
    assert!(
        !readme.contains("CREATE ROLE"),
        "the README must point at docs/postgres-roles.sql, not copy its SQL"
    );
    assert!(
        !docs.contains("CREATE ROLE"),
        "docs/postgres.md must point at docs/postgres-roles.sql, not copy its SQL"
    );
    for role in ["oncall", "oncall_actions", "oncall_store"] {
        assert!(sql.contains(&format!("CREATE ROLE {role}")), "{role}");
        assert!(docs.contains(role), "docs/postgres.md names {role}");
    }
    let mut blocks = 0;
    for block in docs.split("```toml\n").skip(1) {
        let toml = block.split("```").next().unwrap_or_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("oncall.toml");
        std::fs::write(&file, toml).expect("write");
        let c = Config::load_from(
            Some(&file),
            figment::providers::Env::prefixed("ONCALL_TEST_NONE_"),
        )
        .unwrap_or_else(|e| panic!("docs/postgres.md block does not load: {e}\n{toml}"));
        blocks += 1;
        drop(c);
    }
    assert!(blocks >= 2, "docs/postgres.md has its config examples");
    // The PostgreSQL example of docs/investigations.md loads too.
    let investigations = repo("docs/investigations.md");
    let pg_block = investigations
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("[postgres.app]"))
        .expect("the [postgres.app] example of docs/investigations.md");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("oncall.toml");
    std::fs::write(&file, pg_block).expect("write");
    Config::load_from(
        Some(&file),
        figment::providers::Env::prefixed("ONCALL_TEST_NONE_"),
    )
    .unwrap_or_else(|e| {
        panic!("the [postgres.app] block of docs/investigations.md does not load: {e}")
    });
    // The psql command in the docs names the variables the file uses.
    for var in ["monitor_password", "actions_password", "store_password"] {
        assert!(sql.contains(&format!(":'{var}'")), "{var}");
        assert!(
            docs.contains(&format!("-v {var}=")),
            "docs/postgres.md passes {var}"
        );
    }
}
