//! The sysinfo reads at both ends of the window, the longer look at processes whose memory
//! grows, and the ranking of processes by CPU, memory, growth, I/O and descriptors.

use super::facts::ProcFacts;
use super::group::group;
use super::{BlockedTasks, IoUse, ProcessInfo, ProcessReport};
use crate::collectors::host::fd::FdUse;
use crate::collectors::host::signal::round2;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

/// How processes are ranked and how long sparse growth is followed.
pub struct Sampling<'a> {
    pub top: usize,
    pub growth_mib_per_s: f64,
    pub growth_min_mib: f64,
    /// The extra look at processes whose growth is too sparse to judge in the window.
    pub extend: Duration,
    pub proc_root: &'a Path,
    pub cgroup_root: PathBuf,
    /// Host memory (total, available), bytes, for the time to the limit.
    pub host_memory: Option<(u64, u64)>,
}

/// A sysinfo handle that remembers RSS at the start of the window.
pub struct ProcessSampler {
    sys: System,
    rss_before: HashMap<u32, u64>,
    t0: Instant,
}

fn kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .with_disk_usage()
}

/// RSS of one process now, bytes (`VmRSS` of /proc/<pid>/status).
fn rss_now(proc_root: &Path, pid: u32) -> Option<u64> {
    let t = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    let kib: u64 = t
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Least-squares slope of (seconds, bytes) points in MiB/s, and whether the growth was steady:
/// no step shrank by more than 1 MiB and most steps grew.
fn trend(points: &[(f64, u64)]) -> (f64, bool) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (0.0, false);
    }
    let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mr = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, r) in points {
        num += (t - mt) * (*r as f64 - mr);
        den += (t - mt) * (t - mt);
    }
    let slope = if den > 0.0 { num / den / MIB } else { 0.0 };
    let steps: Vec<f64> = points
        .windows(2)
        .map(|w| w[1].1 as f64 - w[0].1 as f64)
        .collect();
    let grew = steps.iter().filter(|d| **d > 0.0).count();
    let steady =
        steps.iter().all(|d| *d > -MIB) && grew * 10 >= steps.len() * 6 && steps.len() >= 3;
    (slope, steady)
}

pub(super) const MIB: f64 = 1024.0 * 1024.0;

impl ProcessSampler {
    /// Starts the window: first reading of every process.
    pub fn start() -> Result<ProcessSampler, String> {
        let mut sys = System::new().map_err(|e| format!("sysinfo unavailable: {e}"))?;
        sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind());
        let rss_before = sys
            .processes()
            .iter()
            .map(|(pid, p)| (pid.as_u32(), p.memory()))
            .collect();
        Ok(ProcessSampler {
            sys,
            rss_before,
            t0: Instant::now(),
        })
    }

    /// Ends the window and ranks processes and programs. oncall itself is left out.
    pub fn finish(
        mut self,
        window_s: f64,
        facts: &HashMap<u32, ProcFacts>,
        s: &Sampling<'_>,
    ) -> ProcessReport {
        self.sys
            .refresh_processes_specifics(ProcessesToUpdate::All, true, kind());
        let t_end = Instant::now();
        let me = std::process::id();
        let top = s.top;
        // One pass over the processes: their CPU and memory, and who did disk I/O.
        let mut all: Vec<ProcessInfo> = vec![];
        let mut io: HashMap<u32, (f64, f64)> = HashMap::new();
        let mut points: HashMap<u32, Vec<(f64, u64)>> = HashMap::new();
        for (pid, p) in self.sys.processes() {
            let pid = pid.as_u32();
            if pid == me || p.thread_kind().is_some() {
                continue;
            }
            let before = self.rss_before.get(&pid).copied().unwrap_or(p.memory());
            let f = facts.get(&pid);
            let info = ProcessInfo {
                pid,
                name: p.name().to_string_lossy().into_owned(),
                cpu_pct: round2(p.cpu_usage() as f64),
                rss_mib: round2(p.memory() as f64 / MIB),
                rss_growth_mib_per_s: round2((p.memory() as f64 - before as f64) / MIB / window_s),
                program: f.map(|f| f.program.clone()).unwrap_or_default(),
            };
            let d = p.disk_usage();
            let (read, write) = (
                round2(d.read_bytes as f64 / MIB / window_s),
                round2(d.written_bytes as f64 / MIB / window_s),
            );
            if read + write > 0.0 {
                io.insert(pid, (read, write));
            }
            let mut pts = vec![(0.0, before)];
            if let Some((at, rss)) = f.and_then(|f| f.rss_mid) {
                pts.push((at.saturating_duration_since(self.t0).as_secs_f64(), rss));
            }
            pts.push((
                t_end.saturating_duration_since(self.t0).as_secs_f64(),
                p.memory(),
            ));
            points.insert(pid, pts);
            all.push(info);
        }
        // Sparse growth: follow the few processes that grew a little longer, so that a steady
        // leak is told from a burst and a low rate is measured over enough time.
        let mut candidates: Vec<&ProcessInfo> = all
            .iter()
            .filter(|p| p.rss_growth_mib_per_s >= s.growth_mib_per_s / 2.0)
            .collect();
        candidates.sort_by(|a, b| b.rss_growth_mib_per_s.total_cmp(&a.rss_growth_mib_per_s));
        candidates.truncate(top.max(3));
        let followed: Vec<u32> = candidates.iter().map(|p| p.pid).collect();
        if !followed.is_empty() && !s.extend.is_zero() {
            let steps = 3u32;
            for _ in 0..steps {
                std::thread::sleep(s.extend / steps);
                let at = self.t0.elapsed().as_secs_f64();
                for pid in &followed {
                    if let (Some(r), Some(pts)) = (rss_now(s.proc_root, *pid), points.get_mut(pid))
                    {
                        pts.push((at, r));
                    }
                }
            }
        }
        let mut steady: HashMap<u32, bool> = HashMap::new();
        for p in all.iter_mut() {
            if let Some(pts) = points.get(&p.pid).filter(|_| followed.contains(&p.pid)) {
                let (slope, st) = trend(pts);
                let span_mib = (pts.last().map(|x| x.1).unwrap_or(0) as f64
                    - pts.first().map(|x| x.1).unwrap_or(0) as f64)
                    / MIB;
                p.rss_growth_mib_per_s = round2(slope);
                p.rss_mib = round2(pts.last().map(|x| x.1 as f64 / MIB).unwrap_or(p.rss_mib));
                steady.insert(p.pid, st && span_mib >= s.growth_min_mib);
            }
        }
        let ranked = |key: fn(&ProcessInfo) -> f64| {
            let mut v = all.clone();
            v.sort_by(|a, b| key(b).total_cmp(&key(a)));
            v.truncate(top);
            v
        };
        let mut growing: Vec<ProcessInfo> = all
            .iter()
            .filter(|p| {
                p.rss_growth_mib_per_s >= s.growth_mib_per_s
                    && steady.get(&p.pid).copied().unwrap_or(false)
            })
            .cloned()
            .collect();
        growing.sort_by(|a, b| b.rss_growth_mib_per_s.total_cmp(&a.rss_growth_mib_per_s));
        growing.truncate(top);
        let mut top_io: Vec<IoUse> = all
            .iter()
            .filter_map(|p| {
                let (r, w) = io.get(&p.pid)?;
                (r + w >= 1.0).then(|| IoUse {
                    pid: p.pid,
                    name: p.name.clone(),
                    read_mib_per_s: *r,
                    write_mib_per_s: *w,
                })
            })
            .collect();
        top_io.sort_by(|a, b| {
            (b.read_mib_per_s + b.write_mib_per_s)
                .total_cmp(&(a.read_mib_per_s + a.write_mib_per_s))
        });
        top_io.truncate(top);
        let mut top_fds: Vec<FdUse> = all
            .iter()
            .filter_map(|p| facts.get(&p.pid)?.fd.clone())
            .collect();
        top_fds.sort_by(|a, b| b.used_pct.total_cmp(&a.used_pct));
        top_fds.truncate(top);
        let groups = group(&all, facts, &io, &steady, s);
        let mut blocked: HashMap<String, u32> = HashMap::new();
        for f in facts.values().filter(|f| f.blocked) {
            *blocked.entry(f.program.clone()).or_default() += 1;
        }
        let mut blocked: Vec<BlockedTasks> = blocked
            .into_iter()
            .map(|(program, tasks)| BlockedTasks { program, tasks })
            .collect();
        blocked.sort_by(|a, b| b.tasks.cmp(&a.tasks).then(a.program.cmp(&b.program)));
        blocked.truncate(top);
        ProcessReport {
            count: all.len(),
            top_cpu: ranked(|p| p.cpu_pct),
            top_rss: ranked(|p| p.rss_mib),
            growing,
            top_fds,
            top_io,
            oom_killed: vec![],
            groups,
            blocked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_leak_is_told_from_a_burst() {
        let m = |x: f64| (x * MIB) as u64;
        let leak = [
            (0.0, m(100.0)),
            (0.15, m(106.0)),
            (0.3, m(112.0)),
            (0.45, m(118.0)),
            (0.6, m(124.0)),
        ];
        let (rate, steady) = trend(&leak);
        assert!((rate - 40.0).abs() < 0.5, "{rate}");
        assert!(steady);
        let burst = [
            (0.0, m(100.0)),
            (0.15, m(160.0)),
            (0.3, m(160.0)),
            (0.45, m(160.0)),
            (0.6, m(160.0)),
        ];
        assert!(!trend(&burst).1);
        let shrinking = [
            (0.0, m(100.0)),
            (0.15, m(110.0)),
            (0.3, m(90.0)),
            (0.45, m(120.0)),
        ];
        assert!(!trend(&shrinking).1);
    }
}
