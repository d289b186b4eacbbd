//! Faults made the way other people's generators make them, diagnosed by the real binary:
//! programs under names the project never ships (longer than the kernel's 15-byte `comm`), run
//! as pools of processes; a leak that has not yet made any pressure, on the host and inside a
//! memory cgroup; several synchronous writers that lengthen the run queue while the disk is
//! what saturates; a filesystem out of inodes; and busy-but-fine hosts that must not alarm.
//!
//! These tests load the whole machine, so they run one at a time (the exclusive nextest group).

mod common;

use common::*;
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn top(answer: &Value) -> &Value {
    &hypotheses(answer)[0]
}

fn findings(answer: &Value) -> Vec<&Value> {
    let th = answer["confidence_threshold"].as_f64().unwrap_or(0.5);
    hypotheses(answer)
        .iter()
        .filter(|h| h["confidence"].as_f64().unwrap_or(0.0) >= th && h["status"] != "rejected")
        .collect()
}

fn text(h: &Value) -> String {
    format!("{} {}", h["statement"], h["culprit"])
}

#[test]
fn a_pool_of_a_long_named_program_is_named_in_full_not_by_its_cut_comm() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "inventory-reconciliation-worker";
    let bin = fault_copy(dir.path(), name);
    let threads = cores().to_string();
    let pool: Vec<Fault> = (0..3)
        .map(|_| Fault::start_bin(&bin, &["cpu", "--threads", &threads, "--seconds", "60"]))
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let answer = triage_json("the order pages are slow since a few minutes", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.cpu_saturation",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["name"], name, "the full program name: {h}");
    let pids: Vec<u64> = pool.iter().map(|f| f.pid as u64).collect();
    assert!(
        pids.contains(&h["culprit"]["pid"].as_u64().unwrap_or(0)),
        "one of the pool's pids: {h}"
    );
    let st = h["statement"].as_str().unwrap_or_default();
    assert!(
        st.contains(name) && st.contains("3 processes"),
        "names the program and its pool: {st}"
    );
}

#[test]
fn a_steady_leak_with_plenty_of_free_memory_is_a_finding_with_its_rate_and_time_to_the_limit() {
    let _g = serial();
    let leak = Fault::start(&[
        "--name",
        "ledger-cache",
        "memory",
        "--rate-mib-per-s",
        "40",
        "--max-mib",
        "4000",
        "--seconds",
        "60",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let answer = triage_json("the reconciliation service feels off today", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.memory_pressure",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(
        answer["abstained"], false,
        "a leak is the finding before it is a pressure"
    );
    assert_eq!(h["culprit"]["pid"], leak.pid, "{h}");
    let st = h["statement"].as_str().unwrap_or_default();
    assert!(
        st.contains("MiB/s") && st.contains("reaches the") && st.contains(" in ~"),
        "the growth rate and the time to the limit: {st}"
    );
    assert!(st.contains("ledger-cache"), "{st}");
}

#[test]
fn a_leak_inside_a_memory_cgroup_is_timed_against_the_cgroup_limit() {
    let _g = serial();
    let Some(cg) = cgroup_for_test("memory", || TestCgroup::memory(1 << 30)) else {
        return;
    };
    let leak = {
        let f = cg.start(&[
            "--name",
            "quote-builder",
            "memory",
            "--rate-mib-per-s",
            "40",
            "--max-mib",
            "800",
            "--seconds",
            "60",
        ]);
        std::thread::sleep(Duration::from_millis(1500));
        f
    };
    let answer = triage_json("quotes take long to build", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.memory_pressure",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["pid"], leak.pid, "{h}");
    let st = h["statement"].as_str().unwrap_or_default();
    assert!(
        st.contains("cgroup") && st.contains("limit"),
        "timed against the cgroup's 1 GiB, not the host's memory: {st}"
    );
    // 1 GiB at 40 MiB/s is well under five minutes: confirmed, not just a lean.
    assert_eq!(h["status"], "confirmed", "{h}");
    drop(leak);
}

#[test]
fn synchronous_writers_in_a_pool_rank_disk_io_above_cpu_and_name_the_writer() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "blob-compaction-writer";
    let bin = fault_copy(dir.path(), name);
    let _busy = Fault::start(&[
        "--name",
        "report-gen",
        "cpu",
        "--threads",
        "1",
        "--seconds",
        "60",
    ]);
    let _writers: Vec<Fault> = (0..4)
        .map(|_| {
            Fault::start_bin(
                &bin,
                &[
                    "io",
                    "--path",
                    "/var/tmp",
                    "--threads",
                    "2",
                    "--mib",
                    "64",
                    "--seconds",
                    "60",
                ],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let answer = triage_json("uploads got slow and time out now and then", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.disk_io_saturation",
        "the disk, not the CPU the writers queue on:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["name"], name, "{h}");
    assert!(
        h["statement"].as_str().unwrap_or_default().contains(name),
        "{h}"
    );
}

#[test]
fn a_filesystem_out_of_inodes_names_the_directory_holding_the_files() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let _g = serial();
    let fs = Tmpfs::mount_with("size=64m,nr_inodes=400");
    let spool = fs.path().join("spool").join("outbox");
    std::fs::create_dir_all(&spool).expect("mkdir");
    for i in 0.. {
        if std::fs::write(spool.join(format!("msg-{i:06}.eml")), b"x").is_err() {
            break;
        }
        assert!(i < 10_000, "the inode limit never came");
    }
    let answer = triage_json("outgoing mail is stuck", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.disk_full",
        "ranking:\n{}",
        ranking(&answer)
    );
    let st = h["statement"].as_str().unwrap_or_default();
    assert!(st.contains("out of inodes"), "{st}");
    assert!(
        st.contains(&spool.display().to_string()),
        "names the directory that holds the files: {st}"
    );
}

#[test]
fn busy_but_fine_hosts_abstain_with_evidence() {
    let _g = serial();
    // One busy core, a large but stable process, and many descriptors far from the limit.
    let _one_core = Fault::start(&[
        "--name",
        "nightly-etl",
        "cpu",
        "--threads",
        "1",
        "--seconds",
        "60",
    ]);
    let big = Fault::start(&[
        "--name",
        "price-cache",
        "memory",
        "--rate-mib-per-s",
        "2000",
        "--max-mib",
        "1500",
        "--seconds",
        "60",
    ]);
    let _fds = Fault::start(&[
        "--name",
        "session-store",
        "fds",
        "--limit",
        "16384",
        "--open",
        "3000",
        "--seconds",
        "60",
    ]);
    // Let the large process reach its size and stay there.
    assert!(
        wait_rss(big.pid, 1450, Duration::from_secs(30)),
        "price-cache never reached 1.5 GiB"
    );
    std::thread::sleep(Duration::from_millis(500));
    let answer = triage_json("is the host ok? dashboards look busy", &[]);
    let found: Vec<String> = findings(&answer).iter().map(|h| text(h)).collect();
    assert!(
        found.is_empty() && answer["abstained"] == true,
        "busy but fine must abstain, found: {found:?}\n{}",
        ranking(&answer)
    );
    // ...with evidence: each host category was measured and rejected or left below threshold.
    assert!(hypotheses(&answer).len() >= 6, "{}", ranking(&answer));
    drop(big);
}

#[test]
fn a_program_held_at_its_cgroup_cpu_quota_is_cpu_saturation_on_an_idle_host() {
    let _g = serial();
    let Some(cg) = cgroup_for_test("CPU", || TestCgroup::cpu(20_000, 100_000)) else {
        return;
    };
    let job = cg.start(&[
        "--name",
        "invoice-export",
        "cpu",
        "--threads",
        "2",
        "--seconds",
        "60",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let answer = triage_json("the invoice export crawls since this morning", &[]);
    let h = top(&answer);
    assert_eq!(
        h["category"],
        "host.cpu_saturation",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert_eq!(h["culprit"]["pid"], job.pid, "{h}");
    let st = h["statement"].as_str().unwrap_or_default();
    assert!(
        st.contains("throttled") && st.contains("0.20 CPU"),
        "the quota, not the host, holds it back: {st}"
    );
    drop(job);
}
