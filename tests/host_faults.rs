//! Real faults on this machine, diagnosed by the real `oncall` binary.
//!
//! Each test causes a fault (a busy-looping process, a process whose memory grows, a full tmpfs,
//! a process at its open-files limit), runs `oncall triage --json`, and checks the ranking. The
//! tests in this file share one machine, so they run one at a time (a lock here, and an exclusive
//! nextest group in .config/nextest.toml so no other test loads the CPU meanwhile).

mod common;

use common::*;
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn cpu_hog(name: &str) -> Fault {
    Fault::cpu_hog(name)
}

fn top(answer: &Value) -> &Value {
    &hypotheses(answer)[0]
}

#[test]
fn busy_loop_on_more_threads_than_cores_is_top1_cpu_saturation_naming_the_process() {
    let _g = serial();
    let hog = cpu_hog("ledger-sync");
    let answer = triage_json("the api is slow", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.cpu_saturation",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["status"], "confirmed", "ranking:\n{}", ranking(&answer));
    assert_eq!(h["culprit"]["pid"], hog.pid, "names the hog: {}", h);
    assert!(
        h["statement"].as_str().unwrap().contains("ledger-sync"),
        "{}",
        h["statement"]
    );
    assert_eq!(h["evidence"][0]["call"], "c1");
    assert_eq!(answer["tool_calls"][0]["tool"], "host.use_snapshot");
    assert!(answer["abstained"] == false);
    // The next step is a flame graph of that very pid.
    let steps = answer["next_steps"].to_string();
    assert!(
        steps.contains(&format!("perf record -F 99 -p {} -g", hog.pid)),
        "{steps}"
    );
}

#[test]
fn growing_process_is_named_in_a_memory_hypothesis_with_its_rss_growth() {
    let _g = serial();
    let leak = Fault::start(&[
        "--name",
        "report-cache",
        "memory",
        "--rate-mib-per-s",
        "300",
        "--max-mib",
        "6000",
        "--seconds",
        "60",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let answer = triage_json("memory on the batch host keeps growing", &[]);
    let mem = hypotheses(&answer)
        .iter()
        .find(|h| h["category"] == "host.memory_pressure")
        .expect("a memory hypothesis");
    assert_eq!(
        mem["culprit"]["pid"],
        leak.pid,
        "ranking:\n{}",
        ranking(&answer)
    );
    let note = mem["evidence"][0]["note"].as_str().unwrap();
    assert!(
        note.contains("report-cache") && note.contains("RSS grew"),
        "{note}"
    );
    assert!(
        mem["confidence"].as_f64().unwrap() >= answer["confidence_threshold"].as_f64().unwrap()
    );
    assert_eq!(
        top(&answer)["category"],
        "host.memory_pressure",
        "ranking:\n{}",
        ranking(&answer)
    );
    let steps = answer["next_steps"].to_string();
    assert!(
        steps.contains("T0") && steps.contains(&leak.pid.to_string()),
        "heap snapshot diff advice: {steps}"
    );
}

#[test]
fn tmpfs_filled_to_the_brim_is_disk_full_naming_the_mount() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root; run the suite as root (CI does)");
        return;
    }
    let _g = serial();
    let fs = Tmpfs::mount("8m");
    fs.fill();
    let mount = fs.path().display().to_string();
    let answer = triage_json("writes are failing", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.disk_full",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["component"], format!("fs:{mount}"));
    assert_eq!(h["status"], "confirmed");
    assert!(
        answer["next_steps"]
            .to_string()
            .contains(&format!("du -xh --max-depth=2 {mount}"))
    );
}

#[test]
fn process_at_its_open_files_limit_is_fd_exhaustion() {
    let _g = serial();
    let f = Fault::start(&[
        "--name",
        "conn-pool",
        "fds",
        "--limit",
        "256",
        "--open",
        "250",
        "--seconds",
        "60",
    ]);
    let answer = triage_json("too many open files in the logs", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.fd_exhaustion",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["pid"], f.pid);
}

#[test]
fn parallel_direct_writers_are_disk_io_saturation_naming_the_writer() {
    let _g = serial();
    // On the disk that holds the target directory (a tmpfs has no device to saturate).
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("io-fault");
    std::fs::create_dir_all(&dir).expect("create the io directory");
    let dir = dir.display().to_string();
    let w = Fault::start(&[
        "--name",
        "blob-compactor",
        "io",
        "--path",
        &dir,
        "--mib",
        "64",
        "--threads",
        "8",
        "--seconds",
        "60",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let answer = triage_json("uploads are slow", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.disk_io_saturation",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["pid"], w.pid, "names the writer: {h}");
    assert!(
        h["statement"]
            .as_str()
            .unwrap_or("")
            .contains("blob-compactor"),
        "{}",
        h["statement"]
    );
}

#[test]
fn a_host_wide_change_right_before_a_cpu_hog_is_blamed_first_and_reverting_it_proposed() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("changes.jsonl");
    let at = |min: i64| (chrono::Utc::now() - chrono::Duration::minutes(min)).to_rfc3339();
    std::fs::write(
        &log,
        format!(
            "{}\n{}\n",
            serde_json::json!({"at": at(3), "kind": "config", "what": "proxy rules: new header filter"}),
            serde_json::json!({"at": at(240), "kind": "deploy", "what": "api v9", "service": "api"}),
        ),
    )
    .expect("write the change log");
    let hog = cpu_hog("edge-proxy");
    let log = log.display().to_string();
    let answer = triage_json(
        "502s for users since a few minutes",
        &[("ONCALL_CHANGES__FILE", log.as_str())],
    );
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "change.bad_config",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["name"], "proxy rules: new header filter");
    assert_eq!(hypotheses(&answer)[1]["culprit"]["pid"], hog.pid);
    let first = &answer["stabilize"][0];
    assert!(
        first["why"].as_str().unwrap_or("").contains("revert"),
        "the first stabilizer reverts the change: {first}"
    );
    assert_eq!(first["needs_approval"], true);
}

#[test]
fn quiet_machine_abstains() {
    let _g = serial();
    let answer = triage_json("routine check: is this host healthy?", &[]);
    let threshold = answer["confidence_threshold"].as_f64().unwrap();
    let above: Vec<&Value> = hypotheses(&answer)
        .iter()
        .filter(|h| h["confidence"].as_f64().unwrap() >= threshold)
        .collect();
    assert!(
        above.is_empty(),
        "nothing should be a finding on a quiet machine:\n{}",
        ranking(&answer)
    );
    assert_eq!(answer["abstained"], true);
    assert!(
        answer["conclusion"]
            .as_str()
            .unwrap()
            .starts_with("No fault found on this host")
    );
    assert_eq!(answer["triage"]["severity"], "P4");
}

#[test]
fn text_output_follows_the_protocol_order() {
    let _g = serial();
    // The long form, with its debug log, is `-v`; the default card is in tests/triage_output.rs.
    let (code, out, _) = oncall(
        &[
            "triage",
            "-v",
            "p99 latency > 2s on /api/checkout since the deploy of v2.5.1",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let pos = |s: &str| {
        out.find(s)
            .unwrap_or_else(|| panic!("missing {s:?} in:\n{out}"))
    };
    assert!(pos("Triage") < pos("Debug log"));
    assert!(pos("- T0 ") < pos("- H1: "));
    assert!(pos("Debug log") < pos("Hypotheses, best first"));
    assert!(pos("Hypotheses, best first") < pos("Next steps"));
    assert!(out.contains("git bisect bad v2.5.1"), "{out}");
    assert!(out.contains("-> host.use_snapshot [c1] -> "), "{out}");
}
