//! One replica against three, both over one real PostgreSQL 15 (a throwaway cluster, as the
//! tests start it): API reads and Slack acknowledgements through the shared store, the clients
//! spread round-robin over the replicas as a load balancer would.
//!
//! Run: `cargo bench --bench replicas`. Prints one table. Client, replicas and PostgreSQL share
//! this machine's cores, so three replicas on one small machine measure the cost of sharing
//! (heartbeats, the store round trips of Slack's replay check), not a gain.

#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-operator-token";
const SECRET: &str = "bench-signing-secret";

/// Whether this runs as root (`pg.rs` runs PostgreSQL's tools as `postgres` then).
fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(url: &str, name: &str, dir: &std::path::Path) -> Replica {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_oncall"))
        .arg("serve")
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_TOKEN", TOKEN)
        .env("BENCH_SLACK_SIGNING_SECRET", SECRET)
        .env(
            "ONCALL_SLACK__SIGNING_SECRET_ENV",
            "BENCH_SLACK_SIGNING_SECRET",
        )
        .env("ONCALL_SERVER__DATABASE_URL", url)
        .env("ONCALL_SERVER__REPLICA", name)
        .env("ONCALL_SERVER__DATA_DIR", dir.join(name))
        .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ONCALL_SERVER__REQUESTS_PER_S", "1000000")
        .env("ONCALL_SERVER__MAX_INVESTIGATIONS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("oncall serve");
    let r = Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("{}/healthz", r.base)).await.is_ok() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica {name} did not start");
}

#[path = "common/load.rs"]
mod load;
use load::{Outcome, free_port, run};

fn usage_command(i: u64) -> String {
    serde_urlencoded::to_string([
        ("team_id", "T1"),
        ("channel_id", "C1"),
        ("user_id", "UBENCH"),
        ("user_name", "bench"),
        ("command", "/oncall"),
        ("text", ""),
        ("response_url", "https://hooks.invalid/x"),
        ("trigger_id", &i.to_string()),
    ])
    .expect("form")
}

/// An Events API callback oncall acknowledges and ignores (a reaction): verified, its signature
/// remembered in the store, answered 200.
fn ignored_event(i: u64) -> String {
    json!({"type": "event_callback", "event_id": format!("EvBench{i}"), "team_id": "T1",
           "event": {"type": "reaction_added", "user": "UBENCH"}})
    .to_string()
}

fn row(name: &str, n: usize, o: &Outcome) {
    println!(
        "| {name:<36} | {n:>8} | {:>6} | {:>8.0} | {:>7.2} | {:>7.2} | {}",
        o.latencies.len(),
        o.rps(),
        o.pct(0.50),
        o.pct(0.99),
        o.codes(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !pg::Pg::available() {
        println!("PostgreSQL 15 is not installed: nothing measured");
        return;
    }
    let pg = pg::Pg::start(200);
    println!(
        "\noncall serve replicas over one PostgreSQL 15 (loopback, release build, 32 concurrent clients round-robin over the replicas; client, replicas and PostgreSQL share the machine)\n"
    );
    println!(
        "| {:<36} | {:>8} | {:>6} | {:>8} | {:>7} | {:>7} | statuses",
        "endpoint", "replicas", "reqs", "req/s", "p50 ms", "p99 ms"
    );
    println!(
        "|{:-<38}|{:-<10}|{:-<8}|{:-<10}|{:-<9}|{:-<9}|---------",
        "", "", "", "", "", ""
    );
    let cap = Duration::from_secs(15);
    for n in [1usize, 3] {
        let db = format!("bench{n}");
        pg.sql("postgres", &format!("CREATE DATABASE {db} OWNER app"));
        let url = pg.url("app", &db);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut replicas = vec![];
        for i in 0..n {
            replicas.push(start(&url, &format!("b{i}"), dir.path()).await);
        }
        let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.base.clone()).collect());
        let opened: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/incidents", bases[0]))
            .bearer_auth(TOKEN)
            .json(&json!({"report": "users see slow pages"}))
            .send()
            .await
            .expect("open")
            .json()
            .await
            .expect("json");
        let id = opened["id"].as_str().expect("id").to_string();
        tokio::time::sleep(Duration::from_secs(4)).await;
        for (name, path) in [
            ("GET /api/v1/incidents", "/api/v1/incidents".to_string()),
            (
                "GET /api/v1/incidents/{id}",
                format!("/api/v1/incidents/{id}"),
            ),
            ("GET /api/v1/approvals", "/api/v1/approvals".to_string()),
        ] {
            let b = bases.clone();
            let o = run(
                4000,
                32,
                cap,
                Arc::new(move |c, i| {
                    c.get(format!("{}{path}", b[i as usize % b.len()]))
                        .bearer_auth(TOKEN)
                }),
            )
            .await;
            row(name, n, &o);
        }
        let b = bases.clone();
        let o = run(
            3000,
            32,
            cap,
            Arc::new(move |c, i| {
                let url = format!("{}/slack/commands", b[i as usize % b.len()]);
                load::signed(
                    c,
                    SECRET,
                    &url,
                    "application/x-www-form-urlencoded",
                    usage_command(i),
                )
            }),
        )
        .await;
        row("Slack ack: /slack/commands (usage)", n, &o);
        let b = bases.clone();
        let o = run(
            3000,
            32,
            cap,
            Arc::new(move |c, i| {
                let url = format!("{}/slack/events", b[i as usize % b.len()]);
                load::signed(c, SECRET, &url, "application/json", ignored_event(i))
            }),
        )
        .await;
        row("Slack ack: /slack/events", n, &o);
        drop(replicas);
    }
}
