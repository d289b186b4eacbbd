//! The real `oncall serve` as a child process, as a user or a load balancer meets it: started
//! from a prepared `Command`, ready once `/healthz` answers, and killed (SIGKILL, by its own pid)
//! when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `oncall serve`.
pub struct Served {
    pub child: Child,
    pub port: u16,
}

impl Served {
    /// Spawns `cmd` (an `oncall serve` listening on `port`) and waits up to 60 s for /healthz.
    pub async fn start(cmd: &mut Command, port: u16) -> Served {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn oncall serve");
        let mut s = Served { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(s.url("/healthz")).await
                && r.status() == 200
            {
                return s;
            }
            if let Some(status) = s.child.try_wait().expect("try_wait") {
                panic!("oncall serve exited ({status}) instead of serving");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oncall serve did not answer /healthz within 60 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
