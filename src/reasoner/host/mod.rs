//! USE-method rules over a `host.use_snapshot`: one verdict per host category.
//!
//! Weights encode how decisive a signal is: a critical saturation signal nearly settles a
//! hypothesis (0.9), a warning leans (0.5), busy-but-not-saturated barely moves it (0.25, which
//! keeps a busy but healthy machine below the finding threshold), and every signal of a category
//! being normal speaks strongly against it (0.9).
//!
//! One file per resource (`cpu`, `memory`, `disk`, `network`, `fd`); the signal helpers they share
//! and [`judge`], which picks the rule for a category, live here.

mod cpu;
mod disk;
mod fd;
mod memory;
mod network;

use crate::agent::board::{Culprit, Strength};
use crate::collectors::outputs::ProgramGroup;
use crate::collectors::outputs::{ProcessInfo, UseSnapshot};
use crate::collectors::outputs::{ResourceReport, Signal, Status};
use crate::config::Thresholds;
use crate::taxonomy::Category;
use cpu::cpu;
use disk::{disk_full, disk_io};
use fd::fds;
use memory::memory;
use network::network;

/// The categories these rules decide.
pub const COVERS: [Category; 6] = [
    Category::HostCpuSaturation,
    Category::HostMemoryPressure,
    Category::HostDiskIoSaturation,
    Category::HostDiskFull,
    Category::HostNetworkErrors,
    Category::HostFdExhaustion,
];

/// A short title for the debug log.
pub fn title(c: Category) -> &'static str {
    match c {
        Category::HostCpuSaturation => "CPU saturation",
        Category::HostMemoryPressure => "Memory pressure or growth",
        Category::HostDiskIoSaturation => "Disk I/O saturation",
        Category::HostDiskFull => "Filesystem full",
        Category::HostNetworkErrors => "Network errors",
        Category::HostFdExhaustion => "File descriptor exhaustion",
        _ => "Other",
    }
}

/// What the rules concluded for one category.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub statement: String,
    pub component: String,
    pub culprit: Option<Culprit>,
    pub supports: bool,
    pub strength: Strength,
    /// The numbers that decided it.
    pub note: String,
}

/// Why a category could not be judged (its signals were unreadable).
pub type Untested = String;

fn sig<'a>(r: &'a ResourceReport, m: &str) -> Option<&'a Signal> {
    r.signal(m)
}

fn st(s: Option<&Signal>) -> Status {
    s.map(|s| s.status).unwrap_or(Status::Normal)
}

fn val(s: Option<&Signal>) -> f64 {
    s.map(|s| s.value).unwrap_or(0.0)
}

fn culprit(p: &ProcessInfo) -> Culprit {
    Culprit {
        pid: Some(p.pid),
        name: p.name.clone(),
    }
}

fn against(statement: String, component: &str, note: String) -> Verdict {
    Verdict {
        statement,
        component: component.into(),
        culprit: None,
        supports: false,
        strength: Strength::Strong,
        note,
    }
}

/// What the report says, as far as the host rules weigh it: an event's relevance depends on it.
#[derive(Debug, Clone, Default)]
pub struct Report<'a> {
    /// The report, as written.
    pub text: &'a str,
    /// The resource categories it points at.
    pub suspects: &'a [Category],
}

impl Report<'_> {
    /// Whether the report is about memory, or about processes dying or restarting.
    fn about_memory_or_deaths(&self) -> bool {
        let low = self.text.to_lowercase();
        self.suspects.contains(&Category::HostMemoryPressure)
            || [
                "killed", "crash", "restart", "died", "dying", "exit 137", "oom", "reboot", "evict",
            ]
            .iter()
            .any(|w| low.contains(w))
    }
}

/// Judges one category on one snapshot.
pub fn judge(
    c: Category,
    s: &UseSnapshot,
    th: &Thresholds,
    report: &Report<'_>,
) -> Result<Verdict, Untested> {
    match c {
        Category::HostCpuSaturation => cpu(s, th),
        Category::HostMemoryPressure => memory(s, th, report),
        Category::HostDiskIoSaturation => disk_io(s),
        Category::HostDiskFull => disk_full(s),
        Category::HostNetworkErrors => network(s),
        Category::HostFdExhaustion => fds(s),
        other => Err(format!("{other} is not a host category")),
    }
}

fn unreadable(s: &UseSnapshot, prefix: &str) -> String {
    let why: Vec<String> = s
        .unreadable
        .iter()
        .filter(|u| u.signal.starts_with(prefix))
        .map(|u| format!("{}: {}", u.source, u.why))
        .collect();
    if why.is_empty() {
        format!("no {prefix} signals in the snapshot")
    } else {
        why.join("; ")
    }
}

/// A program blamed as a whole, by its busiest pid.
fn blame(g: &ProgramGroup) -> Culprit {
    Culprit {
        pid: g.pids.first().copied(),
        name: g.program.clone(),
    }
}

/// The highest I/O stall the snapshot shows (PSI io some, attached to every disk), the busiest
/// device's busy %, and the tasks in D state.
fn io_pressure(s: &UseSnapshot) -> (f64, f64, f64) {
    let psi = s
        .resources_of("disk:")
        .map(|d| val(sig(d, "psi_io_some")))
        .fold(0.0, f64::max);
    let busy = s
        .resources_of("disk:")
        .map(|d| val(sig(d, "busy")))
        .fold(0.0, f64::max);
    let blocked = s
        .resource("cpu")
        .map(|c| val(sig(c, "blocked_tasks")))
        .unwrap_or(0.0);
    (psi, busy, blocked)
}

fn lean(status: Status) -> Strength {
    if status == Status::Critical {
        Strength::Strong
    } else {
        Strength::Moderate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::host::process::ProcessReport;
    use crate::config::Level;

    fn s(metric: &str, value: f64, crit_at: Option<f64>) -> Signal {
        match crit_at {
            Some(c) => Signal::rated(
                metric,
                value,
                "%",
                Level {
                    warn: c / 2.0,
                    crit: c,
                },
                "t",
            ),
            None => Signal::info(metric, value, "%", "t"),
        }
    }

    pub(super) fn snapshot(
        resources: Vec<ResourceReport>,
        processes: ProcessReport,
    ) -> UseSnapshot {
        UseSnapshot {
            host: "h".into(),
            taken_at: chrono::Utc::now(),
            window_ms: 250,
            cores: 2,
            abnormal: vec![],
            resources,
            processes,
            unreadable: vec![],
            lossy_peers: vec![],
        }
    }

    pub(super) fn group(program: &str, pids: &[u32]) -> ProgramGroup {
        ProgramGroup {
            program: program.into(),
            comms: vec![],
            exe: None,
            unit: None,
            processes: pids.len(),
            pids: pids.to_vec(),
            threads: pids.len() as u64,
            cpu_pct: 0.0,
            rss_mib: 100.0,
            rss_growth_mib_per_s: 0.0,
            steady_growth: false,
            read_mib_per_s: 0.0,
            write_mib_per_s: 0.0,
            fds: 10,
            limit: None,
            cpu_quota: None,
        }
    }

    pub(super) fn memory_ok() -> ResourceReport {
        ResourceReport::new(
            "memory",
            vec![s("used", 15.0, Some(95.0)), s("available", 20.0, None)],
            vec![],
            vec![],
        )
    }

    pub(super) fn report<'a>(text: &'a str, suspects: &'a [Category]) -> Report<'a> {
        Report { text, suspects }
    }

    #[test]
    fn writers_that_lengthen_the_run_queue_make_disk_io_the_answer_not_cpu() {
        let th = Thresholds::default();
        let cpu = ResourceReport::new(
            "cpu",
            vec![s("utilization", 44.0, Some(98.0))],
            vec![
                Signal::rated(
                    "run_queue_per_core",
                    3.0,
                    "t/c",
                    th.cpu.run_queue_per_core,
                    "t",
                ),
                Signal::rated("psi_some", 30.0, "%", th.cpu.psi_some_pct, "t"),
                s("blocked_tasks", 6.0, None),
            ],
            vec![],
        );
        let disk = ResourceReport::new(
            "disk:vda",
            vec![Signal::rated(
                "busy",
                76.0,
                "%",
                th.disk.utilization_pct,
                "t",
            )],
            vec![
                Signal::rated("await", 3.0, "ms", th.disk.await_ms, "t"),
                Signal::rated("queue_depth", 1.2, "r", th.disk.queue_depth, "t"),
                Signal::rated("psi_io_some", 80.0, "%", th.disk.psi_some_pct, "t"),
            ],
            vec![],
        );
        let mut writer = group("blob-compaction-writer", &[11, 12, 13, 14]);
        writer.write_mib_per_s = 40.0;
        writer.cpu_pct = 30.0;
        let mut p = ProcessReport {
            groups: vec![writer],
            ..Default::default()
        };
        p.blocked = vec![crate::collectors::host::process::BlockedTasks {
            program: "blob-compaction-writer".into(),
            tasks: 6,
        }];
        let snap = snapshot(vec![cpu, memory_ok(), disk], p);
        let r = report("uploads are slow", &[]);
        let c = judge(Category::HostCpuSaturation, &snap, &th, &r).expect("cpu");
        assert_eq!(c.strength, Strength::Weak, "{c:?}");
        assert!(
            c.statement.contains("waiting on the disk"),
            "{}",
            c.statement
        );
        let d = judge(Category::HostDiskIoSaturation, &snap, &th, &r).expect("disk");
        assert!(d.supports && d.strength == Strength::Strong, "{d:?}");
        assert_eq!(
            d.culprit.map(|c| c.name).as_deref(),
            Some("blob-compaction-writer")
        );
        assert!(d.statement.contains("4 processes") && d.statement.contains("6 in D state"));
    }
}
