//! File descriptors: a process near its open-files limit, or the whole host near fs.file-max.

use super::{Untested, Verdict, against, blame, lean, sig, st, unreadable, val};
use crate::agent::board::Culprit;
use crate::collectors::outputs::Status;
use crate::collectors::outputs::UseSnapshot;

pub(super) fn fds(s: &UseSnapshot) -> Result<Verdict, Untested> {
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
                crate::collectors::outputs::label(&program, std::slice::from_ref(&f.name)),
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
