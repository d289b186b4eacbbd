//! TLS to PostgreSQL like production: a throwaway PostgreSQL 15 cluster with `ssl = on` and a
//! certificate made in the test (a CA and a server certificate for `localhost`), reached by the
//! collectors and by `oncall serve`'s incident store with libpq's sslmode meanings. Each mode
//! that must connect does, over an encrypted session (pg_stat_ssl says so), and each that must
//! fail does, with words that say why.

mod common;

use common::pg::{PASSWORD, Pg, TestCa};
use common::serve::{Serve, sample};
use oncall::collectors::postgres::{PgAnswer, ProblemKind};
use oncall::config::{Config, PgSettings, SslMode};
use oncall::registry::Registry;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Skips (with a message) where PostgreSQL 15 is not installed; in CI its absence fails.
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

/// The `oncall` role's URL on the `app` database at `host`. The cluster listens on 127.0.0.1
/// only: `hostaddr` pins where `localhost` connects (libpq's meaning: TLS still checks `host`).
fn url(pg: &Pg, host: &str) -> String {
    format!(
        "postgres://oncall:{PASSWORD}@{host}:{}/app?hostaddr=127.0.0.1",
        pg.port
    )
}

fn registry(url: String, mode: Option<SslMode>, root: Option<&Path>) -> Registry {
    let mut c = Config::default();
    c.postgres.insert(
        "app".into(),
        PgSettings {
            url,
            sslmode: mode,
            sslrootcert: root.map(Path::to_path_buf),
            connect_timeout_s: 3,
            ..Default::default()
        },
    );
    oncall::app::builtin_registry(Arc::new(c))
}

/// What postgres.connections answers.
async fn connections(reg: &Registry) -> PgAnswer<Value> {
    let v = reg
        .call("postgres.connections", json!({}), None)
        .await
        .expect("the tool answers");
    serde_json::from_value(v).expect("a PgAnswer")
}

async fn answers(url: String, mode: Option<SslMode>, root: Option<&Path>) -> Registry {
    let reg = registry(url.clone(), mode, root);
    let a = connections(&reg).await;
    assert!(
        a.data.is_some(),
        "{url} with sslmode {mode:?}: {:?}",
        a.problem
    );
    reg
}

async fn fails(url: String, mode: Option<SslMode>, root: Option<&Path>) -> String {
    let a = connections(&registry(url.clone(), mode, root)).await;
    let p = a
        .problem
        .unwrap_or_else(|| panic!("{url} with sslmode {mode:?} must fail"));
    assert_eq!(p.kind, ProblemKind::Tls, "{p:?}");
    assert!(!a.reachable);
    eprintln!("sslmode {mode:?}: {} | {}", p.message, p.hint);
    format!("{} | {}", p.message, p.hint)
}

/// How many sessions of application `oncall` are on `db`, and whether all are encrypted, as
/// the server sees them (`0 none` when there are none).
fn oncall_sessions_ssl(pg: &Pg, db: &str) -> String {
    pg.sql(
        "postgres",
        &format!(
            "SELECT count(*) || ' ' || coalesce(bool_and(s.ssl)::text, 'none') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'oncall' AND a.datname = '{db}'"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_follow_libpqs_sslmodes_and_say_why_a_session_fails() {
    if skip() {
        return;
    }
    let ca = TestCa::new(&["localhost"]);
    let pg = Pg::start_tls(&ca, false);
    let root = pg.write_file("ca.pem", &ca.ca_pem);
    let stranger = TestCa::new(&["localhost"]);
    let wrong_root = pg.write_file("other-ca.pem", &stranger.ca_pem);

    // verify-full to the name the certificate holds: the tools answer, over TLS.
    let reg = answers(
        url(&pg, "localhost"),
        Some(SslMode::VerifyFull),
        Some(&root),
    )
    .await;
    assert_eq!(
        oncall_sessions_ssl(&pg, "app"),
        "1 true",
        "one pooled session, encrypted"
    );
    // A pooled session that dies (terminated here) is replaced, not handed out.
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'oncall'",
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let a = connections(&reg).await;
    assert!(a.data.is_some(), "a new session: {:?}", a.problem);
    assert_eq!(oncall_sessions_ssl(&pg, "app"), "1 true");
    drop(reg);
    // The same from the URL alone, as libpq users write it.
    let in_url = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        url(&pg, "localhost"),
        root.display()
    );
    let reg = answers(in_url, None, None).await;
    drop(reg);
    // From inside the session: pg_stat_ssl for this very backend.
    let target = oncall::pg::Target {
        what: "test",
        url: &url(&pg, "localhost"),
        password_env: "",
        sslmode: Some(SslMode::VerifyFull),
        sslrootcert: Some(root.clone()),
        application_name: "tls-probe",
        connect_timeout: std::time::Duration::from_secs(3),
        settings: vec![],
    }
    .prepare()
    .expect("prepare");
    let client = target.connect().await.expect("connect over verify-full");
    // The query docs/postgres.md gives for it.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/postgres.md"))
        .expect("docs/postgres.md");
    let query = "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid();";
    assert!(docs.contains(query));
    let row = client
        .query_one(query.trim_end_matches(';'), &[])
        .await
        .expect("pg_stat_ssl");
    assert!(row.get::<_, bool>(0), "the session is encrypted");
    eprintln!("verify-full session: {}", row.get::<_, String>(1));
    drop(client);

    // verify-full to 127.0.0.1 when the certificate names only localhost.
    let msg = fails(
        url(&pg, "127.0.0.1"),
        Some(SslMode::VerifyFull),
        Some(&root),
    )
    .await;
    assert!(
        msg.contains("does not match the host name 127.0.0.1 (it names localhost)"),
        "{msg}"
    );
    // verify-ca checks the chain only: the wrong name passes.
    drop(answers(url(&pg, "127.0.0.1"), Some(SslMode::VerifyCa), Some(&root)).await);
    // require: TLS without a CA.
    drop(answers(url(&pg, "127.0.0.1"), Some(SslMode::Require), None).await);
    // A CA that did not sign the server's certificate.
    let msg = fails(
        url(&pg, "localhost"),
        Some(SslMode::VerifyFull),
        Some(&wrong_root),
    )
    .await;
    assert!(
        msg.contains("not signed by the CA") && msg.contains(&wrong_root.display().to_string()),
        "{msg}"
    );
    let msg = fails(
        url(&pg, "127.0.0.1"),
        Some(SslMode::VerifyCa),
        Some(&wrong_root),
    )
    .await;
    assert!(msg.contains("not signed by the CA"), "{msg}");
    // require with a root certificate checks the chain, as libpq does.
    let msg = fails(
        url(&pg, "127.0.0.1"),
        Some(SslMode::Require),
        Some(&wrong_root),
    )
    .await;
    assert!(msg.contains("not signed by the CA"), "{msg}");
    // A CA file that is not there is named.
    let missing = PathBuf::from("/nonexistent/oncall-ca.pem");
    let msg = fails(
        url(&pg, "localhost"),
        Some(SslMode::VerifyFull),
        Some(&missing),
    )
    .await;
    assert!(msg.contains("/nonexistent/oncall-ca.pem"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sessions_fail_clearly_where_tls_is_required_and_vice_versa() {
    if skip() {
        return;
    }
    // pg_hba.conf: TCP only over TLS (hostssl).
    let ca = TestCa::new(&["localhost", "127.0.0.1"]);
    let pg = Pg::start_tls(&ca, true);
    let msg = fails(url(&pg, "127.0.0.1"), Some(SslMode::Disable), None).await;
    assert!(
        msg.contains("only over TLS") && msg.contains("sslmode is disable"),
        "{msg}"
    );
    drop(answers(url(&pg, "127.0.0.1"), Some(SslMode::Require), None).await);
    drop(answers(url(&pg, "127.0.0.1"), None, None).await);
    drop(pg);
    // A server without TLS: require says so; prefer falls back to plain.
    let plain = Pg::start(50);
    let msg = fails(url(&plain, "127.0.0.1"), Some(SslMode::Require), None).await;
    assert!(msg.contains("does not offer TLS"), "{msg}");
    let reg = answers(url(&plain, "127.0.0.1"), Some(SslMode::Prefer), None).await;
    assert_eq!(oncall_sessions_ssl(&plain, "app"), "1 false");
    drop(reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_store_and_reads_databases_over_verified_tls() {
    if skip() {
        return;
    }
    let ca = TestCa::new(&["localhost"]);
    let pg = Pg::start_tls(&ca, true);
    let root = pg.write_file("ca.pem", &ca.ca_pem);
    pg.sql("postgres", "CREATE DATABASE incidents OWNER app");
    let data = tempfile::tempdir().expect("tempdir");
    let store_url = |host: &str| {
        format!(
            "postgres://app:{PASSWORD}@{host}:{}/incidents?hostaddr=127.0.0.1",
            pg.port
        )
    };
    let env = |host: &str| {
        vec![
            ("ONCALL_SERVER__DATABASE_URL", store_url(host)),
            ("ONCALL_SERVER__DATABASE_SSLMODE", "verify-full".to_string()),
            (
                "ONCALL_SERVER__DATABASE_SSLROOTCERT",
                root.display().to_string(),
            ),
            ("ONCALL_POSTGRES__APP__URL", url(&pg, "localhost")),
            ("ONCALL_POSTGRES__APP__SSLMODE", "verify-full".to_string()),
            (
                "ONCALL_POSTGRES__APP__SSLROOTCERT",
                root.display().to_string(),
            ),
            ("ONCALL_POSTGRES__APP__WINDOW_MS", "200".to_string()),
            ("ONCALL_HOST__WINDOW_MS", "200".to_string()),
        ]
    };
    let srv = Serve::start(data.path(), &env("localhost"))
        .await
        .expect("oncall serve starts with its store over verify-full");
    let (s, body) = srv.get("/readyz").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = 'incidents'"
        ),
        "t",
        "every store session is encrypted"
    );
    // A triage runs the database tools; /metrics shows both pools.
    let (s, body) = srv
        .post("/api/v1/triage", json!({"report": "checkout is slow"}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("postgres.connections"), "{body}");
    let (s, metrics) = srv.get("/metrics").await;
    assert_eq!(s, 200);
    for series in [
        "oncall_pg_pool_max{pool=\"store\"}",
        "oncall_pg_pool_max{pool=\"app\"}",
        "oncall_pg_pool_waiting{pool=\"app\"}",
    ] {
        assert!(
            sample(&metrics, series).is_some(),
            "{series} in:\n{metrics}"
        );
    }
    let held = |pool: &str| {
        ["idle", "in_use"]
            .iter()
            .filter_map(|st| {
                sample(
                    &metrics,
                    &format!("oncall_pg_pool_connections{{pool=\"{pool}\",state=\"{st}\"}}"),
                )
            })
            .sum::<f64>()
    };
    assert!(held("store") >= 1.0, "{metrics}");
    assert!(held("app") >= 1.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "oncall_pg_pool_max{pool=\"app\"}"),
        Some(4.0)
    );
    assert_eq!(
        sample(&metrics, "oncall_pg_pool_max{pool=\"store\"}"),
        Some(8.0)
    );
    assert!(
        oncall_sessions_ssl(&pg, "app").ends_with(" true"),
        "the tools' sessions are encrypted"
    );
    // The store's sessions die (terminated here): the pool replaces them.
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'incidents'",
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (s, body) = srv.get("/api/v1/incidents").await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = srv.get("/readyz").await;
    assert_eq!(s, 200, "{body}");
    drop(srv);

    // The store at a name its certificate does not hold: a startup error that says so.
    let data = tempfile::tempdir().expect("tempdir");
    let err = match Serve::start(data.path(), &env("127.0.0.1")).await {
        Ok(_) => panic!("serve must refuse a store whose certificate names another host"),
        Err(e) => e,
    };
    assert!(
        err.contains("does not match the host name 127.0.0.1 (it names localhost)"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "no password in the error: {err}");
}
