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

/// Inputs of the memory report.
pub struct MemoryInputs {
    pub meminfo: Result<MemInfo, String>,
    pub vmstat: Option<(VmStat, VmStat)>,
    pub psi: Option<(Psi, Psi)>,
    /// (source, oom kills counted by the root cgroup) where readable.
    pub cgroup_oom: Option<(String, u64)>,
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
