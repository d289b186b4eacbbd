//! USE-method rules over a `host.use_snapshot`: one verdict per host category.
//!
//! Weights encode how decisive a signal is: a critical saturation signal nearly settles a
//! hypothesis (0.9), a warning leans (0.5), busy-but-not-saturated barely moves it (0.25, which
//! keeps a busy but healthy machine below the finding threshold), and every signal of a category
//! being normal speaks strongly against it (0.9).

use crate::agent::board::{Culprit, Strength};
use crate::collectors::host::process::ProgramGroup;
use crate::collectors::host::signal::{ResourceReport, Signal, Status};
use crate::collectors::host::{ProcessInfo, UseSnapshot};
use crate::config::Thresholds;
use crate::taxonomy::Category;

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

/// The program a process belongs to, from the snapshot's per-program totals.
fn group_of(s: &UseSnapshot, pid: u32) -> Option<&ProgramGroup> {
    s.processes.groups.iter().find(|g| g.pids.contains(&pid))
}

/// A program blamed as a whole, by its busiest pid.
fn blame(g: &ProgramGroup) -> Culprit {
    Culprit {
        pid: g.pids.first().copied(),
        name: g.program.clone(),
    }
}

/// How to name a process in a statement: its program (with pool size and pids) where the
/// snapshot has per-program totals, else its kernel name and pid.
fn named(s: &UseSnapshot, p: &ProcessInfo) -> (String, Culprit) {
    match group_of(s, p.pid) {
        Some(g) => (
            g.describe(),
            Culprit {
                pid: Some(p.pid),
                name: g.program.clone(),
            },
        ),
        None => (format!("{} (pid {})", p.label(), p.pid), culprit(p)),
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

fn cpu(s: &UseSnapshot, th: &Thresholds) -> Result<Verdict, Untested> {
    let r = s.resource("cpu").ok_or_else(|| unreadable(s, "cpu"))?;
    let (util, rq, psi, steal) = (
        sig(r, "utilization"),
        sig(r, "run_queue_per_core"),
        sig(r, "psi_some"),
        sig(r, "steal"),
    );
    // A long run queue counts only if tasks really wait for CPU: with PSI readable and calm
    // and the cores not busy, runnable tasks are I/O-bound ones passing through, not saturation.
    let rq_status = if psi.is_some() && st(psi) == Status::Normal && st(util) == Status::Normal {
        st(rq).min(Status::Warning)
    } else {
        st(rq)
    };
    let sat = rq_status.max(st(psi));
    let (io_psi, disk_busy, blocked) = io_pressure(s);
    let nums = format!(
        "utilization {:.0}%, run queue {:.2}/core, PSI cpu some {:.0}% of window, steal {:.0}%, iowait {:.0}%, PSI io some {io_psi:.0}%, {blocked:.1} tasks in D state",
        val(util),
        val(rq),
        val(psi),
        val(steal),
        val(sig(r, "iowait")),
    );
    // Per program where the snapshot has it: a pool of workers is one culprit.
    let top_group = s
        .processes
        .groups
        .iter()
        .max_by(|a, b| a.cpu_pct.total_cmp(&b.cpu_pct))
        .filter(|g| g.cpu_pct >= 50.0);
    let top = s.processes.top_cpu.first().filter(|p| p.cpu_pct >= 50.0);
    let who = match (top_group, top) {
        (Some(g), _) => format!("; top: {} at {:.0}% CPU", g.describe(), g.cpu_pct),
        (None, Some(p)) => format!(
            "; top: {} (pid {}) at {:.0}% CPU",
            p.label(),
            p.pid,
            p.cpu_pct
        ),
        _ => String::new(),
    };
    let saturated =
        sat == Status::Critical || (sat == Status::Warning && st(util) >= Status::Warning);
    // Compare the resources: with idle cores, and I/O stalls at least as high as CPU stalls
    // while a disk is busy, the queue is the writers waiting on the disk, not on the CPU.
    let io_explains = st(util) == Status::Normal
        && io_psi >= th.disk.psi_some_pct.warn
        && io_psi >= val(psi)
        && disk_busy >= th.disk.utilization_pct.warn;
    // A program held at its cgroup's CPU quota waits for CPU however idle the host is: it uses
    // at least half of its quota in the window (jiffies make a short window coarse), and the
    // cgroup throttled it in many of its periods.
    let throttled = s
        .processes
        .groups
        .iter()
        .filter_map(|g| g.cpu_quota.as_ref().map(|q| (g, q)))
        .filter(|(g, q)| g.cpu_pct / 100.0 >= 0.5 * q.limit_cpus && q.throttled_pct >= 20.0)
        .max_by(|a, b| a.1.throttled_pct.total_cmp(&b.1.throttled_pct));
    if st(util) < Status::Warning
        && let Some((g, q)) = throttled
    {
        return Ok(Verdict {
            statement: format!(
                "CPU throttled by a cgroup quota: {} uses {:.0}% CPU against the {:.2} CPU(s) that cgroup {} allows, throttled in {:.0}% of its periods",
                g.describe(),
                g.cpu_pct,
                q.limit_cpus,
                q.cgroup,
                q.throttled_pct
            ),
            component: "cpu".into(),
            culprit: Some(blame(g)),
            supports: true,
            strength: if q.throttled_pct >= 50.0 {
                Strength::Strong
            } else {
                Strength::Moderate
            },
            note: format!(
                "{nums}; {} at its quota of {:.2} CPU(s) in cgroup {}, throttled in {:.0}% of periods",
                g.program, q.limit_cpus, q.cgroup, q.throttled_pct
            ),
        });
    }
    let strength = if saturated && io_explains {
        return Ok(Verdict {
            statement: format!(
                "CPU saturation: the run queue is long ({:.1}/core) but the cores are {:.0}% busy and I/O stalls ({io_psi:.0}%) exceed CPU stalls ({:.0}%): the queue is tasks waiting on the disk",
                val(rq),
                val(util),
                val(psi)
            ),
            component: "cpu".into(),
            culprit: None,
            supports: true,
            strength: Strength::Weak,
            note: nums,
        });
    } else if saturated && sat == Status::Critical && val(util) >= 60.0 {
        Strength::Strong
    } else if saturated {
        // Saturated by the queue, but with a large share of the cores idle: it leans.
        Strength::Moderate
    } else if st(steal) >= Status::Warning {
        return Ok(Verdict {
            statement: format!(
                "CPU time is stolen by the hypervisor (noisy neighbour): steal {:.0}%",
                val(steal)
            ),
            component: "cpu".into(),
            culprit: Some(Culprit {
                pid: None,
                name: "hypervisor steal".into(),
            }),
            supports: true,
            strength: Strength::Moderate,
            note: nums,
        });
    } else if sat == Status::Warning || st(util) >= Status::Warning {
        // Busy but not saturated: barely moves it, so a busy healthy machine is not a finding.
        Strength::Weak
    } else {
        return Ok(against("CPU is not saturated".into(), "cpu", nums));
    };
    let (statement, blame) = match (top_group, top) {
        (Some(g), _) => (
            format!(
                "CPU saturated: {:.1} runnable threads per core on {} cores; {} uses {:.0}% CPU",
                val(rq),
                s.cores,
                g.describe(),
                g.cpu_pct
            ),
            Some(blame(g)),
        ),
        (None, Some(p)) => (
            format!(
                "CPU saturated: {:.1} runnable threads per core on {} cores; {} (pid {}) uses {:.0}% CPU",
                val(rq),
                s.cores,
                p.label(),
                p.pid,
                p.cpu_pct
            ),
            Some(culprit(p)),
        ),
        (None, None) => (
            format!(
                "CPU saturated: {:.1} runnable threads per core on {} cores, spread over many processes",
                val(rq),
                s.cores
            ),
            None,
        ),
    };
    Ok(Verdict {
        statement,
        component: "cpu".into(),
        culprit: blame,
        supports: true,
        strength,
        note: format!("{nums}{who}"),
    })
}

fn eta(t: f64) -> String {
    if t < 120.0 {
        format!("{t:.0} s")
    } else if t < 7200.0 {
        format!("{:.0} min", t / 60.0)
    } else {
        format!("{:.1} h", t / 3600.0)
    }
}

fn memory(s: &UseSnapshot, th: &Thresholds, report: &Report<'_>) -> Result<Verdict, Untested> {
    let r = s
        .resource("memory")
        .ok_or_else(|| unreadable(s, "memory"))?;
    let used = sig(r, "used");
    let avail_gib = val(sig(r, "available"));
    // Pressure now: every signal but the kernel log's record of earlier kills, which the
    // OOM branch below weighs by its age.
    let host = r
        .signals()
        .filter(|x| x.metric != "oom_kills_recent")
        .map(|x| x.status)
        .max()
        .unwrap_or(Status::Normal);
    let nums = format!(
        "used {:.0}% ({avail_gib:.1} GiB available), swap {:.0} pages/s, major faults {:.0}/s, PSI memory some {:.0}%, OOM kills in window {:.0}",
        val(used),
        val(sig(r, "swap_pages")),
        val(sig(r, "major_faults")),
        val(sig(r, "psi_some")),
        val(sig(r, "oom_kills"))
    );
    // A program whose memory grew steadily through the whole look (a snapshot with per-program
    // totals), or else the fastest grower of an older snapshot.
    let leak = s
        .processes
        .groups
        .iter()
        .filter(|g| g.steady_growth && g.rss_growth_mib_per_s >= th.memory.process_growth_mib_per_s)
        .max_by(|a, b| a.rss_growth_mib_per_s.total_cmp(&b.rss_growth_mib_per_s));
    let grower = s.processes.growing.first();
    // The kernel already killed for memory: that settles it when it is recent or bears on the
    // report; an older kill with no pressure now, about something else, is a secondary finding.
    if let Some(last) = s.processes.oom_killed.first() {
        let times = s
            .processes
            .oom_killed
            .iter()
            .filter(|k| k.name == last.name)
            .count();
        let live = s
            .processes
            .growing
            .iter()
            .chain(&s.processes.top_rss)
            .find(|p| p.name == last.name);
        let limit = if last.memcg == "/" {
            "the host ran out of memory".to_string()
        } else {
            format!("memory cgroup {} hit its limit", last.memcg)
        };
        // A live leak of another program is the present; an older kill is then background.
        let relevant = last.seconds_ago <= th.memory.oom_recent_s
            || host >= Status::Warning
            || live.is_some_and(|p| p.rss_growth_mib_per_s > 0.0)
            || (leak.is_none() && report.about_memory_or_deaths());
        if relevant || (s.processes.growing.is_empty() && leak.is_none()) {
            return Ok(Verdict {
                statement: format!(
                    "OOM kills: the kernel killed {} {times} time(s) recently ({limit}); last {} ago{}",
                    last.name,
                    eta(last.seconds_ago),
                    live.map(|p| format!(
                        ", running again as pid {} at {:.0} MiB, growing {:.0} MiB/s",
                        p.pid, p.rss_mib, p.rss_growth_mib_per_s
                    ))
                    .unwrap_or_default()
                ),
                component: "memory".into(),
                culprit: Some(Culprit {
                    pid: Some(live.map(|p| p.pid).unwrap_or(last.pid)),
                    name: last.name.clone(),
                }),
                supports: true,
                // Old news: listed, below the threshold, unless it bears on now.
                strength: if relevant {
                    Strength::Strong
                } else {
                    Strength::Weak
                },
                note: format!(
                    "{limit}; {nums}{}",
                    if relevant {
                        String::new()
                    } else {
                        format!(
                            "; {} ago, no memory pressure now and the report is not about memory: a secondary finding",
                            eta(last.seconds_ago)
                        )
                    }
                ),
            });
        }
    }
    if let Some(g) = leak {
        // Time to the nearest limit: the host's available memory, the program's cgroup limit
        // or its address-space limit.
        let (limit, left) = match &g.limit {
            Some(l) => (
                format!("{} ({:.0} MiB left)", l.kind, l.headroom_mib),
                l.seconds_left,
            ),
            None => (
                format!("host memory ({avail_gib:.1} GiB available)"),
                avail_gib * 1024.0 / g.rss_growth_mib_per_s.max(0.001),
            ),
        };
        let strength = if host == Status::Critical || left <= th.memory.exhaustion_horizon_s {
            Strength::Strong
        } else {
            // A steady leak is the finding before it is a pressure.
            Strength::Moderate
        };
        let growth = format!(
            "{} RSS grew steadily {:.0} MiB/s to {:.0} MiB",
            g.describe(),
            g.rss_growth_mib_per_s,
            g.rss_mib
        );
        return Ok(Verdict {
            statement: format!(
                "Memory growth (a leak until shown otherwise): {growth}; at this rate it reaches the {limit} in ~{}",
                eta(left)
            ),
            component: "memory".into(),
            culprit: Some(blame(g)),
            supports: true,
            strength,
            note: format!(
                "{growth}; nearest limit: {limit}, reached in ~{}; {nums}{}",
                eta(left),
                s.processes
                    .oom_killed
                    .first()
                    .map(|k| format!(
                        "; earlier: the OOM killer killed {} {} ago (memory cgroup {})",
                        k.name,
                        eta(k.seconds_ago),
                        k.memcg
                    ))
                    .unwrap_or_default()
            ),
        });
    }
    let tte_s = grower.map(|p| avail_gib * 1024.0 / p.rss_growth_mib_per_s.max(0.001));
    let growth = grower.map(|p| {
        format!(
            "{} (pid {}) RSS grew {:.0} MiB/s to {:.0} MiB",
            p.label(),
            p.pid,
            p.rss_growth_mib_per_s,
            p.rss_mib
        )
    });
    let soon = tte_s.is_some_and(|t| t <= th.memory.exhaustion_horizon_s);
    let (strength, blame) = if host == Status::Critical {
        (Strength::Strong, grower.or(s.processes.top_rss.first()))
    } else if soon {
        // Growth alone is a suspicion: one window cannot tell a leak from a burst (a compiler
        // grows like this too), so it leans, and memory pressure is what would confirm it.
        (Strength::Moderate, grower)
    } else if host == Status::Warning {
        (Strength::Moderate, grower.or(s.processes.top_rss.first()))
    } else if grower.is_some() {
        // Growing, but memory lasts beyond the horizon: worth showing, not yet a finding
        // (a compiler or a cache warming up looks like this too).
        (Strength::Weak, grower)
    } else {
        return Ok(against(
            "Memory is not under pressure and no process grows".into(),
            "memory",
            nums,
        ));
    };
    let statement = match (&growth, tte_s) {
        (Some(g), Some(t)) => format!(
            "Memory growth: {g}; at this rate available memory ({avail_gib:.1} GiB) is exhausted in ~{}",
            eta(t)
        ),
        _ => match blame {
            Some(p) => {
                let (who, _) = named(s, p);
                format!(
                    "Memory pressure: {}; largest: {who} at {:.0} MiB RSS",
                    nums, p.rss_mib
                )
            }
            None => format!("Memory pressure: {nums}"),
        },
    };
    let note = match growth {
        Some(g) => format!("{g}; {nums}"),
        None => nums,
    };
    Ok(Verdict {
        statement,
        component: "memory".into(),
        culprit: blame.map(|p| named(s, p).1),
        supports: true,
        strength,
        note,
    })
}

/// The worst resource with a prefix, by status then by a key signal's value.
fn worst<'a>(s: &'a UseSnapshot, prefix: &'a str, key: &str) -> Option<&'a ResourceReport> {
    s.resources_of(prefix).max_by(|a, b| {
        a.status
            .cmp(&b.status)
            .then(val(sig(a, key)).total_cmp(&val(sig(b, key))))
    })
}

fn lean(status: Status) -> Strength {
    if status == Status::Critical {
        Strength::Strong
    } else {
        Strength::Moderate
    }
}

fn disk_io(s: &UseSnapshot) -> Result<Verdict, Untested> {
    let Some(r) = worst(s, "disk:", "busy") else {
        return Ok(against(
            "No block device is busy".into(),
            "disk",
            "no block device showed I/O in the window".into(),
        ));
    };
    let (io_psi, _, blocked) = io_pressure(s);
    let nums = format!(
        "{}: busy {:.0}%, await {:.1} ms, queue {:.1}, PSI io some {io_psi:.0}%, {blocked:.1} tasks in D state{}",
        r.resource,
        val(sig(r, "busy")),
        val(sig(r, "await")),
        val(sig(r, "queue_depth")),
        sig(r, "busy")
            .and_then(|s| s.note.as_deref())
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    if r.status == Status::Normal {
        return Ok(against(
            "No block device is saturated".into(),
            &r.resource,
            format!("busiest {nums}"),
        ));
    }
    // Saturation is tasks waiting: a long await or queue, or I/O stalls (PSI io) with tasks
    // in D state. Synchronous writers keep the queue short and still stall everyone.
    // Only critical I/O stalls count on their own (one busy writer stalls now and then), and
    // fully only with tasks seen in D state; warning-level stalls count with several tasks
    // waiting in D state.
    let psi_wait = match (st(sig(r, "psi_io_some")), blocked) {
        (Status::Critical, b) if b >= 1.0 => Status::Critical,
        (Status::Critical, _) => Status::Warning,
        // Several tasks queued in D state while I/O stalls: more than one writer waits.
        (Status::Warning, b) if b >= 2.0 => Status::Warning,
        _ => Status::Normal,
    };
    let waiting = st(sig(r, "await"))
        .max(st(sig(r, "queue_depth")))
        .max(psi_wait);
    let both = st(sig(r, "busy")) >= Status::Warning && waiting >= Status::Warning;
    // Who does the I/O: per program where the snapshot has it (a pool of writers is one).
    let io_groups: Vec<&ProgramGroup> = {
        let mut v: Vec<&ProgramGroup> = s
            .processes
            .groups
            .iter()
            .filter(|g| g.read_mib_per_s + g.write_mib_per_s >= 1.0)
            .collect();
        v.sort_by(|a, b| {
            (b.read_mib_per_s + b.write_mib_per_s)
                .total_cmp(&(a.read_mib_per_s + a.write_mib_per_s))
        });
        v
    };
    let d_state = |program: &str| {
        s.processes
            .blocked
            .iter()
            .find(|b| b.program == program)
            .map(|b| format!(", {} in D state", b.tasks))
            .unwrap_or_default()
    };
    let (by, culprit) = match (io_groups.first(), s.processes.top_io.first()) {
        (Some(g), _) => {
            let others: Vec<String> = io_groups
                .iter()
                .skip(1)
                .take(2)
                .map(|o| {
                    format!(
                        "{} {:.0} MiB/s",
                        o.label(),
                        o.read_mib_per_s + o.write_mib_per_s
                    )
                })
                .collect();
            (
                format!(
                    "; busiest: {} reading {:.0} MiB/s, writing {:.0} MiB/s{}{}",
                    g.describe(),
                    g.read_mib_per_s,
                    g.write_mib_per_s,
                    d_state(&g.program),
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!("; then {}", others.join(", "))
                    }
                ),
                Some(blame(g)),
            )
        }
        (None, Some(u)) => (
            format!(
                "; busiest process: {} (pid {}) reading {:.0} MiB/s, writing {:.0} MiB/s",
                u.name, u.pid, u.read_mib_per_s, u.write_mib_per_s
            ),
            Some(Culprit {
                pid: Some(u.pid),
                name: u.name.clone(),
            }),
        ),
        (None, None) => (String::new(), None),
    };
    Ok(Verdict {
        statement: format!(
            "Disk I/O saturation on {}: {nums}{by}",
            r.resource.trim_start_matches("disk:")
        ),
        component: r.resource.clone(),
        culprit,
        supports: true,
        strength: if both {
            lean(st(sig(r, "busy")).max(waiting))
        } else {
            Strength::Weak
        },
        note: format!("{nums}{by}"),
    })
}

fn disk_full(s: &UseSnapshot) -> Result<Verdict, Untested> {
    let r = s
        .resources_of("fs:")
        .max_by(|a, b| {
            a.status.cmp(&b.status).then(
                val(sig(a, "space_used"))
                    .max(val(sig(a, "inodes_used")))
                    .total_cmp(&val(sig(b, "space_used")).max(val(sig(b, "inodes_used")))),
            )
        })
        .ok_or_else(|| unreadable(s, "fs"))?;
    let mount = r.resource.trim_start_matches("fs:");
    let space = sig(r, "space_used");
    let inodes = sig(r, "inodes_used");
    let nums = format!(
        "{mount}: {:.0}% of space used ({}), {:.0}% of inodes used",
        val(space),
        space.and_then(|s| s.note.as_deref()).unwrap_or("?"),
        val(inodes)
    );
    if r.status == Status::Normal {
        return Ok(against(
            "No filesystem is near full".into(),
            &r.resource,
            format!("fullest is {nums}"),
        ));
    }
    let inode_bound = st(inodes) > st(space);
    let what = if inode_bound { "out of inodes" } else { "full" };
    // Where the files are, when the snapshot looked.
    let at = sig(
        r,
        if inode_bound {
            "crowded_dir"
        } else {
            "largest_dir"
        },
    )
    .and_then(|x| x.note.as_deref())
    .map(|n| format!("; {n}"))
    .unwrap_or_default();
    Ok(Verdict {
        statement: format!("Filesystem {mount} is {what}: {nums}{at}"),
        component: r.resource.clone(),
        culprit: Some(Culprit {
            pid: None,
            name: mount.to_string(),
        }),
        supports: true,
        strength: lean(r.status),
        note: nums,
    })
}

fn network(s: &UseSnapshot) -> Result<Verdict, Untested> {
    use crate::collectors::host::sockets::Direction;
    const PER_SOCKET: &str = "worst_peer_retransmits";
    // The per-socket view names the peer or service port whose connections lose segments; it
    // speaks first unless an interface or a host-wide TCP counter is worse.
    let other = s
        .resources_of("net:")
        .chain(s.resource("tcp"))
        .flat_map(|r| r.signals())
        .filter(|x| x.metric != PER_SOCKET)
        .map(|x| x.status)
        .max()
        .unwrap_or(Status::Normal);
    if let Some(p) = s
        .lossy_peers
        .first()
        .filter(|p| p.status != Status::Normal && p.status >= other)
    {
        let more = match s.lossy_peers.len() {
            1 => String::new(),
            n => format!("; {} more lossy peer(s)", n - 1),
        };
        let window = s
            .resource("tcp")
            .and_then(|t| sig(t, "retransmits"))
            .and_then(|x| x.note.as_deref())
            .map(|n| format!("; host-wide: {n}"))
            .unwrap_or_default();
        // The culprit's name is read back up to " (", so the port goes in before any parenthesis.
        let owner = |port: u16| match (&p.process, p.direction) {
            (Some(n), Direction::Out) => format!("{n} to port {port}"),
            (Some(n), Direction::In) => format!("{n} on port {port}"),
            (None, _) => format!("port {port}"),
        };
        return Ok(Verdict {
            statement: format!("TCP packet loss: {}{more}", p.describe()),
            // One form whichever side retransmits: the service's port, under the network.
            component: format!("network:tcp:{}", p.port),
            culprit: Some(Culprit {
                pid: p.pid,
                name: owner(p.port),
            }),
            supports: true,
            strength: lean(p.status),
            note: format!(
                "{}; {} segment(s) lost now, RTT up to {:.1} ms{more}{window}",
                p.describe(),
                p.lost_now,
                p.rtt_ms
            ),
        });
    }
    let candidates: Vec<&ResourceReport> =
        s.resources_of("net:").chain(s.resource("tcp")).collect();
    if candidates.is_empty() {
        return Err(unreadable(s, "net"));
    }
    let r = candidates
        .iter()
        .max_by_key(|r| r.status)
        .copied()
        .ok_or_else(|| unreadable(s, "net"))?;
    let bad: Vec<String> = r
        .signals()
        .filter(|x| x.status != Status::Normal)
        .map(|x| format!("{} {} {}", x.metric, x.value, x.unit))
        .collect();
    if r.status == Status::Normal {
        let tcp = s.resource("tcp");
        let window = tcp
            .and_then(|t| sig(t, "retransmits"))
            .and_then(|x| x.note.as_deref())
            .filter(|n| n.contains("too few"))
            .map(|_| " (too few segments in the window to judge)")
            .unwrap_or_default();
        let per_socket = match tcp.and_then(|t| sig(t, PER_SOCKET)) {
            Some(x) => format!(
                "; per-socket view: {}",
                x.note.as_deref().unwrap_or("no lossy peer")
            ),
            None => format!(
                "; per-socket view unread ({})",
                unreadable(s, "tcp.sockets")
            ),
        };
        return Ok(against(
            "No network errors, drops or retransmits".into(),
            "network",
            format!(
                "{} interfaces without errors or drops; TCP retransmits {:.1}%{window}, listen overflows {:.0}{per_socket}",
                s.resources_of("net:").count(),
                tcp.map(|t| val(sig(t, "retransmits"))).unwrap_or(0.0),
                tcp.map(|t| val(sig(t, "listen_overflows"))).unwrap_or(0.0)
            ),
        ));
    }
    let nums = format!("{}: {}", r.resource, bad.join(", "));
    // A full accept queue names its port and the program that does not accept in time.
    if let Some(q) = sig(r, "accept_queue_used").filter(|x| x.status >= Status::Warning) {
        let note = q.note.clone().unwrap_or_default();
        let port = note
            .strip_prefix("port ")
            .and_then(|t| t.split(':').next())
            .unwrap_or("?");
        return Ok(Verdict {
            statement: format!("Listen queue full: {note}; {nums}"),
            component: format!("network:tcp:{port}"),
            culprit: None,
            supports: true,
            strength: lean(r.status),
            note: format!("{note}; {nums}"),
        });
    }
    Ok(Verdict {
        statement: format!("Network errors on {}: {}", r.resource, bad.join(", ")),
        component: r.resource.clone(),
        culprit: None,
        supports: true,
        strength: lean(r.status),
        note: nums,
    })
}

fn fds(s: &UseSnapshot) -> Result<Verdict, Untested> {
    let r = s.resource("fd").ok_or_else(|| unreadable(s, "fd"))?;
    let top = s.processes.top_fds.first();
    let nums = format!(
        "system {:.1}% of file-max; {}",
        val(sig(r, "system_used")),
        top.map(|f| format!(
            "{} (pid {}) has {} of {} open ({:.0}%)",
            f.name, f.pid, f.open, f.limit, f.used_pct
        ))
        .unwrap_or_else(|| "no per-process counts readable".into())
    );
    if r.status == Status::Normal {
        return Ok(against(
            "No process is near its open-files limit".into(),
            "fd",
            nums,
        ));
    }
    let proc_bad = st(sig(r, "worst_process_used")) >= st(sig(r, "system_used"));
    let (statement, culprit) = match (proc_bad, top) {
        (true, Some(f)) => {
            // The program, as operators name it, where the snapshot knows it.
            let program = if f.program.is_empty() {
                f.name.clone()
            } else {
                f.program.clone()
            };
            let who = format!(
                "{} (pid {})",
                crate::collectors::host::process::label(&program, std::slice::from_ref(&f.name)),
                f.pid
            );
            (
                format!(
                    "{who} is at {:.0}% of its open-files limit ({} of {})",
                    f.used_pct, f.open, f.limit
                ),
                Some(Culprit {
                    pid: Some(f.pid),
                    name: program,
                }),
            )
        }
        _ => {
            // The whole host is near fs.file-max: the program holding the most descriptors.
            let most = s.processes.groups.iter().max_by_key(|g| g.fds);
            (
                format!(
                    "System-wide file descriptors near fs.file-max: {nums}{}",
                    most.map(|g| format!("; most held by {} ({} open)", g.describe(), g.fds))
                        .unwrap_or_default()
                ),
                most.map(blame),
            )
        }
    };
    Ok(Verdict {
        statement,
        component: match (&culprit, proc_bad) {
            (Some(c), true) => format!("process:{}", c.name),
            _ => "fd".into(),
        },
        culprit,
        supports: true,
        strength: lean(r.status),
        note: nums,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::host::memory::OomKill;
    use crate::collectors::host::process::{MemLimit, ProcessReport};
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

    fn snapshot(resources: Vec<ResourceReport>, processes: ProcessReport) -> UseSnapshot {
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

    fn group(program: &str, pids: &[u32]) -> ProgramGroup {
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

    fn memory_ok() -> ResourceReport {
        ResourceReport::new(
            "memory",
            vec![s("used", 15.0, Some(95.0)), s("available", 20.0, None)],
            vec![],
            vec![],
        )
    }

    fn report<'a>(text: &'a str, suspects: &'a [Category]) -> Report<'a> {
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

    #[test]
    fn an_older_oom_kill_unrelated_to_the_report_is_a_secondary_finding() {
        let th = Thresholds::default();
        let kill = |ago: f64| OomKill {
            name: "batch-import".into(),
            pid: 4242,
            memcg: "/jobs/batch".into(),
            constraint: "CONSTRAINT_MEMCG".into(),
            seconds_ago: ago,
        };
        let snap = |ago: f64| {
            snapshot(
                vec![memory_ok()],
                ProcessReport {
                    oom_killed: vec![kill(ago)],
                    ..Default::default()
                },
            )
        };
        let hanging = report("payouts are hanging", &[]);
        let old = judge(Category::HostMemoryPressure, &snap(300.0), &th, &hanging).expect("memory");
        assert!(old.supports && old.strength == Strength::Weak, "{old:?}");
        assert!(old.note.contains("secondary"), "{}", old.note);
        // Recent, or what the report is about: it is the finding.
        let fresh =
            judge(Category::HostMemoryPressure, &snap(30.0), &th, &hanging).expect("memory");
        assert_eq!(fresh.strength, Strength::Strong);
        let deaths = report("the import workers keep restarting", &[]);
        let about =
            judge(Category::HostMemoryPressure, &snap(300.0), &th, &deaths).expect("memory");
        assert_eq!(about.strength, Strength::Strong);
    }

    #[test]
    fn a_steady_leak_is_a_finding_before_any_pressure_with_its_time_to_the_nearest_limit() {
        let th = Thresholds::default();
        let mut leak = group("settlement-service-2.4.1.jar", &[77]);
        leak.comms = vec!["java".into()];
        leak.rss_growth_mib_per_s = 40.0;
        leak.steady_growth = true;
        let snap = |g: ProgramGroup| {
            snapshot(
                vec![memory_ok()],
                ProcessReport {
                    groups: vec![g],
                    ..Default::default()
                },
            )
        };
        let r = report("settlements feel slow", &[]);
        let v = judge(Category::HostMemoryPressure, &snap(leak.clone()), &th, &r).expect("memory");
        assert_eq!(v.strength, Strength::Moderate, "{v:?}");
        assert!(
            v.statement.contains("40 MiB/s") && v.statement.contains("host memory"),
            "{}",
            v.statement
        );
        assert_eq!(
            v.culprit.map(|c| c.name).as_deref(),
            Some("settlement-service-2.4.1.jar")
        );
        leak.limit = Some(MemLimit {
            kind: "cgroup /jobs/settle limit".into(),
            headroom_mib: 1000.0,
            seconds_left: 25.0,
        });
        let v = judge(Category::HostMemoryPressure, &snap(leak.clone()), &th, &r).expect("memory");
        assert_eq!(v.strength, Strength::Strong, "{v:?}");
        assert!(v.statement.contains("cgroup /jobs/settle limit") && v.statement.contains("~25 s"));
        // Growth that was a burst (not steady) is not a leak.
        leak.steady_growth = false;
        leak.limit = None;
        let v = judge(Category::HostMemoryPressure, &snap(leak), &th, &r).expect("memory");
        assert!(!v.supports, "{v:?}");
    }

    #[test]
    fn a_cpu_pool_is_blamed_by_its_program_not_one_cut_comm() {
        let th = Thresholds::default();
        let cpu = ResourceReport::new(
            "cpu",
            vec![Signal::rated(
                "utilization",
                100.0,
                "%",
                th.cpu.utilization_pct,
                "t",
            )],
            vec![
                Signal::rated(
                    "run_queue_per_core",
                    3.0,
                    "t/c",
                    th.cpu.run_queue_per_core,
                    "t",
                ),
                Signal::rated("psi_some", 90.0, "%", th.cpu.psi_some_pct, "t"),
            ],
            vec![],
        );
        let mut pool = group("inventory-reconciliation-worker", &[21, 22, 23]);
        pool.comms = vec!["inventory-recon".into()];
        pool.cpu_pct = 198.0;
        let snap = snapshot(
            vec![cpu, memory_ok()],
            ProcessReport {
                groups: vec![pool],
                ..Default::default()
            },
        );
        let v = judge(
            Category::HostCpuSaturation,
            &snap,
            &th,
            &report("slow", &[]),
        )
        .expect("cpu");
        assert_eq!(v.strength, Strength::Strong);
        assert_eq!(
            v.culprit.map(|c| c.name).as_deref(),
            Some("inventory-reconciliation-worker")
        );
        assert!(
            v.statement.contains("3 processes, pids 21, 22, 23"),
            "{}",
            v.statement
        );
    }
}
