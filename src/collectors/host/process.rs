//! Processes: the top consumers of CPU and memory over the window, and the ones whose resident
//! memory grows. Uses sysinfo, refreshed at both ends of the window.

use serde::{Deserialize, Serialize};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

/// One process as the evidence shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub name: String,
    /// CPU over the window, % of one core (400 = four cores busy).
    pub cpu_pct: f64,
    pub rss_mib: f64,
    /// Resident memory change over the window, MiB per second.
    pub rss_growth_mib_per_s: f64,
}

/// One process's disk I/O over the window (bytes that reached the storage layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoUse {
    pub pid: u32,
    pub name: String,
    pub read_mib_per_s: f64,
    pub write_mib_per_s: f64,
}

/// Processes seen in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProcessReport {
    /// How many processes were seen.
    pub count: usize,
    pub top_cpu: Vec<ProcessInfo>,
    pub top_rss: Vec<ProcessInfo>,
    /// Processes whose RSS grew at least the configured rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub growing: Vec<ProcessInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_fds: Vec<super::fd::FdUse>,
    /// Processes doing the most disk I/O in the window (at least 1 MiB/s), busiest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_io: Vec<IoUse>,
    /// Processes the OOM killer killed recently (kernel log), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oom_killed: Vec<super::memory::OomKill>,
}

/// A sysinfo handle that remembers RSS at the start of the window.
pub struct ProcessSampler {
    sys: System,
    rss_before: std::collections::HashMap<u32, u64>,
}

fn kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .with_disk_usage()
}

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
        Ok(ProcessSampler { sys, rss_before })
    }

    /// Ends the window and ranks processes. oncall itself is left out.
    pub fn finish(
        mut self,
        window_s: f64,
        top: usize,
        growth_mib_per_s: f64,
        growth_min_mib: f64,
    ) -> (ProcessReport, Vec<(u32, String)>) {
        self.sys
            .refresh_processes_specifics(ProcessesToUpdate::All, true, kind());
        let me = std::process::id();
        let mib = 1024.0 * 1024.0;
        // One pass over the processes: their CPU and memory, and who did disk I/O.
        let mut all: Vec<ProcessInfo> = vec![];
        let mut top_io: Vec<IoUse> = vec![];
        for (pid, p) in self.sys.processes() {
            if pid.as_u32() == me || p.thread_kind().is_some() {
                continue;
            }
            let before = self
                .rss_before
                .get(&pid.as_u32())
                .copied()
                .unwrap_or(p.memory());
            let info = ProcessInfo {
                pid: pid.as_u32(),
                name: p.name().to_string_lossy().into_owned(),
                cpu_pct: super::signal::round2(p.cpu_usage() as f64),
                rss_mib: super::signal::round2(p.memory() as f64 / mib),
                rss_growth_mib_per_s: super::signal::round2(
                    (p.memory() as f64 - before as f64) / mib / window_s,
                ),
            };
            let d = p.disk_usage();
            let (read, write) = (
                super::signal::round2(d.read_bytes as f64 / mib / window_s),
                super::signal::round2(d.written_bytes as f64 / mib / window_s),
            );
            if read + write >= 1.0 {
                top_io.push(IoUse {
                    pid: info.pid,
                    name: info.name.clone(),
                    read_mib_per_s: read,
                    write_mib_per_s: write,
                });
            }
            all.push(info);
        }
        let names: Vec<(u32, String)> = all.iter().map(|p| (p.pid, p.name.clone())).collect();
        let ranked = |key: fn(&ProcessInfo) -> f64| {
            let mut v = all.clone();
            v.sort_by(|a, b| key(b).total_cmp(&key(a)));
            v.truncate(top);
            v
        };
        let mut growing: Vec<ProcessInfo> = all
            .iter()
            .filter(|p| {
                p.rss_growth_mib_per_s >= growth_mib_per_s
                    && p.rss_growth_mib_per_s * window_s >= growth_min_mib
            })
            .cloned()
            .collect();
        growing.sort_by(|a, b| b.rss_growth_mib_per_s.total_cmp(&a.rss_growth_mib_per_s));
        growing.truncate(top);
        top_io.sort_by(|a, b| {
            (b.read_mib_per_s + b.write_mib_per_s)
                .total_cmp(&(a.read_mib_per_s + a.write_mib_per_s))
        });
        top_io.truncate(top);
        (
            ProcessReport {
                count: all.len(),
                top_cpu: ranked(|p| p.cpu_pct),
                top_rss: ranked(|p| p.rss_mib),
                growing,
                top_fds: vec![],
                top_io,
                oom_killed: vec![],
            },
            names,
        )
    }
}
