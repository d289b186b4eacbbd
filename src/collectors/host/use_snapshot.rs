//! `host.use_snapshot`: the snapshot as evidence, the tool's arguments, and the tool, which
//! takes the snapshot on a blocking thread (or serves one prefetched with the defaults).

use super::process::ProcessReport;
use super::signal::{ResourceReport, Unreadable};
use super::sockets;
use super::take;
use crate::config::Config;
use crate::tool::{RiskClass, Tool, ToolError, in_range};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The evidence of one host snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UseSnapshot {
    pub host: String,
    pub taken_at: DateTime<Utc>,
    /// The one window over which every rate was measured, in ms (measured, not requested).
    pub window_ms: u64,
    pub cores: usize,
    /// One line per signal that is not normal, worst first. Empty means every resource was normal.
    pub abnormal: Vec<String>,
    /// USE view per resource; normal resources are listed too (what was looked at).
    pub resources: Vec<ResourceReport>,
    pub processes: ProcessReport,
    /// Per-socket TCP view: the peers (or local service ports) whose connections retransmit,
    /// judged on their lifetime counters, worst first. Empty when none looks lossy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lossy_peers: Vec<sockets::LossyPeer>,
    /// Signals that could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
}

impl UseSnapshot {
    /// A resource by name (`cpu`, `memory`, `fs:/`, ...).
    pub fn resource(&self, name: &str) -> Option<&ResourceReport> {
        self.resources.iter().find(|r| r.resource == name)
    }

    /// Resources whose name starts with a prefix (`disk:`, `fs:`, `net:`).
    pub fn resources_of<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a ResourceReport> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.resource.starts_with(prefix))
    }
}

/// Arguments of `host.use_snapshot`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotArgs {
    /// Sampling window in milliseconds, 100 to 1000. Every rate and utilization is measured over
    /// this one window. Omit it to use the configured window (1000 ms by default).
    #[serde(default)]
    pub window_ms: Option<u64>,
    /// How many processes to list by CPU, by memory and by open files, 1 to 50. Omit for the
    /// configured number (5 by default).
    #[serde(default)]
    pub top: Option<usize>,
}

/// `host.use_snapshot`: the all-in-one USE snapshot of this host.
pub struct HostUseSnapshot {
    config: Arc<Config>,
    /// A snapshot with the configured defaults started ahead of the call, and when.
    prefetched: std::sync::Mutex<Option<(Instant, std::thread::JoinHandle<UseSnapshot>)>>,
}

/// A prefetched snapshot older than this is not used: the call measures afresh.
const PREFETCH_FRESH: Duration = Duration::from_secs(10);

impl HostUseSnapshot {
    pub fn new(config: Arc<Config>) -> Self {
        HostUseSnapshot {
            config,
            prefetched: std::sync::Mutex::new(None),
        }
    }

    fn take_default(config: &Config) -> UseSnapshot {
        take(
            &config.host,
            &config.thresholds,
            Duration::from_millis(config.host.window_ms),
            config.host.top_processes,
        )
    }
}

#[async_trait]
impl Tool for HostUseSnapshot {
    const NAME: &'static str = "host.use_snapshot";
    const DESCRIPTION: &'static str = "USE method snapshot of this host over one sampling window (<= 1 s): utilization, saturation and errors for CPU, memory, each disk, filesystem, network interface, TCP and file descriptors, plus PSI, tasks in D state, the top processes by CPU, memory growth, disk I/O and open files, the same totals per program (a pool of workers is one program, named by its executable or the script, jar or main class it runs; a growing program with its nearest memory limit), and the TCP connections that retransmit (peer, port, process, over the sockets' lifetimes). Start every host investigation with it.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = SnapshotArgs;
    type Output = UseSnapshot;

    fn prefetch(&self) {
        let config = self.config.clone();
        let handle = std::thread::Builder::new()
            .name("oncall-prefetch".into())
            .spawn(move || HostUseSnapshot::take_default(&config));
        if let (Ok(h), Ok(mut slot)) = (handle, self.prefetched.lock()) {
            *slot = Some((Instant::now(), h));
        }
    }

    async fn call(&self, args: SnapshotArgs) -> Result<UseSnapshot, ToolError> {
        // A snapshot prefetched with the defaults serves a call with the defaults, once.
        let ready = if args.window_ms.is_none() && args.top.is_none() {
            self.prefetched
                .lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .filter(|(at, _)| at.elapsed() < PREFETCH_FRESH)
        } else {
            None
        };
        if let Some((_, handle)) = ready
            && let Ok(Ok(snap)) = tokio::task::spawn_blocking(move || handle.join()).await
        {
            return Ok(snap);
        }
        let window_ms = in_range(
            Self::NAME,
            "window_ms",
            args.window_ms.unwrap_or(self.config.host.window_ms),
            100..=1000,
        )?;
        let top = in_range(
            Self::NAME,
            "top",
            args.top.unwrap_or(self.config.host.top_processes),
            1..=50,
        )?;
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            take(
                &config.host,
                &config.thresholds,
                Duration::from_millis(window_ms),
                top,
            )
        })
        .await
        .map_err(|e| ToolError::Failed {
            tool: Self::NAME.into(),
            message: format!("the sampling thread died: {e}"),
        })
    }
}
