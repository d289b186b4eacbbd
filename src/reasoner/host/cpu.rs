//! CPU: saturation by the run queue and stalls, told from tasks waiting on the disk, a cgroup's
//! quota and the hypervisor's steal; blamed on the busiest program.

use super::{Untested, Verdict, against, blame, culprit, io_pressure, sig, st, unreadable, val};
use crate::agent::board::{Culprit, Strength};
use crate::collectors::outputs::Status;
use crate::collectors::outputs::UseSnapshot;
use crate::config::Thresholds;

pub(super) fn cpu(s: &UseSnapshot, th: &Thresholds) -> Result<Verdict, Untested> {
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

#[cfg(test)]
mod tests {
    use super::super::judge;
    use super::super::tests::{group, memory_ok, report, snapshot};
    use super::*;
    use crate::collectors::host::process::ProcessReport;
    use crate::collectors::host::signal::{ResourceReport, Signal};
    use crate::taxonomy::Category;

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
