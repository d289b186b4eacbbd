//! Load test of `oncall serve` over loopback, bounded in requests and time.
//!
//! Starts the release binary as its own process (so its memory is its own), then measures:
//! requests/s and latency percentiles of the non-LLM endpoints (MCP's included), Slack acknowledgements (signed
//! requests, usage answers and real `/oncall` commands that open incidents), the server's memory
//! with 500 event streams open, and how overload is answered (429/503, never a crash).
//!
//! Run: `cargo bench --bench server`. Prints one table.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-operator-token";
const SECRET: &str = "bench-signing-secret";

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(extra: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oncall"));
    cmd.arg("serve")
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_TOKEN", TOKEN)
        .env("BENCH_SLACK_SIGNING_SECRET", SECRET)
        .env(
            "ONCALL_SLACK__SIGNING_SECRET_ENV",
            "BENCH_SLACK_SIGNING_SECRET",
        )
        .env("ONCALL_SERVER__DATA_DIR", dir.path())
        .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let server = Server {
        child: cmd.spawn().expect("oncall serve"),
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not start");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[path = "common/load.rs"]
mod load;
use load::{Outcome, free_port, run};

fn form(c: &reqwest::Client, url: &str, body: String) -> reqwest::RequestBuilder {
    load::signed(c, SECRET, url, "application/x-www-form-urlencoded", body)
}

fn command(text: &str, i: u64) -> String {
    serde_urlencoded::to_string([
        ("team_id", "T1"),
        ("channel_id", "C1"),
        ("user_id", "UBENCH"),
        ("user_name", "bench"),
        ("command", "/oncall"),
        ("text", text),
        ("response_url", "https://hooks.invalid/x"),
        ("trigger_id", &i.to_string()),
    ])
    .expect("form")
}

fn row(name: &str, o: &Outcome) {
    println!(
        "| {name:<38} | {:>6} | {:>8.0} | {:>7.2} | {:>7.2} | {:>7.2} | {}",
        o.latencies.len(),
        o.rps(),
        o.pct(0.50),
        o.pct(0.99),
        o.pct(1.0),
        o.codes(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fast = [
        ("ONCALL_SERVER__REQUESTS_PER_S", "1000000"),
        ("ONCALL_SERVER__MAX_INVESTIGATIONS", "1"),
        // The 500 streams below are one caller's.
        ("ONCALL_SERVER__MAX_STREAMS_PER_USER", "1000"),
        ("ONCALL_SERVER__MAX_STREAMS", "1000"),
    ];
    let srv = start(&fast).await;
    let http = reqwest::Client::new();
    // One incident to read, investigated to the end.
    let opened: Value = http
        .post(format!("{}/api/v1/incidents", srv.base))
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
    let rss_idle = rss_kib(srv.child.id());

    println!(
        "\noncall serve under load (loopback, release build, 2 cores shared by client and server)\n"
    );
    println!(
        "| {:<38} | {:>6} | {:>8} | {:>7} | {:>7} | {:>7} | statuses",
        "endpoint (32 concurrent clients)", "reqs", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "|{:-<40}|{:-<8}|{:-<10}|{:-<9}|{:-<9}|{:-<9}|---------",
        "", "", "", "", "", ""
    );
    let cap = Duration::from_secs(20);
    for (name, path) in [
        ("GET /healthz", "/healthz".to_string()),
        ("GET /api/v1/me", "/api/v1/me".to_string()),
        ("GET /api/v1/incidents", "/api/v1/incidents".to_string()),
        (
            "GET /api/v1/incidents/{id}",
            format!("/api/v1/incidents/{id}"),
        ),
        ("GET /api/v1/approvals", "/api/v1/approvals".to_string()),
        ("GET /metrics", "/metrics".to_string()),
    ] {
        let url = format!("{}{path}", srv.base);
        let o = run(
            5000,
            32,
            cap,
            Arc::new(move |c, _| c.get(&url).bearer_auth(TOKEN)),
        )
        .await;
        row(name, &o);
    }
    // MCP over Streamable HTTP (stateless: each POST is one JSON-RPC call, answered as an event
    // stream).
    for (name, body) in [
        (
            "POST /mcp tools/list",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        ),
        (
            "POST /mcp tools/call get_board",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_board", "arguments": {"incident": id}}}),
        ),
    ] {
        let url = format!("{}/mcp", srv.base);
        let o = run(
            3000,
            32,
            cap,
            Arc::new(move |c, _| {
                c.post(&url)
                    .bearer_auth(TOKEN)
                    .header("accept", "application/json, text/event-stream")
                    .json(&body)
            }),
        )
        .await;
        row(name, &o);
    }
    let u = format!("{}/slack/commands", srv.base);
    let o = run(
        3000,
        32,
        cap,
        Arc::new(move |c, i| form(c, &u, command("", i))),
    )
    .await;
    row("POST /slack/commands (usage answer)", &o);
    // 500 event streams held open on one incident.
    let before = rss_kib(srv.child.id());
    let (_, last) = {
        let v: Value = http
            .get(format!("{}/api/v1/incidents/{id}", srv.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("incident")
            .json()
            .await
            .expect("json");
        ((), v["events"].as_array().map(|e| e.len()).unwrap_or(0))
    };
    let mut streams = vec![];
    let mut opened_ok = 0;
    for _ in 0..500 {
        let c = reqwest::Client::new();
        match c
            .get(format!(
                "{}/api/v1/incidents/{id}/events?after={last}",
                srv.base
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {
                opened_ok += 1;
                streams.push((c, r));
            }
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_streams = rss_kib(srv.child.id());
    // A new event reaches every stream.
    let t0 = Instant::now();
    http.post(format!("{}/api/v1/incidents/{id}/messages", srv.base))
        .bearer_auth(TOKEN)
        .json(&json!({"text": "fan-out probe"}))
        .send()
        .await
        .expect("probe");
    let mut delivered = 0;
    let mut slowest = Duration::ZERO;
    for (_, r) in streams.iter_mut() {
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, r.chunk()).await {
                Ok(Ok(Some(c))) if String::from_utf8_lossy(&c).contains("fan-out probe") => {
                    delivered += 1;
                    slowest = slowest.max(t0.elapsed());
                    break;
                }
                Ok(Ok(Some(_))) => continue,
                _ => break,
            }
        }
    }
    drop(streams);
    let url = format!("{}/slack/commands", srv.base);
    let o = run(
        300,
        16,
        cap,
        Arc::new(move |c, i| form(c, &url, command("checkout is slow for users", i))),
    )
    .await;
    row("POST /slack/commands (opens incident)", &o);
    let u = format!("{}/api/v1/incidents/{id}/messages", srv.base);
    let o = run(
        1000,
        32,
        cap,
        Arc::new(move |c, i| {
            c.post(&u)
                .bearer_auth(TOKEN)
                .json(&json!({"text": format!("note {i}")}))
        }),
    )
    .await;
    row("POST /api/v1/incidents/{id}/messages", &o);

    println!(
        "\nevent streams: {opened_ok} of 500 opened; server RSS {} MiB idle after startup, {} MiB before the streams, {} MiB with them ({:.1} KiB per stream); a new event reached {delivered} of them, the last after {} ms",
        rss_idle / 1024,
        before / 1024,
        with_streams / 1024,
        (with_streams.saturating_sub(before)) as f64 / opened_ok.max(1) as f64,
        slowest.as_millis()
    );
    drop(srv);

    // Overload: a server limited to 4 requests at once and 50 per second per caller.
    let tight = [
        ("ONCALL_SERVER__MAX_CONCURRENT_REQUESTS", "4"),
        ("ONCALL_SERVER__REQUESTS_PER_S", "50"),
    ];
    let srv = start(&tight).await;
    let url = format!("{}/api/v1/incidents", srv.base);
    let o = run(
        3000,
        64,
        cap,
        Arc::new(move |c, _| c.get(&url).bearer_auth(TOKEN)),
    )
    .await;
    println!();
    row("overload: GET /api/v1/incidents, 64 clients", &o);
    let alive = reqwest::get(format!("{}/healthz", srv.base))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    println!(
        "after the overload the server answers /healthz with {alive}; {} requests failed at the transport level",
        o.errors
    );
}
