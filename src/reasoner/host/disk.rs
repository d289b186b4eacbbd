//! Disks: I/O saturation of a block device (busy, and tasks waiting on it) with the programs
//! doing the I/O, and filesystems full of data or out of inodes.

use super::{Untested, Verdict, against, blame, io_pressure, lean, sig, st, unreadable, val};
use crate::agent::board::{Culprit, Strength};
use crate::collectors::outputs::ProgramGroup;
use crate::collectors::outputs::UseSnapshot;
use crate::collectors::outputs::{ResourceReport, Status};

/// The worst resource with a prefix, by status then by a key signal's value.
fn worst<'a>(s: &'a UseSnapshot, prefix: &'a str, key: &str) -> Option<&'a ResourceReport> {
    s.resources_of(prefix).max_by(|a, b| {
        a.status
            .cmp(&b.status)
            .then(val(sig(a, key)).total_cmp(&val(sig(b, key))))
    })
}

pub(super) fn disk_io(s: &UseSnapshot) -> Result<Verdict, Untested> {
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

pub(super) fn disk_full(s: &UseSnapshot) -> Result<Verdict, Untested> {
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
