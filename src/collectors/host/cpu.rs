//! CPU: utilization per core and total, run queue vs. cores, steal, load, PSI cpu.
//!
//! Reads `/proc/stat` at both ends of the window (jiffy deltas) and its `procs_running` line
//! several times inside it, because one instantaneous run-queue reading is noise.

use super::pressure::Psi;
use super::signal::{ResourceReport, Signal, Unreadable, counter_delta};
use crate::config::CpuThresholds;

/// Jiffies per state for one CPU line of /proc/stat.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
    fn idle_all(&self) -> u64 {
        self.idle + self.iowait
    }
}

/// The parts of /proc/stat the CPU room uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stat {
    pub total: CpuTimes,
    pub cores: Vec<CpuTimes>,
    pub procs_running: u64,
    pub procs_blocked: u64,
}

fn parse_cpu_line(line: &str) -> Result<CpuTimes, String> {
    let mut it = line.split_whitespace();
    let label = it.next().unwrap_or_default();
    let nums: Vec<u64> = it
        .map(|w| {
            w.parse::<u64>()
                .map_err(|e| format!("`{label}` field `{w}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if nums.len() < 8 {
        return Err(format!(
            "`{label}` line has {} fields, expected at least 8",
            nums.len()
        ));
    }
    Ok(CpuTimes {
        user: nums[0],
        nice: nums[1],
        system: nums[2],
        idle: nums[3],
        iowait: nums[4],
        irq: nums[5],
        softirq: nums[6],
        steal: nums[7],
    })
}

/// Parses /proc/stat.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let mut stat = Stat::default();
    let (mut saw_total, mut saw_running) = (false, false);
    for line in text.lines() {
        if line.starts_with("cpu ") {
            stat.total = parse_cpu_line(line)?;
            saw_total = true;
        } else if line.starts_with("cpu") {
            stat.cores.push(parse_cpu_line(line)?);
        } else if let Some(v) = line.strip_prefix("procs_running ") {
            stat.procs_running = v
                .trim()
                .parse()
                .map_err(|e| format!("procs_running `{v}`: {e}"))?;
            saw_running = true;
        } else if let Some(v) = line.strip_prefix("procs_blocked ") {
            stat.procs_blocked = v
                .trim()
                .parse()
                .map_err(|e| format!("procs_blocked `{v}`: {e}"))?;
        }
    }
    if !saw_total {
        return Err("no aggregate `cpu` line".into());
    }
    if !saw_running {
        return Err("no procs_running line".into());
    }
    if stat.cores.is_empty() {
        return Err("no per-core `cpuN` lines".into());
    }
    Ok(stat)
}

/// The `procs_running` and `procs_blocked` lines of /proc/stat: (runnable, in D state), for
/// the in-window samples.
pub fn parse_procs(text: &str) -> Option<(u64, u64)> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((get("procs_running ")?, get("procs_blocked ").unwrap_or(0)))
}

/// oncall's own threads that are runnable now (state `R` in /proc/self/task/*/stat): they are
/// taken out of each run-queue sample, so the measurement does not count itself.
pub fn own_runnable(proc_root: &std::path::Path) -> u64 {
    let Ok(dir) = std::fs::read_dir(proc_root.join("self/task")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|t| t.rsplit_once(") ").map(|(_, rest)| rest.starts_with('R')))
                .unwrap_or(false)
        })
        .count() as u64
}

/// oncall's own CPU time so far, in clock ticks (utime + stime of /proc/self/stat).
pub fn own_ticks(proc_root: &std::path::Path) -> Option<u64> {
    let t = std::fs::read_to_string(proc_root.join("self/stat")).ok()?;
    let (_, rest) = t.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Parses /proc/loadavg: the 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(|w| w.parse::<f64>().map_err(|e| format!("`{w}`: {e}")))
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err(format!("expected 3 load averages, found {}", v.len())),
    }
}

/// Busy % between two readings of one CPU line.
fn busy_pct(a: &CpuTimes, b: &CpuTimes) -> Result<(f64, f64), String> {
    let total = counter_delta("cpu total jiffies", a.total(), b.total())?;
    let idle = counter_delta("cpu idle jiffies", a.idle_all(), b.idle_all())?;
    let steal = counter_delta("cpu steal jiffies", a.steal, b.steal)?;
    if total == 0 {
        return Err("no CPU time passed between the two readings".into());
    }
    let t = total as f64;
    Ok((100.0 * (t - idle as f64) / t, 100.0 * steal as f64 / t))
}

/// Inputs of the CPU report, all from one window.
pub struct CpuInputs<'a> {
    pub before: &'a Stat,
    pub after: &'a Stat,
    /// procs_running sampled across the window.
    pub run_queue: &'a [u64],
    /// procs_blocked (tasks in D state) sampled at the same moments.
    pub blocked: &'a [u64],
    /// CPU ticks oncall itself used during the window (left out of utilization).
    pub own_ticks: u64,
    pub psi: Option<(Psi, Psi)>,
    pub loadavg: Option<[f64; 3]>,
    pub window_us: f64,
}

/// Builds the CPU resource report.
pub fn report(
    inp: &CpuInputs<'_>,
    th: &CpuThresholds,
    unreadable: &mut Vec<Unreadable>,
) -> ResourceReport {
    let cores = inp.after.cores.len().max(1);
    let mut util = Vec::new();
    let mut sat = Vec::new();
    match busy_pct(&inp.before.total, &inp.after.total) {
        Ok((busy, steal)) => {
            // oncall's own work in the window is not load on the host, unless other tasks
            // queued for the cores meanwhile: they would have used those cycles.
            let total = inp
                .after
                .total
                .total()
                .saturating_sub(inp.before.total.total())
                .max(1);
            let queued = !inp.run_queue.is_empty()
                && inp.run_queue.iter().sum::<u64>() as f64 / inp.run_queue.len() as f64
                    >= cores as f64;
            let busy = if queued {
                busy
            } else {
                (busy - 100.0 * inp.own_ticks as f64 / total as f64).max(0.0)
            };
            let per_core: Vec<f64> = inp
                .before
                .cores
                .iter()
                .zip(&inp.after.cores)
                .filter_map(|(a, b)| busy_pct(a, b).ok().map(|(p, _)| p.round()))
                .collect();
            let shown: Vec<String> = per_core
                .iter()
                .take(64)
                .map(|p| format!("{p:.0}"))
                .collect();
            util.push(
                Signal::rated("utilization", busy, "%", th.utilization_pct, "/proc/stat")
                    .with_note(format!("per core: {}", shown.join(","))),
            );
            let max_core = per_core.iter().cloned().fold(0.0, f64::max);
            util.push(Signal::info("busiest_core", max_core, "%", "/proc/stat"));
            if let (Ok(total), Ok(iowait)) = (
                counter_delta(
                    "cpu total jiffies",
                    inp.before.total.total(),
                    inp.after.total.total(),
                ),
                counter_delta(
                    "cpu iowait jiffies",
                    inp.before.total.iowait,
                    inp.after.total.iowait,
                ),
            ) && total > 0
            {
                // Idle time with I/O outstanding: the cores wait on the disks, not the reverse.
                util.push(Signal::info(
                    "iowait",
                    100.0 * iowait as f64 / total as f64,
                    "%",
                    "/proc/stat",
                ));
            }
            sat.push(Signal::rated(
                "steal",
                steal,
                "%",
                th.steal_pct,
                "/proc/stat",
            ));
        }
        Err(e) => unreadable.push(Unreadable::new("cpu.utilization", "/proc/stat", e)),
    }
    if inp.run_queue.is_empty() {
        unreadable.push(Unreadable::new(
            "cpu.run_queue",
            "/proc/stat",
            "no procs_running sample",
        ));
    } else {
        let mean = inp.run_queue.iter().sum::<u64>() as f64 / inp.run_queue.len() as f64;
        sat.push(
            Signal::rated("run_queue_per_core", mean / cores as f64, "threads/core", th.run_queue_per_core, "/proc/stat")
                .with_note(format!(
                    "{mean:.1} runnable on {cores} cores (mean of {} samples, oncall's own threads left out)",
                    inp.run_queue.len()
                )),
        );
    }
    if !inp.blocked.is_empty() {
        let mean = inp.blocked.iter().sum::<u64>() as f64 / inp.blocked.len() as f64;
        sat.push(
            Signal::info("blocked_tasks", mean, "tasks in D state", "/proc/stat").with_note(
                "mean of the samples: tasks in uninterruptible sleep, mostly waiting on I/O; they are not waiting for a CPU",
            ),
        );
    }
    if let Some((a, b)) = &inp.psi {
        match super::pressure::stall_pct(a.some.total_us, b.some.total_us, inp.window_us) {
            Ok(p) => sat.push(
                Signal::rated(
                    "psi_some",
                    p,
                    "% of window",
                    th.psi_some_pct,
                    "/proc/pressure/cpu",
                )
                .with_note(format!("avg10 {:.1}%", b.some.avg10)),
            ),
            Err(e) => unreadable.push(Unreadable::new("cpu.psi_some", "/proc/pressure/cpu", e)),
        }
    }
    if let Some([l1, l5, l15]) = inp.loadavg {
        sat.push(
            Signal::info(
                "load1_per_core",
                l1 / cores as f64,
                "threads/core",
                "/proc/loadavg",
            )
            .with_note(format!("load {l1:.2} {l5:.2} {l15:.2} on {cores} cores")),
        );
    }
    ResourceReport::new("cpu", util, sat, vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335250 34025 452327 13441434 5016 0 2612 0 23914 0
intr 1 2 3
ctxt 1990473
btime 1062191376
processes 2915
procs_running 3
procs_blocked 1
";

    #[test]
    fn parses_captured_stat() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.cores.len(), 2);
        assert_eq!(s.total.idle, 46828483);
        assert_eq!(s.procs_running, 3);
        assert_eq!(s.procs_blocked, 1);
        assert_eq!(parse_procs(STAT), Some((3, 1)));
    }

    #[test]
    fn malformed_stat_is_a_clear_error() {
        assert!(parse_stat("").unwrap_err().contains("cpu"));
        assert!(
            parse_stat("cpu  1 2 3\n")
                .unwrap_err()
                .contains("expected at least 8")
        );
        assert!(
            parse_stat("cpu  1 2 3 4 5 6 7 x\n")
                .unwrap_err()
                .contains("`x`")
        );
        let truncated = &STAT[..STAT.find("procs_running").unwrap()];
        assert!(parse_stat(truncated).unwrap_err().contains("procs_running"));
    }

    #[test]
    fn utilization_and_wrapped_counters() {
        let a = parse_stat(STAT).unwrap();
        let mut b = a.clone();
        b.total.user += 150;
        b.total.idle += 50;
        for c in &mut b.cores {
            c.user += 75;
            c.idle += 25;
        }
        let th = CpuThresholds::default();
        let mut unread = vec![];
        let r = report(
            &CpuInputs {
                before: &a,
                after: &b,
                run_queue: &[5, 5],
                blocked: &[1, 1],
                own_ticks: 0,
                psi: None,
                loadavg: Some([4.0, 2.0, 1.0]),
                window_us: 1e6,
            },
            &th,
            &mut unread,
        );
        assert!(unread.is_empty());
        assert_eq!(r.signal("utilization").unwrap().value, 75.0);
        assert_eq!(r.signal("run_queue_per_core").unwrap().value, 2.5);
        assert_eq!(r.status, super::super::signal::Status::Critical);
        // A counter that went backwards yields an unreadable signal, not a bogus number.
        let mut c = a.clone();
        c.total.user -= 1000;
        let mut unread = vec![];
        let r = report(
            &CpuInputs {
                before: &a,
                after: &c,
                run_queue: &[],
                blocked: &[],
                own_ticks: 0,
                psi: None,
                loadavg: None,
                window_us: 1e6,
            },
            &th,
            &mut unread,
        );
        assert!(r.signal("utilization").is_none());
        assert_eq!(unread.len(), 2);
        assert!(unread[0].why.contains("backwards"));
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("0.82 0.49 0.19 1/79 4860\n").unwrap(),
            [0.82, 0.49, 0.19]
        );
        assert!(parse_loadavg("0.82").is_err());
    }
}
