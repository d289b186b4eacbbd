//! `host.signal_process`: stop, terminate or kill one process (a runaway loop, a leaking worker).
//!
//! A pid alone does not name a process: once the process exits, the kernel hands the number to
//! the next one. So a request binds the process's identity into its arguments — the pid, its
//! start time (field 22 of `/proc/<pid>/stat`, clock ticks after boot) and its executable (the
//! target of `/proc/<pid>/exe`) — and the approval, which binds the exact arguments, binds that
//! identity with them. At execution all three are read again and the signal is refused on any
//! difference. The signal goes through a pidfd opened before that last check, so it reaches the
//! process that was checked or none.
//!
//! Some targets are refused whatever an approval says, both when the request is filed and at
//! execution: pid 1, oncall itself and every one of its threads, and kernel threads.

use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which signal to send.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
pub enum ProcessSignal {
    /// Ask the process to exit cleanly (SIGTERM). Prefer this.
    #[serde(rename = "TERM")]
    Term,
    /// Kill it at once (SIGKILL); only when TERM did not work.
    #[serde(rename = "KILL")]
    Kill,
    /// Pause it (SIGSTOP) so it stops consuming CPU while someone investigates.
    #[serde(rename = "STOP")]
    Stop,
    /// Resume a paused process (SIGCONT).
    #[serde(rename = "CONT")]
    Cont,
}

impl ProcessSignal {
    fn name(self) -> &'static str {
        match self {
            ProcessSignal::Term => "TERM",
            ProcessSignal::Kill => "KILL",
            ProcessSignal::Stop => "STOP",
            ProcessSignal::Cont => "CONT",
        }
    }

    fn signal(self) -> Signal {
        match self {
            ProcessSignal::Term => Signal::SIGTERM,
            ProcessSignal::Kill => Signal::SIGKILL,
            ProcessSignal::Stop => Signal::SIGSTOP,
            ProcessSignal::Cont => Signal::SIGCONT,
        }
    }
}

/// Arguments of `host.signal_process`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignalArgs {
    /// The process id to signal, as shown by host.use_snapshot. Never 1, never oncall itself or
    /// one of its threads, never a kernel thread.
    pub pid: u32,
    /// The signal: TERM (default choice), KILL, STOP or CONT.
    pub signal: ProcessSignal,
    /// Leave this out: the request fills it in. The process's start time (clock ticks after boot,
    /// field 22 of /proc/<pid>/stat); with `exe` it ties the approval to this very process, so a
    /// new process that later gets the same pid is refused. If given, it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Leave this out: the request fills it in. The process's executable, as /proc/<pid>/exe
    /// links to it (e.g. "/usr/bin/python3"). If given, it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

/// What was done.
#[derive(Debug, Serialize)]
pub struct SignalOutcome {
    pub pid: u32,
    pub signal: ProcessSignal,
    pub sent: bool,
}

/// PF_KTHREAD in the flags of `/proc/<pid>/stat`: the task is a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;
/// kthreadd, the parent of every kernel thread.
const KTHREADD: u32 = 2;

/// Who a pid is right now, as /proc tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks after boot.
    pub start_time: u64,
    /// Where `/proc/<pid>/exe` links, without the " (deleted)" the kernel adds once the file is
    /// replaced on disk (an upgrade does not make the running process another one).
    pub exe: String,
    /// The kernel's short name for it (`/proc/<pid>/comm`), for people.
    pub comm: String,
}

/// Why a process cannot be signalled as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("pid {pid} does not exist any more (the process exited)")]
    Gone { pid: u32 },
    #[error("cannot read {path}: {reason}; refusing to signal a process oncall cannot identify")]
    Unreadable {
        pid: u32,
        path: String,
        reason: String,
    },
    #[error("pid {pid} {why}; refusing to signal it")]
    Protected { pid: u32, why: String },
    #[error(
        "pid {pid} is now a different process: {what}; refusing to signal it (request it again for the process that has this pid now, if that is the one to stop)"
    )]
    Changed { pid: u32, what: String },
    #[error(
        "pid {pid}: the arguments carry no {missing}, so the process that was approved cannot be told from a new one with the same pid; file the request through oncall, which binds them, and have it approved again"
    )]
    Unbound { pid: u32, missing: &'static str },
}

/// The fields of `/proc/<pid>/stat` that decide who a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    flags: u64,
    start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts with field 3 (state): field N is at index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        flags: f.get(6)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

fn unreadable(pid: u32, path: &str, e: &std::io::Error) -> IdentityError {
    if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ESRCH) {
        IdentityError::Gone { pid }
    } else {
        IdentityError::Unreadable {
            pid,
            path: path.to_string(),
            reason: e.to_string(),
        }
    }
}

fn read_stat(pid: u32) -> Result<Stat, IdentityError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| unreadable(pid, &path, &e))?;
    parse_stat(&text).ok_or_else(|| IdentityError::Unreadable {
        pid,
        path,
        reason: "its fields could not be parsed".into(),
    })
}

/// The tids of oncall's own threads (`/proc/self/task`), the main one included.
pub fn own_threads() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The thread group (process) a task belongs to, from `Tgid:` in `/proc/<pid>/status`.
fn thread_group(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// Why `pid` must never be signalled, if it must not: pid 1, oncall itself or one of its
/// threads (a signal sent to a thread's id reaches its whole process), a kernel thread.
pub fn protected(pid: u32) -> Result<(), IdentityError> {
    let refuse = |why: &str| {
        Err(IdentityError::Protected {
            pid,
            why: why.to_string(),
        })
    };
    let me = std::process::id();
    if pid == 0 {
        return refuse("is not a process id");
    }
    if pid == 1 {
        return refuse("is init (pid 1)");
    }
    if pid == me {
        return refuse("is oncall itself");
    }
    if own_threads().contains(&pid) || thread_group(pid) == Some(me) {
        return refuse("is a thread of oncall itself (a signal to it reaches all of oncall)");
    }
    let stat = read_stat(pid)?;
    // A child of kthreadd is a kernel thread; inside a PID namespace pid 2 may be an ordinary
    // process, so its children count only when pid 2 is kthreadd.
    let kthreadd_child =
        stat.ppid == KTHREADD && read_stat(KTHREADD).is_ok_and(|k| k.flags & PF_KTHREAD != 0);
    if stat.flags & PF_KTHREAD != 0 || kthreadd_child {
        return refuse("is a kernel thread");
    }
    Ok(())
}

/// Who `pid` is now: its start time and executable. Refuses the protected targets first.
pub fn identify(pid: u32) -> Result<ProcessIdentity, IdentityError> {
    protected(pid)?;
    let stat = read_stat(pid)?;
    let path = format!("/proc/{pid}/exe");
    let exe = std::fs::read_link(&path).map_err(|e| match unreadable(pid, &path, &e) {
        // A zombie keeps its stat but has no executable any more.
        IdentityError::Gone { .. } if read_stat(pid).is_ok() => IdentityError::Unreadable {
            pid,
            path: path.clone(),
            reason: "the process has exited and is waiting to be reaped (a zombie)".into(),
        },
        other => other,
    })?;
    let exe = exe.to_string_lossy();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Ok(ProcessIdentity {
        pid,
        start_time: stat.start_time,
        exe: exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_string(),
        comm,
    })
}

/// Checks that `pid` is still the process with this start time and executable, and is not a
/// protected target. The check run at execution (and at request when the caller gave them).
pub fn verify(pid: u32, start_time: u64, exe: &str) -> Result<ProcessIdentity, IdentityError> {
    let now = identify(pid)?;
    let mut what = vec![];
    if now.start_time != start_time {
        what.push(format!(
            "it started at {} clock ticks after boot, the approved one at {start_time}",
            now.start_time
        ));
    }
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
    if now.exe != exe {
        what.push(format!("it runs {}, the approved one ran {exe}", now.exe));
    }
    if what.is_empty() {
        Ok(now)
    } else {
        Err(IdentityError::Changed {
            pid,
            what: format!("{} ({})", what.join("; "), now.comm),
        })
    }
}

/// The arguments with the process's identity filled in, or why they cannot be: what a request
/// binds (and so what its approval covers).
pub fn bind_identity(mut args: SignalArgs) -> Result<SignalArgs, IdentityError> {
    let live = match (args.start_time, &args.exe) {
        (Some(t), Some(e)) => verify(args.pid, t, e)?,
        (Some(t), None) => {
            let live = identify(args.pid)?;
            verify(args.pid, t, &live.exe)?
        }
        (None, Some(e)) => {
            let live = identify(args.pid)?;
            verify(args.pid, live.start_time, e)?
        }
        (None, None) => identify(args.pid)?,
    };
    args.start_time = Some(live.start_time);
    args.exe = Some(live.exe);
    Ok(args)
}

/// Sends `signal` to `pid` only if it is still the process `start_time` and `exe` name. The pid
/// is pinned by a pidfd before the last check, so the signal cannot reach a process that took
/// the pid after it.
fn signal_checked(
    pid: u32,
    start_time: u64,
    exe: &str,
    signal: ProcessSignal,
) -> Result<(), String> {
    let pidfd = pidfd::open(pid);
    verify(pid, start_time, exe).map_err(|e| e.to_string())?;
    match pidfd {
        Ok(fd) => pidfd::send(&fd, signal.signal()).map_err(|e| match e {
            nix::errno::Errno::ESRCH => IdentityError::Gone { pid }.to_string(),
            e => format!("sending SIG{} to pid {pid} failed: {e}", signal.name()),
        }),
        // Kernels before 5.3 have no pidfd: the check above is then as close as it gets.
        Err(nix::errno::Errno::ENOSYS) => {
            let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} is out of range"))?;
            kill(Pid::from_raw(raw), signal.signal())
                .map_err(|e| format!("kill({pid}, SIG{}) failed: {e}", signal.name()))
        }
        Err(nix::errno::Errno::ESRCH) => Err(IdentityError::Gone { pid }.to_string()),
        Err(e) => Err(format!("cannot pin pid {pid} (pidfd_open): {e}")),
    }
}

/// pidfd_open(2) and pidfd_send_signal(2), which nix does not wrap.
mod pidfd {
    use nix::errno::Errno;
    use nix::libc;
    use nix::sys::signal::Signal;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub fn open(pid: u32) -> Result<OwnedFd, Errno> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| Errno::EINVAL)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if fd < 0 {
            return Err(Errno::last());
        }
        let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn send(fd: &OwnedFd, sig: Signal) -> Result<(), Errno> {
        // SAFETY: the descriptor is open for the whole call, the info pointer is NULL (the
        // kernel fills it in as for kill(2)) and the flags are 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if rc < 0 { Err(Errno::last()) } else { Ok(()) }
    }
}

/// Sends a signal to one process on this host. Live action: needs an approval.
pub struct SignalProcess;

impl SignalProcess {
    fn bad(message: String) -> ToolError {
        ToolError::BadArguments {
            tool: <Self as Tool>::NAME.into(),
            message,
        }
    }
}

#[async_trait]
impl Tool for SignalProcess {
    const NAME: &'static str = "host.signal_process";
    const DESCRIPTION: &'static str = "Live action (needs human approval): send TERM, KILL, STOP or CONT to one process on this host, e.g. to stop a runaway process. Give pid and signal; the request binds the process's start time and executable, so the approval covers that process only. Request it; never assume it ran.";
    const RISK: RiskClass = RiskClass::LiveAction;
    type Args = SignalArgs;
    type Output = SignalOutcome;

    fn effect(&self, _args: &SignalArgs) -> Option<crate::tool::EffectCheck> {
        Some(crate::tool::EffectCheck {
            tool: "host.use_snapshot".into(),
            args: serde_json::json!({}),
            measure: [("abnormal signals".to_string(), "/abnormal".to_string())].into(),
            settle_s: 2,
        })
    }

    fn bind(&self, args: Value) -> Result<Value, ToolError> {
        let args = if args.is_null() {
            Value::Object(Default::default())
        } else {
            args
        };
        let typed: SignalArgs =
            serde_json::from_value(args).map_err(|e| Self::bad(e.to_string()))?;
        let bound = bind_identity(typed).map_err(|e| Self::bad(e.to_string()))?;
        serde_json::to_value(bound).map_err(|e| ToolError::Failed {
            tool: Self::NAME.into(),
            message: format!("the bound arguments could not be serialized: {e}"),
        })
    }

    fn dry_run(&self, args: &SignalArgs) -> Option<serde_json::Value> {
        let name = std::fs::read_to_string(format!("/proc/{}/comm", args.pid))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "no such process now".into());
        Some(serde_json::json!({
            "kind": "signal",
            "would_run": format!("kill -{} {}", args.signal.name(), args.pid),
            "process": name,
            "exe": args.exe,
            "start_time": args.start_time,
            "refused_if": "pid 1, oncall itself or one of its threads, a kernel thread, or a pid that no longer has this start_time and exe",
        }))
    }

    async fn call(&self, args: SignalArgs) -> Result<SignalOutcome, ToolError> {
        protected(args.pid).map_err(|e| Self::bad(e.to_string()))?;
        let (start_time, exe) = match (args.start_time, args.exe.as_deref()) {
            (Some(t), Some(e)) => (t, e),
            (None, Some(_)) => {
                return Err(Self::bad(
                    IdentityError::Unbound {
                        pid: args.pid,
                        missing: "start_time",
                    }
                    .to_string(),
                ));
            }
            (_, None) => {
                return Err(Self::bad(
                    IdentityError::Unbound {
                        pid: args.pid,
                        missing: if args.start_time.is_some() {
                            "exe"
                        } else {
                            "start_time and exe"
                        },
                    }
                    .to_string(),
                ));
            }
        };
        signal_checked(args.pid, start_time, exe, args.signal).map_err(|message| {
            ToolError::Failed {
                tool: Self::NAME.into(),
                message: format!("{message}; nothing was sent"),
            }
        })?;
        Ok(SignalOutcome {
            pid: args.pid,
            signal: args.signal,
            sent: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(
            "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 10",
        )
        .unwrap();
        assert_eq!(
            s,
            Stat {
                ppid: 17,
                flags: 4194560,
                start_time: 987654
            }
        );
        assert!(parse_stat("4242 (x) S 1").is_none());
    }
}
