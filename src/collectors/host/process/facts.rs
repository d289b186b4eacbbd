//! What the side thread reads of each process during the window: program, command line,
//! cgroup, threads, descriptors, limits and a mid-window RSS.

use super::label;
use crate::collectors::host::fd::{self, FdUse};
use crate::collectors::host::identity;
use crate::config::FdThresholds;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// What the side thread read of one process.
#[derive(Debug, Clone, Default)]
pub struct ProcFacts {
    pub comm: String,
    pub program: String,
    /// The parent's pid.
    pub ppid: u32,
    /// The command line's arguments with digits folded, so the workers of one pool (`--id 3`,
    /// `--id 4`) share it while different invocations of one binary do not.
    pub args: String,
    pub exe: Option<String>,
    pub unit: Option<String>,
    pub cgroup: String,
    pub threads: u64,
    pub fd: Option<FdUse>,
    pub limits: String,
    /// (when, RSS bytes) read in the middle of the window.
    pub rss_mid: Option<(Instant, u64)>,
    /// Whether the process was in D state at the read.
    pub blocked: bool,
}

impl ProcFacts {
    /// The program, with its kernel name beside it when that is a run-time rename.
    pub fn label(&self) -> String {
        label(&self.program, std::slice::from_ref(&self.comm))
    }
}

/// Reads [`ProcFacts`] of every process under `proc_root` (run in a side thread during the
/// window). Unreadable processes (gone, or not ours) are left out.
pub fn read_facts(proc_root: &Path, fd_th: &FdThresholds) -> HashMap<u32, ProcFacts> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for e in dir.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Some(f) = facts_of(&e.path(), pid, fd_th) {
            out.insert(pid, f);
        }
    }
    // A worker started by its runtime (`python -c "...spawn_main..."`, `node -e`) is the
    // program of the parent that started it.
    let generic: Vec<u32> = out
        .iter()
        .filter(|(_, f)| identity::is_generic(&f.program))
        .map(|(pid, _)| *pid)
        .collect();
    for pid in generic {
        let mut at = pid;
        for _ in 0..3 {
            let Some(parent) = out
                .get(&at)
                .map(|f| f.ppid)
                .and_then(|pp| out.get(&pp).map(|f| (pp, f)))
            else {
                break;
            };
            if !identity::is_generic(&parent.1.program) {
                let (program, args) = (parent.1.program.clone(), parent.1.args.clone());
                if let Some(f) = out.get_mut(&pid) {
                    f.program = program;
                    f.args = args;
                }
                break;
            }
            at = parent.0;
        }
    }
    out
}

/// The arguments of a command line with every run of digits folded to `#`, at most 160 bytes.
fn fold_args(argv: &[String]) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in argv
        .iter()
        .skip(1)
        .flat_map(|a| a.chars().chain(std::iter::once(' ')))
    {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
        if out.len() >= 160 {
            break;
        }
    }
    out
}

fn facts_of(dir: &Path, pid: u32, fd_th: &FdThresholds) -> Option<ProcFacts> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(str::trim)
    };
    let comm = field("Name").unwrap_or_default().to_string();
    // Kernel threads have no memory map and no command line: name them as the kernel does.
    let argv: Vec<String> = std::fs::read(dir.join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let program = identity::program_name(&comm, exe.as_deref(), &argv);
    let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    let limits = std::fs::read_to_string(dir.join("limits")).unwrap_or_default();
    let rss_kib = field("VmRSS")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let fd = fd::fd_use_with_limits(dir, pid, &comm, &limits, fd_th).map(|mut f| {
        f.program = program.clone();
        f
    });
    Some(ProcFacts {
        ppid: field("PPid").and_then(|p| p.parse().ok()).unwrap_or(0),
        args: fold_args(&argv),
        unit: identity::unit_of(&cgroup),
        threads: field("Threads").and_then(|t| t.parse().ok()).unwrap_or(1),
        blocked: field("State").is_some_and(|s| s.starts_with('D')),
        rss_mid: (!argv.is_empty()).then(|| (Instant::now(), rss_kib * 1024)),
        comm,
        program,
        exe,
        cgroup,
        fd,
        limits,
    })
}
