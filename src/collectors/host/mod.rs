//! Host USE collectors: utilization, saturation and errors for every resource of THIS host, all
//! measured over ONE sampling window of at most one second.
//!
//! One room per resource ([`cpu`], [`memory`], [`disk`], [`network`], [`fd`], [`process`]), each
//! with its own `/proc` parser and report builder; [`pressure`] parses PSI for all of them. This
//! module reads every counter at the start of the window, samples the run queue inside it, reads
//! again at the end, and hands the pairs to the rooms. sysinfo serves processes; `/proc` serves
//! what sysinfo does not (run queue, steal, PSI, vmstat, diskstats, TCP counters, fd limits).
//! [`identity`] names each process's program as an operator would, and [`sockets`] reads every
//! TCP connection's lifetime retransmits (inet_diag), where the window holds too few packets.
//! A side thread reads the per-process facts during the window; processes whose memory grows
//! are followed a little longer after it. oncall's own threads are left out of the run queue.
//! A file that cannot be read or parsed becomes an [`Unreadable`] entry with its reason; the
//! snapshot always completes.

pub mod cpu;
pub mod disk;
pub mod fd;
pub mod identity;
pub mod memory;
pub mod network;
pub mod pressure;
pub mod process;
pub mod signal;
pub mod sockets;

mod counters;
mod use_snapshot;

use crate::config::{HostSettings, Thresholds};
use chrono::Utc;
use counters::{Proc, pair, read_counters};
use signal::{ResourceReport, Status, Unreadable};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use process::{ProcessInfo, ProcessReport};
pub use use_snapshot::{HostUseSnapshot, SnapshotArgs, UseSnapshot};

/// Takes one snapshot (blocking for the window). Never fails: what cannot be read is listed.
pub fn take(settings: &HostSettings, th: &Thresholds, window: Duration, top: usize) -> UseSnapshot {
    let p = Proc {
        root: &settings.proc_root,
    };
    let mut un = vec![];
    let taken_at = Utc::now();

    // Start of the window.
    let sampler = process::ProcessSampler::start();
    let own_before = cpu::own_ticks(&settings.proc_root);
    let start = Instant::now();
    let before = read_counters(&p, &mut un);
    // Inside the window: a side thread reads who every process is (program, unit, threads,
    // descriptors, a mid-window RSS) while this one samples the run queue ten times.
    let side = {
        let root = settings.proc_root.clone();
        let fd_th = th.fd.clone();
        let half = window / 2;
        std::thread::Builder::new()
            .name("oncall-proc-facts".into())
            .spawn(move || {
                std::thread::sleep(half / 2);
                process::read_facts(&root, &fd_th)
            })
    };
    let steps = 10u32;
    let mut run_queue = vec![];
    let mut blocked = vec![];
    for i in 1..=steps {
        let due = window * i / steps;
        if let Some(rest) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
        if let Some((n, d)) = p.read("stat").ok().as_deref().and_then(cpu::parse_procs) {
            run_queue.push(n.saturating_sub(cpu::own_runnable(&settings.proc_root)));
            blocked.push(d);
        }
    }
    // End of the window.
    let after = read_counters(&p, &mut un);
    let own_ticks = match (own_before, cpu::own_ticks(&settings.proc_root)) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    let elapsed = start.elapsed().max(Duration::from_millis(1));
    let window_s = elapsed.as_secs_f64();
    let window_ms = window_s * 1000.0;

    let mut resources = vec![];
    let cores = after.stat.as_ref().map(|s| s.cores.len()).unwrap_or(0);

    // CPU
    if let (Some(a), Some(b)) = (&before.stat, &after.stat) {
        let loadavg = p.parse("loadavg", "cpu.load", cpu::parse_loadavg, &mut un);
        resources.push(cpu::report(
            &cpu::CpuInputs {
                before: a,
                after: b,
                run_queue: &run_queue,
                blocked: &blocked,
                own_ticks,
                psi: pair(&before.psi[0], &after.psi[0]),
                loadavg,
                window_us: window_s * 1e6,
            },
            &th.cpu,
            &mut un,
        ));
    }

    // Memory
    let cgroup_oom = [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
    ]
    .iter()
    .find_map(|f| {
        let n = memory::parse_cgroup_oom_kill(&std::fs::read_to_string(f).ok()?)?;
        Some((f.to_string(), n))
    });
    // The kernel log is read only when the kernel has counted an OOM kill since boot.
    let lookback_s = th.memory.oom_lookback_s;
    let recent_oom = after
        .vmstat
        .as_ref()
        .and_then(|v| v.oom_kill)
        .filter(|n| *n > 0 && lookback_s > 0.0)
        .map(|_| {
            let uptime = p.read("uptime").and_then(|t| {
                t.split_whitespace()
                    .next()
                    .and_then(|u| u.parse::<f64>().ok())
                    .ok_or_else(|| format!("uptime: cannot read {t:?}"))
            })?;
            Ok(memory::parse_kmsg_oom(
                &memory::read_kmsg()?,
                uptime,
                lookback_s,
            ))
        });
    let meminfo = p.read("meminfo").and_then(|t| memory::parse_meminfo(&t));
    resources.push(memory::report(
        &memory::MemoryInputs {
            meminfo: meminfo.clone(),
            vmstat: pair(&before.vmstat, &after.vmstat),
            psi: pair(&before.psi[1], &after.psi[1]),
            cgroup_oom,
            recent_oom: recent_oom.clone(),
            oom_lookback_s: lookback_s,
            window_s,
        },
        &th.memory,
        &mut un,
    ));

    // Disks: devices, then filesystems.
    if let (Some(a), Some(b)) = (&before.diskstats, &after.diskstats) {
        let sys_block: HashSet<String> = std::fs::read_dir("/sys/block")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut devs = disk::device_reports(a, b, &sys_block, window_ms, &th.disk, &mut un);
        if let (Some(pa), Some(pb)) = (&before.psi[2], &after.psi[2])
            && let Ok(pct) = pressure::stall_pct(pa.some.total_us, pb.some.total_us, window_s * 1e6)
        {
            // PSI io is host-wide: attach it to every device report as context.
            let s = signal::Signal::rated(
                "psi_io_some",
                pct,
                "% of window",
                th.disk.psi_some_pct,
                "/proc/pressure/io",
            );
            for d in &mut devs {
                d.push_saturation(s.clone());
            }
        }
        resources.extend(devs);
    }
    if let Some(mounts) = p.parse("self/mounts", "filesystems", disk::parse_mounts, &mut un) {
        for m in &mounts {
            match disk::statvfs(m) {
                Ok(u) => resources.extend(disk::fs_report(m, &u, &th.filesystem).map(|mut r| {
                    disk::attach_crowded_dirs(&mut r, Path::new(&m.mount_point));
                    r
                })),
                Err(e) => un.push(Unreadable::new(
                    &format!("fs:{}", m.mount_point),
                    "statvfs",
                    e,
                )),
            }
        }
    }

    // Network
    if let (Some(a), Some(b)) = (&before.netdev, &after.netdev) {
        let speeds: HashMap<String, u64> = b
            .keys()
            .filter_map(|n| {
                let s = std::fs::read_to_string(format!("/sys/class/net/{n}/speed")).ok()?;
                Some((n.clone(), s.trim().parse::<u64>().ok()?))
            })
            .collect();
        resources.extend(network::interface_reports(
            a,
            b,
            &speeds,
            window_s,
            &th.network,
            &mut un,
        ));
    }
    let mut tcp = match (&before.tcp, &after.tcp) {
        (Some(a), Some(b)) => network::tcp_report(a, b, &th.network, &mut un),
        _ => None,
    };
    // A full connection-tracking table drops new connections whatever the sockets say.
    if let (Ok(n), Ok(m)) = (
        p.read("sys/net/netfilter/nf_conntrack_count"),
        p.read("sys/net/netfilter/nf_conntrack_max"),
    ) && let Some(s) = network::conntrack_signal(&n, &m, &th.network)
    {
        tcp.get_or_insert_with(|| ResourceReport::new("tcp", vec![], vec![], vec![]))
            .push_saturation(s);
    }
    // Per socket (inet_diag): lifetime counters, so one reading at the end of the window does.
    // Netlink answers for this process's network namespace, which is the live /proc's only.
    let mut lossy_peers = vec![];
    let mut listen_queue: Option<(sockets::FullListener, Option<(u32, String)>)> = None;
    let sock_source = "NETLINK_SOCK_DIAG";
    if settings.proc_root != Path::new("/proc") {
        un.push(Unreadable::new(
            "tcp.sockets",
            sock_source,
            format!(
                "per-socket view skipped: it reads this network namespace, not {}",
                settings.proc_root.display()
            ),
        ));
    } else {
        match sockets::read() {
            Ok(dump) => {
                for problem in dump.problems {
                    un.push(Unreadable::new("tcp.sockets", sock_source, problem));
                }
                if dump.skipped > 0 {
                    un.push(Unreadable::new(
                        "tcp.sockets",
                        sock_source,
                        format!("{} socket message(s) could not be parsed", dump.skipped),
                    ));
                }
                let view = sockets::view(&dump.sockets, &th.network, |inodes| {
                    sockets::owners(&settings.proc_root, inodes)
                });
                tcp.get_or_insert_with(|| ResourceReport::new("tcp", vec![], vec![], vec![]))
                    .push_error(sockets::signal(&view, &th.network));
                lossy_peers = view.lossy;
                // The fullest accept queue, and who listens there: the walk over every
                // process's descriptors is paid only for a queue at the warning level.
                listen_queue = sockets::listen_queues(&dump.sockets)
                    .into_iter()
                    .next()
                    .map(|l| {
                        let owner = (l.used_pct() >= th.network.accept_queue_pct.warn)
                            .then(|| {
                                sockets::owners(&settings.proc_root, &HashSet::from([l.inode]))
                                    .remove(&l.inode)
                            })
                            .flatten();
                        (l, owner)
                    });
            }
            Err(e) => un.push(Unreadable::new("tcp.sockets", sock_source, e)),
        }
    }
    resources.extend(tcp);

    // Processes and file descriptors.
    let facts = match side.map_err(|e| e.to_string()).and_then(|h| {
        h.join()
            .map_err(|_| "the process reader thread panicked".to_string())
    }) {
        Ok(f) => f,
        Err(e) => {
            un.push(Unreadable::new("processes.identity", "/proc/<pid>", e));
            HashMap::new()
        }
    };
    let mut processes = match sampler {
        Ok(s) => s.finish(
            window_s,
            &facts,
            &process::Sampling {
                top,
                growth_mib_per_s: th.memory.process_growth_mib_per_s,
                growth_min_mib: th.memory.process_growth_min_mib,
                extend: Duration::from_millis(settings.growth_extend_ms),
                proc_root: &settings.proc_root,
                cgroup_root: PathBuf::from("/sys/fs/cgroup"),
                host_memory: meminfo.as_ref().ok().map(|m| (m.total, m.available)),
            },
        ),
        Err(e) => {
            un.push(Unreadable::new("processes", "sysinfo", e));
            ProcessReport::default()
        }
    };
    // The fullest accept queue, named by the listening program.
    if let Some((l, owner)) = listen_queue {
        let who = match owner {
            Some((pid, comm)) => match facts.get(&pid) {
                Some(f) => format!("{} (pid {pid})", f.label()),
                None => format!("{comm} (pid {pid})"),
            },
            None => "its listener".into(),
        };
        let s = signal::Signal::rated(
            "accept_queue_used",
            l.used_pct(),
            "% of backlog",
            th.network.accept_queue_pct,
            "NETLINK_SOCK_DIAG",
        )
        .with_note(format!(
            "port {}: {} connection(s) wait to be accepted by {who}, backlog {}",
            l.port, l.queued, l.backlog
        ));
        if let Some(r) = resources.iter_mut().find(|r| r.resource == "tcp") {
            r.push_saturation(s);
        }
    }
    // The processes behind lossy connections, by program rather than their cut `comm`.
    for peer in &mut lossy_peers {
        if let Some(f) = peer.pid.and_then(|pid| facts.get(&pid)) {
            peer.process = Some(f.label());
        }
    }
    let file_nr = p.parse("sys/fs/file-nr", "fd.system", fd::parse_file_nr, &mut un);
    resources.push(fd::report(file_nr, processes.top_fds.first(), &th.fd));
    if let Some(Ok(k)) = recent_oom {
        processes.oom_killed = k.into_iter().take(top).collect();
    }

    let mut abnormal: Vec<(Status, String)> = resources
        .iter()
        .flat_map(|r| {
            r.signals()
                .filter(|s| s.status != Status::Normal)
                .map(move |s| {
                    let note = s
                        .note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    (
                        s.status,
                        format!(
                            "{} {}: {} {} [{:?}]{note}",
                            r.resource, s.metric, s.value, s.unit, s.status
                        )
                        .replace("[Warning]", "[warning]")
                        .replace("[Critical]", "[critical]"),
                    )
                })
        })
        .collect();
    abnormal.sort_by_key(|a| std::cmp::Reverse(a.0));

    UseSnapshot {
        host: sysinfo::System::host_name().unwrap_or_else(|_| "unknown-host".into()),
        taken_at,
        window_ms: window_ms.round() as u64,
        cores,
        abnormal: abnormal.into_iter().map(|(_, s)| s).collect(),
        resources,
        processes,
        lossy_peers,
        unreadable: un,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn snapshot_of_this_host_reads_every_room() {
        let c = Config::default();
        let snap = take(&c.host, &c.thresholds, Duration::from_millis(200), 3);
        assert!(snap.cores >= 1);
        for r in ["cpu", "memory", "fd"] {
            assert!(
                snap.resource(r).is_some(),
                "missing {r}: {:?}",
                snap.unreadable
            );
        }
        assert!(snap.resources_of("fs:").count() >= 1);
        assert!(
            snap.window_ms >= 200 && snap.window_ms < 400,
            "{}",
            snap.window_ms
        );
        assert!(!snap.processes.top_cpu.is_empty());
    }

    #[test]
    fn a_missing_proc_root_degrades_to_unreadable_signals() {
        let mut c = Config::default();
        c.host.proc_root = PathBuf::from("/nonexistent-proc");
        let snap = take(&c.host, &c.thresholds, Duration::from_millis(100), 3);
        assert!(snap.resource("cpu").is_none());
        assert!(
            snap.unreadable
                .iter()
                .any(|u| u.source.contains("/nonexistent-proc/stat"))
        );
        assert!(snap.unreadable.iter().all(|u| !u.why.is_empty()));
    }
}
