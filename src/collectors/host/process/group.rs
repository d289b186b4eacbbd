//! Processes summed per program (a pool of workers is one), the programs worth showing, and the
//! nearest memory limit of a growing one.

use super::facts::ProcFacts;
use super::sampler::{MIB, Sampling};
use super::{MemLimit, ProcessInfo, ProgramGroup};
use crate::collectors::host::identity;
use crate::collectors::host::signal::round2;
use std::collections::HashMap;

/// A group being summed, with (weight, pid) of its processes for ranking the pids.
type GroupAcc = (ProgramGroup, Vec<(f64, u32)>);

/// Sums processes per program; keeps the busiest by CPU and any that grows, does I/O or holds
/// the most descriptors.
pub(super) fn group(
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
