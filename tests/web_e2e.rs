//! The web page of `oncall serve`, end to end in headless Chromium.
//!
//! A real CPU hog busy-loops on this host; the real `oncall serve` runs on a free port with an
//! operator token; tests/e2e/web.py (Selenium, Debian's chromium and chromedriver, installed with
//! Selenium into target/otel-venv by scripts/setup-test-deps.sh) signs in on the page, files a
//! user-facing incident, watches the investigation stream in, approves the agent's
//! `host.signal_process` request and opens the post-mortem. Afterwards the API must show the
//! action executed and verified, and the hog must have died of that SIGTERM.
//!
//! Without Chromium, chromedriver or Selenium the test is skipped, except in CI (CI set), where
//! that is a failure. It loads the whole machine, so it runs alone (.config/nextest.toml).

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "web-e2e-token-0123456789abcdef";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python with Selenium, when Chromium and chromedriver are there too; else why not.
fn browser_tools() -> Result<PathBuf, String> {
    let py = std::env::var_os("ONCALL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("target/otel-venv/bin/python"));
    let mut missing = vec![];
    for p in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(p).exists() {
            missing.push(p.to_string());
        }
    }
    let selenium = Command::new(&py)
        .args(["-c", "import selenium"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !selenium {
        missing.push(format!("selenium in {}", py.display()));
    }
    if missing.is_empty() {
        Ok(py)
    } else {
        Err(missing.join(", "))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `oncall serve`, terminated (then killed) when dropped; its stderr goes to a file.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let port = free_port();
        let log = data_dir.join("serve.log");
        let child = Command::new(ONCALL)
            .arg("serve")
            .env_remove("ONCALL_CONFIG")
            .env("ONCALL_TOKEN", TOKEN)
            .env("ONCALL_SERVER__DATA_DIR", data_dir)
            .env("ONCALL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the server log"))
            .spawn()
            .expect("start oncall serve");
        let mut s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("oncall serve exited at start ({st}):\n{}", s.log_text());
            }
            if http_get(&format!("{}/healthz", s.base), None).is_some_and(|b| b.trim() == "ok") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "oncall serve never answered /healthz:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path with the operator token, parsed as JSON.
    fn get(&self, path: &str) -> Value {
        let body = http_get(&format!("{}{path}", self.base), Some(TOKEN))
            .unwrap_or_else(|| panic!("GET {path} failed"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..30 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET with reqwest on a small runtime of its own; None unless it answered 2xx.
fn http_get(url: &str, token: Option<&str>) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    })
}

#[test]
fn web_page_end_to_end_investigates_a_cpu_hog_and_stops_it_after_approval() {
    let started = Instant::now();
    let py = match browser_tools() {
        Ok(py) => py,
        Err(missing) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the web end-to-end test needs {missing}: scripts/setup-test-deps.sh installs them"
            );
            eprintln!(
                "SKIPPED: web end-to-end test: missing {missing} (run scripts/setup-test-deps.sh as root)"
            );
            return;
        }
    };

    // A real busy loop on twice as many threads as cores, as in tests/host_faults.rs. Its own
    // deadline is past the end of the test, so only the approved SIGTERM can end it in time.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let threads = (cores * 2).to_string();
    let mut hog = Fault::start(&[
        "--name",
        "ledger-sync",
        "--seconds",
        "150",
        "cpu",
        "--threads",
        &threads,
    ]);

    let data = tempfile::Builder::new()
        .prefix("oncall-web-e2e")
        .tempdir()
        .expect("a temp dir");
    let server = Server::start(data.path());
    // A second approver: admin drives the investigation, so under two-person control someone
    // else approves the kill its model asks for.
    let bo = Command::new(ONCALL)
        .args(["token", "add", "bo", "--role", "approver"])
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_SERVER__DATA_DIR", data.path())
        .output()
        .expect("oncall token add");
    assert!(
        bo.status.success(),
        "{}",
        String::from_utf8_lossy(&bo.stderr)
    );
    let bo = String::from_utf8_lossy(&bo.stdout).trim().to_string();
    // Give the hog time to show in the CPU statistics (as the host-fault tests do).
    std::thread::sleep(Duration::from_millis(800));

    let shot = manifest().join("target/e2e/web.png");
    std::fs::create_dir_all(shot.parent().unwrap()).expect("create target/e2e");
    let script = manifest().join("tests/e2e/web.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&server.base)
        .arg(TOKEN)
        .arg(&shot)
        .arg(hog.pid.to_string())
        .arg(&bo)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run tests/e2e/web.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "tests/e2e/web.py failed ({}); screenshot: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- oncall serve\n{}",
        out.status,
        shot.display(),
        server.log_text()
    );

    // The API agrees with what the page showed.
    let list = server.get("/api/v1/incidents");
    let id = list[0]["id"]
        .as_str()
        .expect("the incident on the list")
        .to_string();
    let detail = server.get(&format!("/api/v1/incidents/{id}"));
    let events = detail["events"].as_array().expect("events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let of = |k: &str| events.iter().find(|e| e["kind"] == k);
    let requested =
        of("action_requested").unwrap_or_else(|| panic!("no action_requested: {kinds:?}"));
    assert_eq!(
        requested["data"]["tool"], "host.signal_process",
        "{requested}"
    );
    assert_eq!(requested["data"]["args"]["pid"], hog.pid, "{requested}");
    assert_eq!(requested["data"]["args"]["signal"], "TERM", "{requested}");
    let approved = of("action_approved").unwrap_or_else(|| panic!("no action_approved: {kinds:?}"));
    // admin drove the investigation; under two-person control the second approver decided.
    assert_eq!(approved["data"]["by"], "bo", "{approved}");
    assert_eq!(requested["data"]["on_behalf_of"], "admin", "{requested}");
    let executed = of("action_executed").unwrap_or_else(|| panic!("no action_executed: {kinds:?}"));
    assert_eq!(executed["data"]["ok"], true, "{executed}");
    assert_eq!(executed["data"]["output"]["pid"], hog.pid, "{executed}");
    let verified = of("action_verified").unwrap_or_else(|| panic!("no action_verified: {kinds:?}"));
    let effect = verified["data"]["effect"].as_str().unwrap_or_default();
    assert!(!effect.is_empty(), "an effect was measured: {verified}");
    println!("measured effect: {effect}");

    // The hog died of the SIGTERM the approved action sent (not of its own deadline).
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = hog.child.try_wait().expect("wait for the hog") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the hog (pid {}) is still running after the approved SIGTERM",
            hog.pid
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status.signal(),
        Some(nix::libc::SIGTERM),
        "the hog ended by SIGTERM: {status}"
    );
    println!(
        "web end-to-end test took {:.1} s (incident {id})",
        started.elapsed().as_secs_f64()
    );
    drop(server);
}
