//! The load generator the server benches share: `total` requests from `workers` concurrent
//! clients, with latency percentiles and throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Outcome {
    pub latencies: Vec<Duration>,
    pub statuses: std::collections::BTreeMap<u16, u64>,
    pub errors: u64,
    pub wall: Duration,
}

impl Outcome {
    pub fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        if l.is_empty() {
            return 0.0;
        }
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i].as_secs_f64() * 1000.0
    }
    /// The status codes seen and the transport errors, e.g. `200:9000 429:12 errors:3`.
    pub fn codes(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        if self.errors > 0 {
            parts.push(format!("errors:{}", self.errors));
        }
        parts.join(" ")
    }

    pub fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

pub type MakeReq = Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

/// `total` requests from `workers` concurrent clients, stopping early at `cap`.
pub async fn run(total: u64, workers: u64, cap: Duration, make: MakeReq) -> Outcome {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers as usize)
        .build()
        .expect("client");
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = vec![];
    for _ in 0..workers {
        let (client, next, make) = (client.clone(), next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total || t0.elapsed() > cap {
                    return out;
                }
                let start = Instant::now();
                match make(&client, i).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        out.latencies.push(start.elapsed());
                        *out.statuses.entry(s).or_default() += 1;
                    }
                    Err(_) => out.errors += 1,
                }
            }
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await.expect("worker");
        all.latencies.extend(o.latencies);
        all.errors += o.errors;
        for (k, v) in o.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
    }
    all.wall = t0.elapsed();
    all
}

/// A free loopback port for a server under test.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A Slack request signed with `secret` as Slack signs it, with `body` of type `ctype`.
pub fn signed(
    c: &reqwest::Client,
    secret: &str,
    url: &str,
    ctype: &str,
    body: String,
) -> reqwest::RequestBuilder {
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = oncall::server::slack::sign(secret, &ts, body.as_bytes()).expect("sign");
    c.post(url)
        .header("content-type", ctype)
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body)
}
