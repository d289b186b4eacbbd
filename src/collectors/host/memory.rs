//! Memory: available vs. total, swapping, major faults, PSI memory, OOM kills.
//!
//! `/proc/meminfo` for capacity, `/proc/vmstat` counters at both ends of the window for rates,
//! and the cgroup OOM counters where the kernel exposes them.

use super::pressure::Psi;
use super::signal::{ResourceReport, Signal, Unreadable, counter_delta};
use crate::config::MemoryThresholds;
use std::collections::HashMap;

/// Parses a `key: value [kB]` or `key value` file into a map (values in the file's unit).
fn parse_kv(text: &str, file: &str) -> Result<HashMap<String, u64>, String> {
    let mut map = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            return Err(format!("{file}: line `{line}` has no value"));
        };
        let v = v
            .parse::<u64>()
            .map_err(|e| format!("{file}: value of `{k}` is `{v}`: {e}"))?;
        map.insert(k.trim_end_matches(':').to_string(), v);
    }
    Ok(map)
}

/// Memory capacity from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// Parses /proc/meminfo.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, String> {
    let m = parse_kv(text, "/proc/meminfo")?;
    let get = |k: &str| {
        m.get(k)
            .map(|v| v * 1024)
            .ok_or_else(|| format!("/proc/meminfo has no {k}"))
    };
    let total = get("MemTotal")?;
    if total == 0 {
        return Err("/proc/meminfo says MemTotal is 0".into());
    }
    Ok(MemInfo {
        total,
        available: get("MemAvailable")?,
        swap_total: get("SwapTotal").unwrap_or(0),
        swap_free: get("SwapFree").unwrap_or(0),
    })
}

/// The /proc/vmstat counters the memory room uses.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VmStat {
    pub pswpin: u64,
    pub pswpout: u64,
    pub pgmajfault: u64,
    /// Absent before Linux 4.13.
    pub oom_kill: Option<u64>,
}

/// Parses /proc/vmstat.
pub fn parse_vmstat(text: &str) -> Result<VmStat, String> {
    let m = parse_kv(text, "/proc/vmstat")?;
    let get = |k: &str| {
        m.get(k)
            .copied()
            .ok_or_else(|| format!("/proc/vmstat has no {k}"))
    };
    Ok(VmStat {
        pswpin: get("pswpin")?,
        pswpout: get("pswpout")?,
        pgmajfault: get("pgmajfault")?,
        oom_kill: m.get("oom_kill").copied(),
    })
}

/// The `oom_kill` counter of a cgroup file (`memory.events` in v2, `memory.oom_control` in v1).
pub fn parse_cgroup_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

use serde::{Deserialize, Serialize};

/// A process the kernel's OOM killer killed, read from the kernel log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OomKill {
    pub name: String,
    pub pid: u32,
    /// The memory cgroup whose limit was hit (`/` when the whole host ran out).
    pub memcg: String,
    /// `CONSTRAINT_MEMCG` (a cgroup limit), `CONSTRAINT_NONE` (the host), ...
    pub constraint: String,
    pub seconds_ago: f64,
}

/// The OOM kills in kernel log records (`/dev/kmsg` format: `pri,seq,usec,flags;message`) no
/// older than `lookback_s`, given the time since boot. Newest first.
pub fn parse_kmsg_oom(records: &[String], uptime_s: f64, lookback_s: f64) -> Vec<OomKill> {
    let mut out: Vec<OomKill> = records
        .iter()
        .filter_map(|r| {
            let (head, msg) = r.split_once(';')?;
            let usec: f64 = head.split(',').nth(2)?.parse().ok()?;
            let fields = msg.trim().strip_prefix("oom-kill:")?;
            let get = |k: &str| {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            };
            let ago = uptime_s - usec / 1e6;
            (ago <= lookback_s).then(|| OomKill {
                name: get("task").unwrap_or("?").to_string(),
                pid: get("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
                memcg: get("oom_memcg").unwrap_or("/").to_string(),
                constraint: get("constraint").unwrap_or("?").to_string(),
                seconds_ago: (ago.max(0.0) * 10.0).round() / 10.0,
            })
        })
        .collect();
    out.sort_by(|a, b| a.seconds_ago.total_cmp(&b.seconds_ago));
    out
}

/// Every record of the kernel log (`/dev/kmsg`, root or CAP_SYSLOG), oldest first.
pub fn read_kmsg() -> Result<Vec<String>, String> {
    use std::io::{ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open("/dev/kmsg")
        .map_err(|e| format!("/dev/kmsg: {e}"))?;
    let mut out = vec![];
    let mut buf = vec![0u8; 8192];
    // One record per read; the ring buffer is bounded, and so is this loop.
    for _ in 0..1_000_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // A record overwritten while reading: skip it.
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EPIPE as i32) => continue,
            Err(e) => return Err(format!("/dev/kmsg: {e}")),
        }
    }
    Ok(out)
}

/// Inputs of the memory report.
pub struct MemoryInputs {
    pub meminfo: Result<MemInfo, String>,
    pub vmstat: Option<(VmStat, VmStat)>,
    pub psi: Option<(Psi, Psi)>,
    /// (source, oom kills counted by the root cgroup) where readable.
    pub cgroup_oom: Option<(String, u64)>,
    /// OOM kills in the kernel log within the lookback, or why the log could not be read
    /// (None: not looked at, because the kernel has counted no OOM kill since boot).
    pub recent_oom: Option<Result<Vec<OomKill>, String>>,
    pub oom_lookback_s: f64,
    pub window_s: f64,
}

/// Builds the memory resource report.
pub fn report(
    inp: &MemoryInputs,
    th: &MemoryThresholds,
    unreadable: &mut Vec<Unreadable>,
) -> ResourceReport {
    let (mut util, mut sat, mut errs) = (vec![], vec![], vec![]);
    match &inp.meminfo {
        Ok(m) => {
            let used = 100.0 * (1.0 - m.available as f64 / m.total as f64);
            util.push(
                Signal::rated("used", used, "%", th.used_pct, "/proc/meminfo").with_note(format!(
                    "available {:.1} GiB of {:.1} GiB",
                    m.available as f64 / GIB,
                    m.total as f64 / GIB
                )),
            );
            util.push(Signal::info(
                "available",
                m.available as f64 / GIB,
                "GiB",
                "/proc/meminfo",
            ));
            if m.swap_total > 0 {
                let swap_used = 100.0 * (1.0 - m.swap_free as f64 / m.swap_total as f64);
                util.push(Signal::info("swap_used", swap_used, "%", "/proc/meminfo"));
            }
        }
        Err(e) => unreadable.push(Unreadable::new("memory.used", "/proc/meminfo", e.clone())),
    }
    if let Some((a, b)) = &inp.vmstat {
        let rates = (|| -> Result<(f64, f64), String> {
            let swap = counter_delta("pswpin", a.pswpin, b.pswpin)?
                + counter_delta("pswpout", a.pswpout, b.pswpout)?;
            let majf = counter_delta("pgmajfault", a.pgmajfault, b.pgmajfault)?;
            Ok((swap as f64 / inp.window_s, majf as f64 / inp.window_s))
        })();
        match rates {
            Ok((swap, majf)) => {
                sat.push(Signal::rated(
                    "swap_pages",
                    swap,
                    "pages/s",
                    th.swap_pages_per_s,
                    "/proc/vmstat",
                ));
                sat.push(Signal::rated(
                    "major_faults",
                    majf,
                    "faults/s",
                    th.major_faults_per_s,
                    "/proc/vmstat",
                ));
            }
            Err(e) => unreadable.push(Unreadable::new("memory.paging", "/proc/vmstat", e)),
        }
        match (a.oom_kill, b.oom_kill) {
            (Some(x), Some(y)) => match counter_delta("oom_kill", x, y) {
                Ok(d) => errs.push(
                    Signal::rated(
                        "oom_kills",
                        d as f64,
                        "kills in window",
                        th.oom_kills,
                        "/proc/vmstat",
                    )
                    .with_note(format!("{y} since boot")),
                ),
                Err(e) => unreadable.push(Unreadable::new("memory.oom_kills", "/proc/vmstat", e)),
            },
            _ => unreadable.push(Unreadable::new(
                "memory.oom_kills",
                "/proc/vmstat",
                "no oom_kill counter (kernel older than 4.13)",
            )),
        }
    }
    match &inp.recent_oom {
        Some(Ok(kills)) => {
            let mut victims: Vec<(String, usize)> = vec![];
            for k in kills {
                match victims.iter_mut().find(|v| v.0 == k.name) {
                    Some(v) => v.1 += 1,
                    None => victims.push((k.name.clone(), 1)),
                }
            }
            let mut sig = Signal::rated(
                "oom_kills_recent",
                kills.len() as f64,
                "kills",
                th.oom_kills,
                "/dev/kmsg",
            );
            // Kills older than `oom_recent_s` are history: worth a warning, not critical now.
            if !kills.iter().any(|k| k.seconds_ago <= th.oom_recent_s) {
                sig.status = sig.status.min(super::signal::Status::Warning);
            }
            if let Some(last) = kills.first() {
                sig = sig.with_note(format!(
                    "in the last {:.0} min: {}; last {} (pid {}) {:.0} s ago in {} ({})",
                    inp.oom_lookback_s / 60.0,
                    victims
                        .iter()
                        .map(|(n, c)| format!("{n} x{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    last.name,
                    last.pid,
                    last.seconds_ago,
                    if last.memcg == "/" {
                        "the host".to_string()
                    } else {
                        format!("memory cgroup {}", last.memcg)
                    },
                    last.constraint
                ));
            }
            errs.push(sig);
        }
        Some(Err(e)) => unreadable.push(Unreadable::new(
            "memory.oom_kills_recent",
            "/dev/kmsg",
            e.clone(),
        )),
        None => {}
    }
    if let Some((src, n)) = &inp.cgroup_oom {
        errs.push(Signal::info(
            "cgroup_oom_kills_since_boot",
            *n as f64,
            "kills",
            src,
        ));
    }
    if let Some((a, b)) = &inp.psi {
        let window_us = inp.window_s * 1e6;
        match super::pressure::stall_pct(a.some.total_us, b.some.total_us, window_us) {
            Ok(p) => sat.push(
                Signal::rated(
                    "psi_some",
                    p,
                    "% of window",
                    th.psi_some_pct,
                    "/proc/pressure/memory",
                )
                .with_note(format!("avg10 {:.1}%", b.some.avg10)),
            ),
            Err(e) => unreadable.push(Unreadable::new(
                "memory.psi_some",
                "/proc/pressure/memory",
                e,
            )),
        }
        if let (Some(fa), Some(fb)) = (a.full, b.full)
            && let Ok(p) = super::pressure::stall_pct(fa.total_us, fb.total_us, window_us)
        {
            sat.push(Signal::rated(
                "psi_full",
                p,
                "% of window",
                th.psi_some_pct,
                "/proc/pressure/memory",
            ));
        }
    }
    ResourceReport::new("memory", util, sat, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24576000 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\nBuffers: 1 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nHugePages_Total:       0\n";

    /// Records captured from this machine's /dev/kmsg during a cgroup OOM kill.
    const KMSG: [&str; 3] = [
        "6,560,9352053606,-;Memory cgroup stats for /oncall-oomtest:",
        "6,606,9352053731,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/oncall-oomtest,task_memcg=/oncall-oomtest,task=img-resizer,pid=3615,uid=0",
        "3,607,9352053788,-;Memory cgroup out of memory: Killed process 3615 (img-resizer) total-vm:235032kB, anon-rss:152960kB",
    ];

    #[test]
    fn oom_kills_are_read_from_the_kernel_log_within_the_lookback() {
        let recs: Vec<String> = KMSG.iter().map(|s| s.to_string()).collect();
        let k = parse_kmsg_oom(&recs, 9352.053731 + 60.0, 900.0);
        assert_eq!(k.len(), 1);
        assert_eq!((k[0].name.as_str(), k[0].pid), ("img-resizer", 3615));
        assert_eq!(k[0].memcg, "/oncall-oomtest");
        assert_eq!(k[0].constraint, "CONSTRAINT_MEMCG");
        assert_eq!(k[0].seconds_ago, 60.0);
        assert!(parse_kmsg_oom(&recs, 9352.053731 + 901.0, 900.0).is_empty());
        assert!(parse_kmsg_oom(&["garbage".to_string()], 10.0, 900.0).is_empty());
    }

    #[test]
    fn the_kernel_log_is_readable_as_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: /dev/kmsg needs root");
            return;
        }
        let recs = read_kmsg().expect("root reads /dev/kmsg");
        assert!(!recs.is_empty(), "the kernel log has records");
        assert!(
            recs.iter().all(|r| r.contains(';')),
            "pri,seq,usec,flags;message"
        );
    }

    #[test]
    fn parses_captured_meminfo() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total, 24576000 * 1024);
        assert_eq!(m.available, 22000000 * 1024);
    }

    #[test]
    fn meminfo_missing_field_or_garbage() {
        assert!(
            parse_meminfo("MemTotal: 10 kB\n")
                .unwrap_err()
                .contains("MemAvailable")
        );
        assert!(
            parse_meminfo("MemTotal: ten kB\n")
                .unwrap_err()
                .contains("MemTotal")
        );
        assert!(
            parse_meminfo("MemTotal:\n")
                .unwrap_err()
                .contains("no value")
        );
        assert!(
            parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n")
                .unwrap_err()
                .contains("0")
        );
    }

    #[test]
    fn vmstat_and_cgroup_counters() {
        let v = parse_vmstat("pswpin 1\npswpout 2\npgmajfault 622\noom_kill 3\n").unwrap();
        assert_eq!(v.oom_kill, Some(3));
        let old = parse_vmstat("pswpin 1\npswpout 2\npgmajfault 622\n").unwrap();
        assert_eq!(old.oom_kill, None);
        assert!(parse_vmstat("pswpin 1\n").unwrap_err().contains("pswpout"));
        assert_eq!(
            parse_cgroup_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"),
            Some(7)
        );
        assert_eq!(
            parse_cgroup_oom_kill("low 0\nhigh 0\nmax 0\noom 0\noom_kill 2\n"),
            Some(2)
        );
    }

    #[test]
    fn oom_kill_in_window_is_critical() {
        let th = MemoryThresholds::default();
        let a = VmStat {
            pswpin: 0,
            pswpout: 0,
            pgmajfault: 0,
            oom_kill: Some(1),
        };
        let b = VmStat {
            oom_kill: Some(2),
            ..a
        };
        let mut u = vec![];
        let r = report(
            &MemoryInputs {
                meminfo: parse_meminfo(MEMINFO),
                vmstat: Some((a, b)),
                psi: None,
                cgroup_oom: None,
                recent_oom: None,
                oom_lookback_s: 900.0,
                window_s: 1.0,
            },
            &th,
            &mut u,
        );
        assert_eq!(
            r.signal("oom_kills").unwrap().status,
            super::super::signal::Status::Critical
        );
        assert!(u.is_empty());
    }
}
