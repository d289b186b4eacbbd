//! The real `oncall serve` binary as a child process on a free loopback port, killed (by its own
//! pid) when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const OPERATOR: &str = "serve-operator-token";

pub struct Serve {
    child: Child,
    /// What it wrote on stderr so far.
    pub stderr: Arc<Mutex<String>>,
    pub base: String,
    pub http: reqwest::Client,
}

impl Serve {
    /// Starts `oncall serve` with `env` (ONCALL_* settings) and waits for `/healthz`; or, when
    /// it exits first, returns its exit status and stderr.
    pub async fn start(data_dir: &Path, env: &[(&str, String)]) -> Result<Serve, String> {
        let port = free_port();
        let mut cmd = Command::new(super::ONCALL);
        cmd.arg("serve")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("ONCALL_CONFIG")
            .env("ONCALL_TOKEN", OPERATOR)
            .env("ONCALL_SERVER__DATA_DIR", data_dir)
            .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"));
        Serve::spawn(cmd, port).await
    }

    /// Starts a prepared `oncall ... serve` command that listens on `port`, and waits for
    /// `/healthz`; or, when it exits first, returns its exit status and stderr.
    pub async fn spawn(mut cmd: Command, port: u16) -> Result<Serve, String> {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oncall serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(e) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(e).lines().map_while(Result::ok) {
                    eprintln!("[serve] {line}");
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                return Err(format!("{status}: {err}"));
            }
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                return Ok(Serve {
                    child,
                    stderr,
                    base,
                    http: reqwest::Client::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("oncall serve did not come up within 60 s".into())
    }

    /// SIGKILL, by its own pid (a crash at the worst moment), and waits for it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL oncall serve");
        let _ = self.child.wait();
    }

    /// GET with the operator's token: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        (s, r.text().await.unwrap_or_default())
    }

    /// POST JSON with the operator's token: status and body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(OPERATOR)
            .json(&body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        (s, r.text().await.unwrap_or_default())
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The value of one sample in Prometheus text (`name{labels} value`), if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse::<f64>().ok())
    })
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
