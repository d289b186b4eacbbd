//! USE-method rules over a `host.use_snapshot`: one verdict per host category.
//!
//! Weights encode how decisive a signal is: a critical saturation signal nearly settles a
//! hypothesis (0.9), a warning leans (0.5), busy-but-not-saturated barely moves it (0.25, which
//! keeps a busy but healthy machine below the finding threshold), and every signal of a category
//! being normal speaks strongly against it (0.9).

use crate::agent::board::{Culprit, Strength};
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

/// Judges one category on one snapshot.
pub fn judge(c: Category, s: &UseSnapshot, th: &Thresholds) -> Result<Verdict, Untested> {
    match c {
        Category::HostCpuSaturation => cpu(s),
        Category::HostMemoryPressure => memory(s, th),
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

fn cpu(s: &UseSnapshot) -> Result<Verdict, Untested> {
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
    let nums = format!(
        "utilization {:.0}%, run queue {:.2}/core, PSI cpu some {:.0}% of window, steal {:.0}%",
        val(util),
        val(rq),
        val(psi),
        val(steal)
    );
    let top = s.processes.top_cpu.first().filter(|p| p.cpu_pct >= 50.0);
    let who = top
        .map(|p| format!("; top: {} (pid {}) at {:.0}% CPU", p.name, p.pid, p.cpu_pct))
        .unwrap_or_default();
    let saturated =
        sat == Status::Critical || (sat == Status::Warning && st(util) >= Status::Warning);
    let strength = if saturated && sat == Status::Critical {
        Strength::Strong
    } else if saturated {
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
    let statement = match top {
        Some(p) => format!(
            "CPU saturated: {:.1} runnable threads per core on {} cores; {} (pid {}) uses {:.0}% CPU",
            val(rq),
            s.cores,
            p.name,
            p.pid,
            p.cpu_pct
        ),
        None => format!(
            "CPU saturated: {:.1} runnable threads per core on {} cores, spread over many processes",
            val(rq),
            s.cores
        ),
    };
    Ok(Verdict {
        statement,
        component: "cpu".into(),
        culprit: top.map(culprit),
        supports: true,
        strength,
        note: format!("{nums}{who}"),
    })
}

fn memory(s: &UseSnapshot, th: &Thresholds) -> Result<Verdict, Untested> {
    let r = s
        .resource("memory")
        .ok_or_else(|| unreadable(s, "memory"))?;
    let used = sig(r, "used");
    let avail_gib = val(sig(r, "available"));
    let host = r.status;
    let grower = s.processes.growing.first();
    let tte_s = grower.map(|p| avail_gib * 1024.0 / p.rss_growth_mib_per_s.max(0.001));
    let nums = format!(
        "used {:.0}% ({avail_gib:.1} GiB available), swap {:.0} pages/s, major faults {:.0}/s, PSI memory some {:.0}%, OOM kills in window {:.0}",
        val(used),
        val(sig(r, "swap_pages")),
        val(sig(r, "major_faults")),
        val(sig(r, "psi_some")),
        val(sig(r, "oom_kills"))
    );
    let growth = grower.map(|p| {
        format!(
            "{} (pid {}) RSS grew {:.0} MiB/s to {:.0} MiB",
            p.name, p.pid, p.rss_growth_mib_per_s, p.rss_mib
        )
    });
    let eta = tte_s.map(|t| {
        if t < 120.0 {
            format!("{t:.0} s")
        } else {
            format!("{:.0} min", t / 60.0)
        }
    });
    let soon = tte_s.is_some_and(|t| t <= th.memory.exhaustion_horizon_s);
    // The kernel already killed for memory: that settles it, and the victim is the suspect
    // (its live successor, if a supervisor restarted it).
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
        return Ok(Verdict {
            statement: format!(
                "OOM kills: the kernel killed {} {times} time(s) recently ({limit}); last {:.0} s ago{}",
                last.name,
                last.seconds_ago,
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
            strength: Strength::Strong,
            note: format!("{limit}; {nums}"),
        });
    }
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
    let statement = match (&growth, &eta) {
        (Some(g), Some(e)) => format!(
            "Memory growth: {g}; at this rate available memory ({avail_gib:.1} GiB) is exhausted in ~{e}"
        ),
        _ => match blame {
            Some(p) => format!(
                "Memory pressure: {}; largest: {} (pid {}) at {:.0} MiB RSS",
                nums, p.name, p.pid, p.rss_mib
            ),
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
        culprit: blame.map(culprit),
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
    let nums = format!(
        "{}: busy {:.0}%, await {:.1} ms, queue {:.1}{}",
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
    let both = st(sig(r, "busy")) >= Status::Warning
        && st(sig(r, "await")).max(st(sig(r, "queue_depth"))) >= Status::Warning;
    let io = s.processes.top_io.first();
    let by = io
        .map(|u| {
            format!(
                "; busiest process: {} (pid {}) reading {:.0} MiB/s, writing {:.0} MiB/s",
                u.name, u.pid, u.read_mib_per_s, u.write_mib_per_s
            )
        })
        .unwrap_or_default();
    Ok(Verdict {
        statement: format!(
            "Disk I/O saturation on {}: {nums}{by}",
            r.resource.trim_start_matches("disk:")
        ),
        component: r.resource.clone(),
        culprit: io.map(|u| Culprit {
            pid: Some(u.pid),
            name: u.name.clone(),
        }),
        supports: true,
        strength: if both { lean(r.status) } else { Strength::Weak },
        note: nums,
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
    let what = if st(inodes) > st(space) {
        "out of inodes"
    } else {
        "full"
    };
    Ok(Verdict {
        statement: format!("Filesystem {mount} is {what}: {nums}"),
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
        return Ok(against(
            "No network errors, drops or retransmits".into(),
            "network",
            format!(
                "{} interfaces without errors or drops; TCP retransmits {:.1}%, listen overflows {:.0}",
                s.resources_of("net:").count(),
                tcp.map(|t| val(sig(t, "retransmits"))).unwrap_or(0.0),
                tcp.map(|t| val(sig(t, "listen_overflows"))).unwrap_or(0.0)
            ),
        ));
    }
    let nums = format!("{}: {}", r.resource, bad.join(", "));
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
        (true, Some(f)) => (
            format!(
                "{} (pid {}) is at {:.0}% of its open-files limit ({} of {})",
                f.name, f.pid, f.used_pct, f.open, f.limit
            ),
            Some(Culprit {
                pid: Some(f.pid),
                name: f.name.clone(),
            }),
        ),
        _ => (
            format!("System-wide file descriptors near fs.file-max: {nums}"),
            None,
        ),
    };
    Ok(Verdict {
        statement,
        component: culprit
            .as_ref()
            .map(|c| format!("process:{}", c.name))
            .unwrap_or_else(|| "fd".into()),
        culprit,
        supports: true,
        strength: lean(r.status),
        note: nums,
    })
}
