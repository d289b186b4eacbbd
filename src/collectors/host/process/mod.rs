//! Processes: the top consumers of CPU, memory, disk I/O and descriptors over the window, the
//! ones whose resident memory grows, and the same totals per program ([`ProgramGroup`]), named
//! the way an operator names it ([`super::identity`]).
//!
//! sysinfo reads CPU, memory and I/O counters at both ends of the window. A side thread, started
//! with the window, reads what sysinfo does not (executable, command line, cgroup, threads,
//! descriptors, limits, and a mid-window RSS) while the main thread samples the run queue, so
//! the extra reads cost no wall time. Where memory growth is too sparse to judge in one window,
//! the few growing processes alone are sampled a little longer ([`Sampling::extend`]).

mod facts;
mod group;
mod sampler;

use super::identity;
use serde::{Deserialize, Serialize};

pub use facts::{ProcFacts, read_facts};
pub use sampler::{ProcessSampler, Sampling};

/// One process as the evidence shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The kernel's name (`comm`: at most 15 bytes, and a process may rename itself).
    pub name: String,
    /// CPU over the window, % of one core (400 = four cores busy).
    pub cpu_pct: f64,
    pub rss_mib: f64,
    /// Resident memory change over the window, MiB per second.
    pub rss_growth_mib_per_s: f64,
    /// The program, as an operator names it: the full executable name, or for an interpreter
    /// the script, module, jar or main class it runs (empty in snapshots from before it existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub program: String,
}

impl ProcessInfo {
    /// The program's name where known, else the kernel's.
    pub fn program(&self) -> &str {
        if self.program.is_empty() {
            &self.name
        } else {
            &self.program
        }
    }

    /// How to name this process in a sentence: the program, with the kernel's name beside it
    /// when that is not just a cut or an interpreter of it (`oncall-fault (as ledger-sync)`).
    pub fn label(&self) -> String {
        label(self.program(), std::slice::from_ref(&self.name))
    }
}

/// `program`, with the kernel names that add something (a run-time rename) beside it.
pub fn label(program: &str, comms: &[String]) -> String {
    let extra: Vec<&str> = comms
        .iter()
        .map(String::as_str)
        .filter(|c| !c.is_empty() && !program.starts_with(c) && !is_runtime_comm(c))
        .take(3)
        .collect();
    if extra.is_empty() {
        program.to_string()
    } else {
        format!("{program} (as {})", extra.join(", "))
    }
}

fn is_runtime_comm(c: &str) -> bool {
    let b = c.trim_end_matches(|x: char| x.is_ascii_digit() || x == '.');
    matches!(
        b,
        "python" | "node" | "java" | "ruby" | "perl" | "php" | "bash" | "sh" | "dash"
    )
}

/// One process's disk I/O over the window (bytes that reached the storage layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoUse {
    pub pid: u32,
    pub name: String,
    pub read_mib_per_s: f64,
    pub write_mib_per_s: f64,
}

/// The nearest memory limit of a growing program and the time until its growth reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemLimit {
    /// `host` (MemAvailable), `cgroup <path>` (its memory limit) or `RLIMIT_AS` (address space).
    pub kind: String,
    /// Room left before the limit, MiB.
    pub headroom_mib: f64,
    /// Seconds until the growth rate fills that room.
    pub seconds_left: f64,
}

/// The processes of one program, summed: how an operator sees a pool of workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramGroup {
    /// The program (see [`ProcessInfo::program`]).
    pub program: String,
    /// Kernel names its processes use when they differ from the program (renamed or cut).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comms: Vec<String>,
    /// The executable's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The systemd unit or container the processes belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub processes: usize,
    /// Up to five pids, busiest first.
    pub pids: Vec<u32>,
    pub threads: u64,
    /// % of one core, summed over its processes.
    pub cpu_pct: f64,
    pub rss_mib: f64,
    pub rss_growth_mib_per_s: f64,
    /// Growth that went on through the whole (possibly extended) look, not one burst.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub steady_growth: bool,
    pub read_mib_per_s: f64,
    pub write_mib_per_s: f64,
    /// Open file descriptors, summed.
    pub fds: u64,
    /// For a growing program: the nearest memory limit and when the growth reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<MemLimit>,
    /// For a busy program: the CPU quota of its cgroup, and how often it throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<identity::CpuQuota>,
}

impl ProgramGroup {
    /// The program, with run-time renames beside it.
    pub fn label(&self) -> String {
        label(&self.program, &self.comms)
    }

    /// How the group is described in a sentence: label, pool size and pids, unit.
    pub fn describe(&self) -> String {
        let pids: Vec<String> = self.pids.iter().map(u32::to_string).collect();
        let who = if self.processes > 1 {
            format!(
                "{} ({} processes, pids {}{})",
                self.label(),
                self.processes,
                pids.join(", "),
                if self.processes > pids.len() {
                    ", ..."
                } else {
                    ""
                }
            )
        } else {
            format!("{} (pid {})", self.label(), pids.join(", "))
        };
        match &self.unit {
            Some(u) => format!("{who} in {u}"),
            None => who,
        }
    }
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
    /// Per program: the busiest by CPU, then any other that grows or does I/O.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ProgramGroup>,
    /// Tasks in uninterruptible sleep (D state, mostly waiting on I/O), sampled across the
    /// window, with the programs they belong to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockedTasks>,
}

/// Tasks of one program seen in D state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockedTasks {
    pub program: String,
    /// Tasks (threads) in D state at the sample.
    pub tasks: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_show_a_rename_but_not_a_cut_or_an_interpreter() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            label("inventory-reconciliation-worker", &s(&["inventory-recon"])),
            "inventory-reconciliation-worker"
        );
        assert_eq!(
            label("fraud_score_batch.py", &s(&["python3"])),
            "fraud_score_batch.py"
        );
        assert_eq!(
            label("fraud_score_batch.py", &s(&["wrk-0", "wrk-1"])),
            "fraud_score_batch.py (as wrk-0, wrk-1)"
        );
    }
}
