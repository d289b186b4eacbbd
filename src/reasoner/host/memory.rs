//! Memory: OOM kills weighed by their age and the report, a steady leak with its time to the
//! nearest limit, and pressure now.

use super::{Report, Untested, Verdict, against, blame, culprit, sig, unreadable, val};
use crate::agent::board::{Culprit, Strength};
use crate::collectors::outputs::ProgramGroup;
use crate::collectors::outputs::Status;
use crate::collectors::outputs::{ProcessInfo, UseSnapshot};
use crate::config::Thresholds;

/// The program a process belongs to, from the snapshot's per-program totals.
fn group_of(s: &UseSnapshot, pid: u32) -> Option<&ProgramGroup> {
    s.processes.groups.iter().find(|g| g.pids.contains(&pid))
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

fn eta(t: f64) -> String {
    if t < 120.0 {
        format!("{t:.0} s")
    } else if t < 7200.0 {
        format!("{:.0} min", t / 60.0)
    } else {
        format!("{:.1} h", t / 3600.0)
    }
}

pub(super) fn memory(
    s: &UseSnapshot,
    th: &Thresholds,
    report: &Report<'_>,
) -> Result<Verdict, Untested> {
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

#[cfg(test)]
mod tests {
    use super::super::judge;
    use super::super::tests::{group, memory_ok, report, snapshot};
    use super::*;
    use crate::collectors::host::memory::OomKill;
    use crate::collectors::host::process::{MemLimit, ProcessReport};
    use crate::taxonomy::Category;

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
}
