//! File descriptors: system-wide use vs. `fs.file-max`, and the processes nearest their own
//! `RLIMIT_NOFILE` soft limit (counted from `/proc/<pid>/fd`, limit from `/proc/<pid>/limits`).

use super::signal::{ResourceReport, Signal, Status};
use crate::config::FdThresholds;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Parses /proc/sys/fs/file-nr: (allocated, max).
pub fn parse_file_nr(text: &str) -> Result<(u64, u64), String> {
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|w| w.parse::<u64>().map_err(|e| format!("`{w}`: {e}")))
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [alloc, _, max] if *max > 0 => Ok((*alloc, *max)),
        [_, _, _] => Err("fs.file-max is 0".into()),
        _ => Err(format!("expected 3 numbers, found {}", v.len())),
    }
}

/// The soft "Max open files" limit from /proc/<pid>/limits (None when unlimited).
pub fn parse_nofile_limit(text: &str) -> Result<Option<u64>, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or("no `Max open files` line")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .ok_or("`Max open files` has no soft limit")?;
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse::<u64>()
        .map(Some)
        .map_err(|e| format!("soft limit `{soft}`: {e}"))
}

/// One process's open files against its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdUse {
    pub pid: u32,
    pub name: String,
    pub open: u64,
    pub limit: u64,
    pub used_pct: f64,
    pub status: Status,
    /// The program, as an operator names it (empty in snapshots from before it existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub program: String,
}

/// Counts the open files under `/proc/<pid>` (`dir`) against the soft limit in its `limits`
/// text; None if unreadable or unlimited.
pub fn fd_use_with_limits(
    dir: &Path,
    pid: u32,
    name: &str,
    limits: &str,
    th: &FdThresholds,
) -> Option<FdUse> {
    let limit = parse_nofile_limit(limits).ok()??;
    if limit == 0 {
        return None;
    }
    let open = std::fs::read_dir(dir.join("fd")).ok()?.count() as u64;
    let used_pct = super::signal::round2(100.0 * open as f64 / limit as f64);
    Some(FdUse {
        pid,
        name: name.to_string(),
        open,
        limit,
        used_pct,
        status: Status::of(used_pct, th.process_used_pct),
        program: String::new(),
    })
}

/// The fd resource: system-wide use plus the process nearest its limit.
pub fn report(
    system: Option<(u64, u64)>,
    worst: Option<&FdUse>,
    th: &FdThresholds,
) -> ResourceReport {
    let mut util = vec![];
    if let Some((alloc, max)) = system {
        util.push(
            Signal::rated(
                "system_used",
                100.0 * alloc as f64 / max as f64,
                "%",
                th.system_used_pct,
                "/proc/sys/fs/file-nr",
            )
            .with_note(format!("{alloc} of {max}")),
        );
    }
    if let Some(w) = worst {
        util.push(
            Signal::rated(
                "worst_process_used",
                w.used_pct,
                "% of its limit",
                th.process_used_pct,
                "/proc/<pid>/fd",
            )
            .with_note(format!(
                "{} (pid {}) has {} of {} open",
                w.name, w.pid, w.open, w.limit
            )),
        );
    }
    ResourceReport::new("fd", util, vec![], vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_nr() {
        assert_eq!(parse_file_nr("305\t0\t2466170\n").unwrap(), (305, 2466170));
        assert!(
            parse_file_nr("305\t0\n")
                .unwrap_err()
                .contains("expected 3")
        );
        assert!(parse_file_nr("305 0 0").unwrap_err().contains("file-max"));
        assert!(parse_file_nr("a 0 1").is_err());
    }

    #[test]
    fn limits() {
        let l = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 1048576              files     \n";
        assert_eq!(parse_nofile_limit(l).unwrap(), Some(1024));
        assert_eq!(
            parse_nofile_limit("Max open files  unlimited unlimited files").unwrap(),
            None
        );
        assert!(parse_nofile_limit("Max cpu time 1 1 s").is_err());
        assert!(
            parse_nofile_limit("Max open files    lots  1 files")
                .unwrap_err()
                .contains("lots")
        );
    }

    #[test]
    fn own_process_is_countable() {
        let dir = Path::new("/proc/self");
        let limits = std::fs::read_to_string(dir.join("limits")).unwrap();
        let me = fd_use_with_limits(
            dir,
            std::process::id(),
            "self",
            &limits,
            &FdThresholds::default(),
        )
        .unwrap();
        assert!(me.open >= 3 && me.limit >= me.open);
    }
}
