//! The root-cause taxonomy shared by the reasoner, the board and the eval harness.
//!
//! Labels are the contract of `../shared/eval-cases.md`: they serialize exactly as written there
//! (`host.cpu_saturation`, `db.lock_contention`, ...). This module owns the list and nothing else.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One label of the root-cause taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Category {
    /// Runnable work exceeds cores (a hot process, a runaway loop, a noisy neighbour).
    #[serde(rename = "host.cpu_saturation")]
    HostCpuSaturation,
    /// Memory exhausted or leaking: reclaim, swapping, OOM kills.
    #[serde(rename = "host.memory_pressure")]
    HostMemoryPressure,
    /// A block device busy, with long queues and await.
    #[serde(rename = "host.disk_io_saturation")]
    HostDiskIoSaturation,
    /// A filesystem out of space or inodes.
    #[serde(rename = "host.disk_full")]
    HostDiskFull,
    /// Drops, retransmits, interface errors, listen-queue overflows.
    #[serde(rename = "host.network_errors")]
    HostNetworkErrors,
    /// A process at or near its open-files limit.
    #[serde(rename = "host.fd_exhaustion")]
    HostFdExhaustion,
    /// A query dominating time: missing index, plan regression, seq scan.
    #[serde(rename = "db.slow_query")]
    DbSlowQuery,
    /// Sessions blocked behind locks, long or idle-in-transaction holders.
    #[serde(rename = "db.lock_contention")]
    DbLockContention,
    /// Connections at or near the limit, pool starvation.
    #[serde(rename = "db.connection_exhaustion")]
    DbConnectionExhaustion,
    /// A downstream service or external API is slow.
    #[serde(rename = "dependency.latency")]
    DependencyLatency,
    /// A downstream service or external API is failing.
    #[serde(rename = "dependency.errors")]
    DependencyErrors,
    /// The service's own errors are rising.
    #[serde(rename = "app.error_spike")]
    AppErrorSpike,
    /// A deploy introduced the regression; rollback is the stabilizer.
    #[serde(rename = "change.bad_deploy")]
    ChangeBadDeploy,
    /// A configuration or feature-flag change introduced it.
    #[serde(rename = "change.bad_config")]
    ChangeBadConfig,
    /// Load beyond capacity with every part healthy per request.
    #[serde(rename = "capacity.traffic_spike")]
    CapacityTrafficSpike,
    /// Nothing is at fault.
    #[serde(rename = "none")]
    None,
}

impl Category {
    /// Every label, in the order of the taxonomy table.
    pub const ALL: [Category; 16] = [
        Category::HostCpuSaturation,
        Category::HostMemoryPressure,
        Category::HostDiskIoSaturation,
        Category::HostDiskFull,
        Category::HostNetworkErrors,
        Category::HostFdExhaustion,
        Category::DbSlowQuery,
        Category::DbLockContention,
        Category::DbConnectionExhaustion,
        Category::DependencyLatency,
        Category::DependencyErrors,
        Category::AppErrorSpike,
        Category::ChangeBadDeploy,
        Category::ChangeBadConfig,
        Category::CapacityTrafficSpike,
        Category::None,
    ];

    /// The label as written in the taxonomy (`host.cpu_saturation`).
    pub fn label(self) -> &'static str {
        match self {
            Category::HostCpuSaturation => "host.cpu_saturation",
            Category::HostMemoryPressure => "host.memory_pressure",
            Category::HostDiskIoSaturation => "host.disk_io_saturation",
            Category::HostDiskFull => "host.disk_full",
            Category::HostNetworkErrors => "host.network_errors",
            Category::HostFdExhaustion => "host.fd_exhaustion",
            Category::DbSlowQuery => "db.slow_query",
            Category::DbLockContention => "db.lock_contention",
            Category::DbConnectionExhaustion => "db.connection_exhaustion",
            Category::DependencyLatency => "dependency.latency",
            Category::DependencyErrors => "dependency.errors",
            Category::AppErrorSpike => "app.error_spike",
            Category::ChangeBadDeploy => "change.bad_deploy",
            Category::ChangeBadConfig => "change.bad_config",
            Category::CapacityTrafficSpike => "capacity.traffic_spike",
            Category::None => "none",
        }
    }

    /// Parses a label, naming the valid ones when it is not one of them.
    pub fn parse(label: &str) -> Result<Category, UnknownCategory> {
        Category::ALL
            .iter()
            .copied()
            .find(|c| c.label() == label)
            .ok_or_else(|| UnknownCategory(label.to_string()))
    }
}

/// A label that is not a root-cause category; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown category `{0}`; expected one of: {labels}", labels = Category::ALL.iter().map(|c| c.label()).collect::<Vec<_>>().join(", "))]
pub struct UnknownCategory(pub String);

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_serde_and_parse() {
        for c in Category::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.label()));
            assert_eq!(Category::parse(c.label()).unwrap(), c);
        }
    }

    #[test]
    fn unknown_label_names_the_valid_ones() {
        let err = Category::parse("host.cpu").unwrap_err();
        assert!(err.to_string().contains("host.cpu_saturation"), "{err}");
    }
}
