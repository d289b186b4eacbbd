//! `[host]`: how the host collectors sample.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Host collector settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostSettings {
    /// The one sampling window, in ms, over which every rate and utilization is measured (100-1000).
    pub window_ms: u64,
    /// How many processes to list by CPU, by memory and by open files.
    pub top_processes: usize,
    /// The /proc root to read (tests and replays may point it elsewhere).
    pub proc_root: PathBuf,
    /// How much longer (ms, 0-5000) the few processes whose memory grows are followed after the
    /// window, so that a steady leak is told from a burst and a low rate is measured over
    /// enough time. Only taken when some process grows; 0 turns it off.
    pub growth_extend_ms: u64,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            window_ms: 250,
            top_processes: 5,
            proc_root: PathBuf::from("/proc"),
            growth_extend_ms: 600,
        }
    }
}
