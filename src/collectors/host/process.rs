//! Processes: the top consumers of CPU, memory, disk I/O and descriptors over the window, the
//! ones whose resident memory grows, and the same totals per program ([`ProgramGroup`]), named
//! the way an operator names it ([`super::identity`]).
//!
//! sysinfo reads CPU, memory and I/O counters at both ends of the window. A side thread, started
//! with the window, reads what sysinfo does not (executable, command line, cgroup, threads,
//! descriptors, limits, and a mid-window RSS) while the main thread samples the run queue, so
//! the extra reads cost no wall time. Where memory growth is too sparse to judge in one window,
//! the few growing processes alone are sampled a little longer ([`Sampling::extend`]).

use super::fd::{self, FdUse};
use super::identity;
use super::signal::round2;
use crate::config::FdThresholds;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

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

/// What the side thread read of one process.
#[derive(Debug, Clone, Default)]
pub struct ProcFacts {
    pub comm: String,
    pub program: String,
    /// The parent's pid.
    pub ppid: u32,
    /// The command line's arguments with digits folded, so the workers of one pool (`--id 3`,
    /// `--id 4`) share it while different invocations of one binary do not.
    pub args: String,
    pub exe: Option<String>,
    pub unit: Option<String>,
    pub cgroup: String,
    pub threads: u64,
    pub fd: Option<FdUse>,
    pub limits: String,
    /// (when, RSS bytes) read in the middle of the window.
    pub rss_mid: Option<(Instant, u64)>,
    /// Whether the process was in D state at the read.
    pub blocked: bool,
}

impl ProcFacts {
    /// The program, with its kernel name beside it when that is a run-time rename.
    pub fn label(&self) -> String {
        label(&self.program, std::slice::from_ref(&self.comm))
    }
}

/// Reads [`ProcFacts`] of every process under `proc_root` (run in a side thread during the
/// window). Unreadable processes (gone, or not ours) are left out.
pub fn read_facts(proc_root: &Path, fd_th: &FdThresholds) -> HashMap<u32, ProcFacts> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for e in dir.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Some(f) = facts_of(&e.path(), pid, fd_th) {
            out.insert(pid, f);
        }
    }
    // A worker started by its runtime (`python -c "...spawn_main..."`, `node -e`) is the
    // program of the parent that started it.
    let generic: Vec<u32> = out
        .iter()
        .filter(|(_, f)| identity::is_generic(&f.program))
        .map(|(pid, _)| *pid)
        .collect();
    for pid in generic {
        let mut at = pid;
        for _ in 0..3 {
            let Some(parent) = out
                .get(&at)
                .map(|f| f.ppid)
                .and_then(|pp| out.get(&pp).map(|f| (pp, f)))
            else {
                break;
            };
            if !identity::is_generic(&parent.1.program) {
                let (program, args) = (parent.1.program.clone(), parent.1.args.clone());
                if let Some(f) = out.get_mut(&pid) {
                    f.program = program;
                    f.args = args;
                }
                break;
            }
            at = parent.0;
        }
    }
    out
}

/// The arguments of a command line with every run of digits folded to `#`, at most 160 bytes.
fn fold_args(argv: &[String]) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in argv
        .iter()
        .skip(1)
        .flat_map(|a| a.chars().chain(std::iter::once(' ')))
    {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
        if out.len() >= 160 {
            break;
        }
    }
    out
}

fn facts_of(dir: &Path, pid: u32, fd_th: &FdThresholds) -> Option<ProcFacts> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(str::trim)
    };
    let comm = field("Name").unwrap_or_default().to_string();
    // Kernel threads have no memory map and no command line: name them as the kernel does.
    let argv: Vec<String> = std::fs::read(dir.join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let program = identity::program_name(&comm, exe.as_deref(), &argv);
    let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    let limits = std::fs::read_to_string(dir.join("limits")).unwrap_or_default();
    let rss_kib = field("VmRSS")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let fd = fd::fd_use_with_limits(dir, pid, &comm, &limits, fd_th).map(|mut f| {
        f.program = program.clone();
        f
    });
    Some(ProcFacts {
        ppid: field("PPid").and_then(|p| p.parse().ok()).unwrap_or(0),
        args: fold_args(&argv),
        unit: identity::unit_of(&cgroup),
        threads: field("Threads").and_then(|t| t.parse().ok()).unwrap_or(1),
        blocked: field("State").is_some_and(|s| s.starts_with('D')),
        rss_mid: (!argv.is_empty()).then(|| (Instant::now(), rss_kib * 1024)),
        comm,
        program,
        exe,
        cgroup,
        fd,
        limits,
    })
}

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

const MIB: f64 = 1024.0 * 1024.0;

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

/// A group being summed, with (weight, pid) of its processes for ranking the pids.
type GroupAcc = (ProgramGroup, Vec<(f64, u32)>);

/// Sums processes per program; keeps the busiest by CPU and any that grows, does I/O or holds
/// the most descriptors.
fn group(
    all: &[ProcessInfo],
    facts: &HashMap<u32, ProcFacts>,
    io: &HashMap<u32, (f64, f64)>,
    steady: &HashMap<u32, bool>,
    s: &Sampling<'_>,
) -> Vec<ProgramGroup> {
    // One group per program and invocation: a pool shares its command line (digits aside);
    // two services that happen to run one binary with other arguments do not.
    let mut by: HashMap<(String, String), GroupAcc> = HashMap::new();
    for p in all {
        let f = facts.get(&p.pid);
        let key = (
            p.program().to_string(),
            f.map(|f| f.args.clone()).unwrap_or_default(),
        );
        let entry = by.entry(key).or_insert_with(|| {
            (
                ProgramGroup {
                    program: p.program().to_string(),
                    comms: vec![],
                    exe: f.and_then(|f| f.exe.clone()),
                    unit: None,
                    processes: 0,
                    pids: vec![],
                    threads: 0,
                    cpu_pct: 0.0,
                    rss_mib: 0.0,
                    rss_growth_mib_per_s: 0.0,
                    steady_growth: false,
                    read_mib_per_s: 0.0,
                    write_mib_per_s: 0.0,
                    fds: 0,
                    limit: None,
                    cpu_quota: None,
                },
                vec![],
            )
        });
        let g = &mut entry.0;
        g.processes += 1;
        g.cpu_pct += p.cpu_pct;
        g.rss_mib += p.rss_mib;
        g.rss_growth_mib_per_s += p.rss_growth_mib_per_s;
        g.steady_growth |= steady.get(&p.pid).copied().unwrap_or(false);
        if let Some((r, w)) = io.get(&p.pid) {
            g.read_mib_per_s += r;
            g.write_mib_per_s += w;
        }
        if !p.name.is_empty() && !g.comms.contains(&p.name) && p.name != g.program {
            g.comms.push(p.name.clone());
        }
        if let Some(f) = f {
            g.threads += f.threads;
            g.fds += f.fd.as_ref().map(|d| d.open).unwrap_or(0);
            if g.unit.is_none() {
                g.unit = f.unit.clone();
            }
        }
        entry
            .1
            .push((p.cpu_pct + p.rss_growth_mib_per_s.max(0.0), p.pid));
    }
    let mut groups: Vec<ProgramGroup> = by
        .into_values()
        .map(|(mut g, mut pids)| {
            pids.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            g.pids = pids.iter().take(5).map(|p| p.1).collect();
            g.comms.sort();
            g.comms.truncate(4);
            g.cpu_pct = round2(g.cpu_pct);
            g.rss_mib = round2(g.rss_mib);
            g.rss_growth_mib_per_s = round2(g.rss_growth_mib_per_s);
            g.read_mib_per_s = round2(g.read_mib_per_s);
            g.write_mib_per_s = round2(g.write_mib_per_s);
            g
        })
        .collect();
    groups.sort_by(|a, b| {
        b.cpu_pct
            .total_cmp(&a.cpu_pct)
            .then(a.program.cmp(&b.program))
    });
    let top = s.top;
    let mut keep: Vec<ProgramGroup> = vec![];
    let take = |g: &ProgramGroup, keep: &mut Vec<ProgramGroup>| {
        if !keep.iter().any(|k| k == g) {
            keep.push(g.clone());
        }
    };
    for g in groups.iter().take(top) {
        take(g, &mut keep);
    }
    let mut growers: Vec<&ProgramGroup> = groups
        .iter()
        .filter(|g| g.rss_growth_mib_per_s >= s.growth_mib_per_s && g.steady_growth)
        .collect();
    growers.sort_by(|a, b| b.rss_growth_mib_per_s.total_cmp(&a.rss_growth_mib_per_s));
    let mut io_heavy: Vec<&ProgramGroup> = groups
        .iter()
        .filter(|g| g.read_mib_per_s + g.write_mib_per_s >= 1.0)
        .collect();
    io_heavy.sort_by(|a, b| {
        (b.read_mib_per_s + b.write_mib_per_s).total_cmp(&(a.read_mib_per_s + a.write_mib_per_s))
    });
    let mut fd_heavy: Vec<&ProgramGroup> = groups.iter().filter(|g| g.fds >= 64).collect();
    fd_heavy.sort_by_key(|g| std::cmp::Reverse(g.fds));
    for g in growers
        .into_iter()
        .take(top)
        .chain(io_heavy.into_iter().take(top))
        .chain(fd_heavy.into_iter().take(2))
    {
        take(g, &mut keep);
    }
    for g in keep
        .iter_mut()
        .filter(|g| g.steady_growth && g.rss_growth_mib_per_s > 0.0)
    {
        g.limit = nearest_limit(g, facts, s);
    }
    // A busy program may be held back by its cgroup's CPU quota, whatever the host has free.
    for g in keep.iter_mut().filter(|g| g.cpu_pct >= 5.0) {
        g.cpu_quota = g
            .pids
            .first()
            .and_then(|pid| facts.get(pid))
            .and_then(|f| identity::cpu_quota(&s.cgroup_root, &f.cgroup));
    }
    keep
}

/// The nearest memory limit of a growing program: the host's available memory, its cgroup's
/// limit, or its address-space limit, whichever its growth reaches first.
fn nearest_limit(
    g: &ProgramGroup,
    facts: &HashMap<u32, ProcFacts>,
    s: &Sampling<'_>,
) -> Option<MemLimit> {
    let rate = g.rss_growth_mib_per_s;
    let mut limits: Vec<(String, f64)> = vec![];
    if let Some((total, avail)) = s.host_memory {
        limits.push(("host memory".into(), avail as f64 / MIB));
        for pid in &g.pids {
            let Some(f) = facts.get(pid) else { continue };
            if let Some((path, max, cur)) = identity::memory_limit(&s.cgroup_root, &f.cgroup, total)
            {
                limits.push((
                    format!("cgroup {path} limit"),
                    (max.saturating_sub(cur)) as f64 / MIB,
                ));
                break;
            }
        }
    }
    for pid in &g.pids {
        let Some(f) = facts.get(pid) else { continue };
        if let Some(lim) = identity::soft_limit(&f.limits, "Max address space") {
            let vm = std::fs::read_to_string(s.proc_root.join(pid.to_string()).join("status"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("VmSize:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                })
                .unwrap_or(0)
                * 1024;
            limits.push(("RLIMIT_AS".into(), lim.saturating_sub(vm) as f64 / MIB));
            break;
        }
    }
    let (kind, headroom) = limits.into_iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(MemLimit {
        kind,
        headroom_mib: round2(headroom),
        seconds_left: round2(headroom / rate.max(0.001)),
    })
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
