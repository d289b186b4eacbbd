//! `host.signal_process`: stop, terminate or kill one process (a runaway loop, a leaking worker).

use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// Arguments of `host.signal_process`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalArgs {
    /// The process id to signal, as shown by host.use_snapshot. Never 1 and never oncall itself.
    pub pid: u32,
    /// The signal: TERM (default choice), KILL, STOP or CONT.
    pub signal: ProcessSignal,
}

/// What was done.
#[derive(Debug, Serialize)]
pub struct SignalOutcome {
    pub pid: u32,
    pub signal: ProcessSignal,
    pub sent: bool,
}

/// Sends a signal to one process on this host. Live action: needs an approval.
pub struct SignalProcess;

#[async_trait]
impl Tool for SignalProcess {
    const NAME: &'static str = "host.signal_process";
    const DESCRIPTION: &'static str = "Live action (needs human approval): send TERM, KILL, STOP or CONT to one process on this host, e.g. to stop a runaway process. Request it; never assume it ran.";
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

    fn dry_run(&self, args: &SignalArgs) -> Option<serde_json::Value> {
        let name = std::fs::read_to_string(format!("/proc/{}/comm", args.pid))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "no such process now".into());
        Some(serde_json::json!({
            "kind": "signal",
            "would_run": format!("kill -{} {}", serde_json::to_value(args.signal).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(), args.pid),
            "process": name,
            "refused_if": "pid 1 or oncall itself",
        }))
    }

    async fn call(&self, args: SignalArgs) -> Result<SignalOutcome, ToolError> {
        let bad = |message: String| ToolError::BadArguments {
            tool: Self::NAME.into(),
            message,
        };
        if args.pid <= 1 || args.pid == std::process::id() {
            return Err(bad(format!(
                "pid {} is init or oncall itself; refusing to signal it",
                args.pid
            )));
        }
        let pid = i32::try_from(args.pid)
            .map_err(|_| bad(format!("pid {} is out of range", args.pid)))?;
        let sig = match args.signal {
            ProcessSignal::Term => Signal::SIGTERM,
            ProcessSignal::Kill => Signal::SIGKILL,
            ProcessSignal::Stop => Signal::SIGSTOP,
            ProcessSignal::Cont => Signal::SIGCONT,
        };
        kill(Pid::from_raw(pid), sig).map_err(|e| ToolError::Failed {
            tool: Self::NAME.into(),
            message: format!("kill({pid}, {sig}) failed: {e}"),
        })?;
        Ok(SignalOutcome {
            pid: args.pid,
            signal: args.signal,
            sent: true,
        })
    }
}
