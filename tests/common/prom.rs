//! A real Prometheus and node-exporter (Debian's packages, installed by
//! scripts/setup-test-deps.sh) started on free loopback ports in a temporary directory, scraping
//! every second, and stopped in `Drop`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prom {
    pub url: String,
    /// The node-exporter target, as Prometheus labels it (`instance`).
    pub instance: String,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Prom {
    /// Whether both binaries are installed.
    pub fn available() -> bool {
        std::path::Path::new("/usr/bin/prometheus").exists()
            && std::path::Path::new("/usr/bin/prometheus-node-exporter").exists()
    }

    /// Starts both and waits until Prometheus has scraped the node-exporter a few times.
    pub async fn start() -> Prom {
        let dir = tempfile::tempdir().expect("tempdir");
        let (np, pp) = (free_port(), free_port());
        let instance = format!("127.0.0.1:{np}");
        let node = Command::new("/usr/bin/prometheus-node-exporter")
            .args([
                &format!("--web.listen-address={instance}"),
                "--log.level=warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-node-exporter");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{instance}']\n"
            ),
        )
        .expect("config");
        let prom = Command::new("/usr/bin/prometheus")
            .args([
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{pp}"),
                "--log.level=warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prom {
            url: format!("http://127.0.0.1:{pp}"),
            instance,
            children: vec![node, prom],
            _dir: dir,
        };
        p.wait_for_samples(3).await;
        p
    }

    /// Waits until `up` of the node target has been scraped `n` times in the last minute.
    pub async fn wait_for_samples(&self, n: u32) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let q = format!("count_over_time(up{{instance=\"{}\"}}[1m])", self.instance);
        let http = reqwest::Client::new();
        loop {
            let got = match http
                .get(format!("{}/api/v1/query", self.url))
                .query(&[("query", q.as_str())])
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| {
                        v["data"]["result"][0]["value"][1]
                            .as_str()?
                            .parse::<u32>()
                            .ok()
                    })
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus at {} never scraped {} {n} times",
                self.url,
                self.instance
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
