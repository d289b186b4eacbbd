//! Helpers shared by the integration tests: run the real binaries, cause real faults, and clean
//! every fault up in `Drop`, so a failing assertion never leaves a hog or a mount behind.
#![allow(dead_code)]

pub mod llm;
pub mod pg;
pub mod prom;
pub mod serve;
pub mod server;

#[allow(unused_imports)]
pub use serve::free_port;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const ONCALL: &str = env!("CARGO_BIN_EXE_oncall");
pub const FAULT: &str = env!("CARGO_BIN_EXE_oncall-fault");

/// A running fault process, killed when dropped.
pub struct Fault {
    pub child: Child,
    pub pid: u32,
}

/// A copy of `oncall-fault` under another file name in `dir`: a program the tests did not
/// ship, whose name may be longer than the kernel's 15-byte `comm`.
pub fn fault_copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(FAULT, &to).expect("copy oncall-fault");
    to
}

impl Fault {
    /// Starts `oncall-fault <args>` and waits for its `ready pid=` line.
    pub fn start(args: &[&str]) -> Fault {
        Fault::start_bin(Path::new(FAULT), args)
    }

    /// Starts a copy of oncall-fault (see [`fault_copy`]) and waits for its `ready pid=` line.
    pub fn start_bin(bin: &Path, args: &[&str]) -> Fault {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn oncall-fault");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let fault = Fault { child, pid };
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("oncall-fault {args:?} never became ready"));
        fault
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cores this machine has.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Where each section of the Google SRE example post-mortem starts in `md`, asserting that all
/// are there and in order.
pub fn postmortem_sections(md: &str) -> Vec<usize> {
    let at: Vec<usize> = [
        "## Summary",
        "## Impact",
        "## Detection",
        "## Root cause and trigger",
        "## Resolution",
        "## Timeline",
        "## What went well",
        "## What went badly",
        "## Where we got lucky",
        "## Action items",
        "## Lessons learned",
    ]
    .iter()
    .map(|h| md.find(h).unwrap_or_else(|| panic!("{h} missing:\n{md}")))
    .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "sections in order:\n{md}"
    );
    at
}

/// Investigates `report` in this process with the offline reasoner over `registry`.
pub async fn investigate_offline(
    report: &str,
    registry: &oncall::registry::Registry,
    config: &oncall::config::Config,
) -> oncall::agent::Investigation {
    let model = oncall::reasoner::OfflineModel::new(config.thresholds.clone());
    oncall::reasoner::investigate(
        report,
        registry,
        config,
        &model,
        &oncall::agent::events::Collect::default(),
    )
    .await
    .expect("investigates")
}

/// Runs `oncall triage --json <report>` and parses the answer.
pub fn triage_json(report: &str, env: &[(&str, &str)]) -> Value {
    let out = Command::new(ONCALL)
        .args(["triage", "--json", report])
        .env_remove("ONCALL_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run oncall");
    assert!(
        out.status.success(),
        "oncall triage failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("triage --json prints JSON")
}

/// Runs `oncall` with arguments; returns (exit code, stdout, stderr).
pub fn oncall(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(ONCALL)
        .args(args)
        .env_remove("ONCALL_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run oncall");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A small tmpfs mounted in a temporary directory, unmounted when dropped.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        Tmpfs::mount_with(&format!("size={size}"))
    }

    /// Mounts with these tmpfs options (`size=8m,nr_inodes=500`).
    pub fn mount_with(options: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("oncall-test-fs")
            .tempdir()
            .expect("tempdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs failed");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes 256 KiB files until the filesystem refuses with ENOSPC.
    pub fn fill(&self) -> PathBuf {
        let chunk = vec![0u8; 256 * 1024];
        for i in 0.. {
            let p = self.path().join(format!("blob-{i:05}.bin"));
            if let Err(e) = std::fs::write(&p, &chunk) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOSPC),
                    "unexpected write error: {e}"
                );
                return p;
            }
        }
        unreachable!()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The hypotheses of an answer, ranked.
pub fn hypotheses(answer: &Value) -> &Vec<Value> {
    answer["hypotheses"].as_array().expect("hypotheses array")
}

/// Compact description of the ranking, for assertion messages.
pub fn ranking(answer: &Value) -> String {
    hypotheses(answer)
        .iter()
        .map(|h| {
            format!(
                "{} {} {} {}: {}",
                h["id"], h["category"], h["status"], h["confidence"], h["statement"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cgroup made for one test, in the unified (v2) hierarchy where it is mounted, else in the
/// v1 hierarchy of one controller; removed when dropped (after its processes are gone).
pub struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    /// Makes the cgroup and writes its settings: `v2` files for the unified hierarchy, or `v1`
    /// files under `/sys/fs/cgroup/<controller>`. None where neither can be made.
    pub fn make(
        controller: &str,
        v2: &[(&str, String)],
        v1: &[(&str, String)],
    ) -> Option<TestCgroup> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "oncall-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (dir, settings) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            (PathBuf::from("/sys/fs/cgroup").join(&name), v2)
        } else if Path::new("/sys/fs/cgroup").join(controller).is_dir() {
            (
                PathBuf::from("/sys/fs/cgroup").join(controller).join(&name),
                v1,
            )
        } else {
            return None;
        };
        std::fs::create_dir(&dir).ok()?;
        let cg = TestCgroup { dir };
        for (file, value) in settings {
            std::fs::write(cg.dir.join(file), value).ok()?;
        }
        Some(cg)
    }

    /// A memory cgroup limited to `limit_bytes`.
    pub fn memory(limit_bytes: u64) -> Option<TestCgroup> {
        let l = limit_bytes.to_string();
        TestCgroup::make(
            "memory",
            &[("memory.max", l.clone())],
            &[("memory.limit_in_bytes", l)],
        )
    }

    /// A CPU cgroup allowed `quota_us` of CPU time every `period_us`.
    pub fn cpu(quota_us: u64, period_us: u64) -> Option<TestCgroup> {
        TestCgroup::make(
            "cpu",
            &[("cpu.max", format!("{quota_us} {period_us}"))],
            &[
                ("cpu.cfs_period_us", period_us.to_string()),
                ("cpu.cfs_quota_us", quota_us.to_string()),
            ],
        )
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts oncall-fault inside the cgroup (a shell joins it, then execs the fault).
    pub fn start(&self, args: &[&str]) -> Fault {
        let script = format!(
            "echo $$ > '{}' && exec '{}' \"$@\"",
            self.dir.join("cgroup.procs").display(),
            FAULT
        );
        let mut full = vec!["-c", script.as_str(), "sh"];
        full.extend_from_slice(args);
        Fault::start_bin(Path::new("/bin/sh"), &full)
    }
}

/// A test's cgroup, or None (the reason printed as SKIPPED) where it cannot be made: without
/// root, or with no writable hierarchy, which fails the test in CI (`CI` set) instead.
pub fn cgroup_for_test(
    what: &str,
    make: impl FnOnce() -> Option<TestCgroup>,
) -> Option<TestCgroup> {
    if !is_root() {
        eprintln!("SKIPPED: making a {what} cgroup needs root");
        return None;
    }
    let cg = make();
    if cg.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no writable {what} cgroup hierarchy under /sys/fs/cgroup"
        );
        eprintln!("SKIPPED: no writable {what} cgroup hierarchy");
    }
    cg
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Empty once its processes are gone; retry briefly while the kernel reaps them.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits (at most `within`) until a process's resident memory reaches `mib`; false if it never did.
pub fn wait_rss(pid: u32, mib: u64, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        if rss_kib >= mib * 1024 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A real, harmless process for live actions to hit (`sleep`); killed and reaped on drop.
pub struct Victim(pub Child);

impl Victim {
    pub fn start() -> Victim {
        Victim(
            Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("spawn sleep"),
        )
    }
    /// `sleep 300` whose command line (what the host tools show) is `argv0`.
    pub fn named(argv0: &str) -> Victim {
        Victim(
            Command::new("bash")
                .args(["-c", &format!("exec -a '{argv0}' sleep 300")])
                .spawn()
                .expect("spawn"),
        )
    }
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    pub fn alive(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A live action that appends a line to a file per run: the number of lines is the number of
/// times it ran.
pub fn counting_action(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let actions = dir.join("actions");
    std::fs::create_dir_all(&actions).expect("the counting action");
    let count = dir.join("runs.txt");
    std::fs::write(
        actions.join("count-run.toml"),
        format!(
            r#"name = "count.run"
description = "Appends a line to a file each time it runs (a test action)."
risk = "live_action"

[command]
argv = ["/bin/sh", "-c", "echo ran >> {}"]
timeout_s = 10
"#,
            count.display()
        ),
    )
    .expect("the counting action");
    (actions, count)
}

/// The test venv's Python (`ONCALL_TEST_PYTHON`, else target/otel-venv, made by
/// scripts/setup-test-deps.sh) when it can import `module`; None, with a SKIPPED line, outside
/// CI, and a failure under CI.
pub fn venv_python(module: &str) -> Option<PathBuf> {
    let p = std::env::var_os("ONCALL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/otel-venv/bin/python")
        });
    let ok = Command::new(&p)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} cannot import {module}: run scripts/setup-test-deps.sh",
        p.display()
    );
    eprintln!(
        "SKIPPED: {} cannot import {module} (scripts/setup-test-deps.sh installs it)",
        p.display()
    );
    None
}

/// `oncall token add NAME --role ROLE` against the store a setting names (e.g.
/// `("ONCALL_SERVER__DATA_DIR", dir)`); the token it prints.
pub fn token_add(store: (&str, &std::ffi::OsStr), name: &str, role: &str) -> String {
    let out = Command::new(ONCALL)
        .args(["token", "add", name, "--role", role])
        .env_remove("ONCALL_CONFIG")
        .env(store.0, store.1)
        .output()
        .expect("oncall token add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Fault {
    /// A process named `name` busy-looping on twice as many threads as cores, given time to
    /// show in the stats.
    pub fn cpu_hog(name: &str) -> Fault {
        let threads = (cores() * 2).to_string();
        let hog = Fault::start(&[
            "--name",
            name,
            "cpu",
            "--threads",
            &threads,
            "--seconds",
            "60",
        ]);
        std::thread::sleep(Duration::from_millis(800));
        hog
    }
}
