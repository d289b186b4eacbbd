//! `[thresholds]`: where each signal stops being normal, and how sure the board must be.

use serde::{Deserialize, Serialize};

/// Thresholds. Defaults follow published USE-method guidance (Brendan Gregg's USE checklist for
/// Linux: saturation is any run queue beyond the core count, any swapping, device utilization
/// above 60-70 %, any interface error), tuned so a busy-but-healthy machine is not a finding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Hypotheses below this confidence are not findings; when none is above it, oncall abstains.
    pub confidence: f64,
    /// A hypothesis is confirmed at or above this confidence (and only with cited evidence).
    pub confirm: f64,
    /// A hypothesis is rejected at or below this confidence (and only with evidence against it).
    pub reject: f64,
    pub cpu: CpuThresholds,
    pub memory: MemoryThresholds,
    pub disk: DiskThresholds,
    pub filesystem: FilesystemThresholds,
    pub network: NetworkThresholds,
    pub fd: FdThresholds,
    pub postgres: PgThresholds,
    pub traces: TraceThresholds,
    pub changes: ChangeThresholds,
}

/// When a change is a suspect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeThresholds {
    /// A change this many minutes or less before the investigation is a suspect for a regression
    /// found now; older changes are shown but not blamed.
    pub suspect_within_min: f64,
}

impl Default for ChangeThresholds {
    fn default() -> Self {
        ChangeThresholds {
            suspect_within_min: 60.0,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            confidence: 0.5,
            confirm: 0.7,
            reject: 0.15,
            cpu: CpuThresholds::default(),
            memory: MemoryThresholds::default(),
            disk: DiskThresholds::default(),
            filesystem: FilesystemThresholds::default(),
            network: NetworkThresholds::default(),
            fd: FdThresholds::default(),
            postgres: PgThresholds::default(),
            traces: TraceThresholds::default(),
            changes: ChangeThresholds::default(),
        }
    }
}

/// A warning and a critical level for one signal. Which side is bad depends on the signal.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub warn: f64,
    pub crit: f64,
}

const fn lvl(warn: f64, crit: f64) -> Level {
    Level { warn, crit }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CpuThresholds {
    /// Busy % of all cores over the window.
    pub utilization_pct: Level,
    /// Runnable threads per core, averaged over the window (procs_running / cores).
    pub run_queue_per_core: Level,
    /// Share of the window in which some task waited for a CPU (PSI cpu some), %.
    pub psi_some_pct: Level,
    /// Time stolen by the hypervisor, % of all CPU time.
    pub steal_pct: Level,
}

impl Default for CpuThresholds {
    fn default() -> Self {
        CpuThresholds {
            utilization_pct: lvl(90.0, 98.0),
            run_queue_per_core: lvl(1.5, 2.0),
            psi_some_pct: lvl(25.0, 50.0),
            steal_pct: lvl(10.0, 25.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryThresholds {
    /// Used share of memory (100 - MemAvailable %).
    pub used_pct: Level,
    /// Pages swapped in + out per second.
    pub swap_pages_per_s: Level,
    /// Major page faults per second.
    pub major_faults_per_s: Level,
    /// Share of the window in which some task stalled on memory (PSI memory some), %.
    pub psi_some_pct: Level,
    /// OOM kills during the window.
    pub oom_kills: Level,
    /// OOM kills the kernel log shows this many seconds back count as recent (read from
    /// /dev/kmsg, root only; only when the kernel's OOM counter is non-zero).
    pub oom_lookback_s: f64,
    /// A kill at most this many seconds old bears on the incident whatever the report says; an
    /// older one counts only with memory pressure now, the victim back and growing, or a report
    /// about memory or dying processes (else it is listed as a secondary finding).
    pub oom_recent_s: f64,
    /// A process whose RSS grows at least this fast (MiB/s) is a growth suspect...
    pub process_growth_mib_per_s: f64,
    /// ...if it also grew at least this much (MiB) over the whole look (the window and its
    /// extension, `host.growth_extend_ms`), steadily: a burst or a process starting up is not a leak.
    pub process_growth_min_mib: f64,
    /// Growth that would exhaust available memory within this many seconds is a finding (it
    /// leans towards memory pressure); slower growth is shown but stays below the threshold.
    pub exhaustion_horizon_s: f64,
}

impl Default for MemoryThresholds {
    fn default() -> Self {
        MemoryThresholds {
            used_pct: lvl(90.0, 95.0),
            swap_pages_per_s: lvl(100.0, 1000.0),
            major_faults_per_s: lvl(100.0, 1000.0),
            psi_some_pct: lvl(10.0, 30.0),
            oom_kills: lvl(1.0, 1.0),
            oom_lookback_s: 900.0,
            oom_recent_s: 120.0,
            process_growth_mib_per_s: 20.0,
            process_growth_min_mib: 16.0,
            exhaustion_horizon_s: 300.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskThresholds {
    /// Device busy % (io_ticks over the window).
    pub utilization_pct: Level,
    /// Average time per completed I/O, ms.
    pub await_ms: Level,
    /// Average number of requests in flight (aqu-sz).
    pub queue_depth: Level,
    /// Share of the window in which some task stalled on I/O (PSI io some), %.
    pub psi_some_pct: Level,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        DiskThresholds {
            utilization_pct: lvl(70.0, 90.0),
            await_ms: lvl(50.0, 200.0),
            queue_depth: lvl(4.0, 16.0),
            psi_some_pct: lvl(20.0, 50.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemThresholds {
    /// Used space, % of the space available to unprivileged users.
    pub used_pct: Level,
    /// Used inodes, %.
    pub inodes_pct: Level,
}

impl Default for FilesystemThresholds {
    fn default() -> Self {
        FilesystemThresholds {
            used_pct: lvl(90.0, 97.0),
            inodes_pct: lvl(90.0, 97.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkThresholds {
    /// Interface receive + transmit errors per second.
    pub errors_per_s: Level,
    /// Interface receive + transmit drops per second.
    pub drops_per_s: Level,
    /// TCP segments retransmitted, % of segments sent.
    pub retrans_pct: Level,
    /// Listen-queue overflows during the window.
    pub listen_overflows: Level,
    /// Per-socket view (inet_diag): segments retransmitted by the TCP connections to one peer
    /// `ip:port` (or accepted on one local service port), % of the data segments they sent, over
    /// the connections' lifetimes.
    pub socket_retrans_pct: Level,
    /// The fewest retransmitted segments such a group must show before it can be called lossy
    /// (a stray retransmit or two is never a finding).
    pub socket_min_retrans: u64,
    /// The fewest data segments such a group must have sent before its ratio is judged at all
    /// (fewer is "too few to judge").
    pub socket_min_segs: u64,
    /// Connection-tracking table use, % of `nf_conntrack_max`: when it is full the kernel drops
    /// new connections ("nf_conntrack: table full, dropping packet").
    pub conntrack_used_pct: Level,
    /// A listener's accept queue, % of its backlog: connections the program has not accepted
    /// yet; at 100 % the kernel drops new ones.
    pub accept_queue_pct: Level,
}

impl Default for NetworkThresholds {
    fn default() -> Self {
        NetworkThresholds {
            errors_per_s: lvl(1.0, 100.0),
            drops_per_s: lvl(10.0, 1000.0),
            retrans_pct: lvl(2.0, 10.0),
            listen_overflows: lvl(1.0, 100.0),
            socket_retrans_pct: lvl(5.0, 15.0),
            socket_min_retrans: 5,
            socket_min_segs: 20,
            conntrack_used_pct: lvl(80.0, 95.0),
            accept_queue_pct: lvl(80.0, 100.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FdThresholds {
    /// Open files of one process, % of its soft RLIMIT_NOFILE.
    pub process_used_pct: Level,
    /// Open files system-wide, % of fs.file-max.
    pub system_used_pct: Level,
}

impl Default for FdThresholds {
    fn default() -> Self {
        FdThresholds {
            process_used_pct: lvl(80.0, 95.0),
            system_used_pct: lvl(80.0, 95.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PgThresholds {
    /// Mean execution time of a statement in the incident window, ms.
    pub query_mean_ms: Level,
    /// Share of all statement time in the window taken by one statement, %.
    pub query_share_pct: f64,
    /// How long the longest waiter has waited on a lock, s.
    pub lock_wait_s: Level,
    /// How many sessions wait on locks at once (a queue behind one request grows fast).
    pub lock_waiters: Level,
    /// Age of a transaction left idle in transaction, s.
    pub idle_in_transaction_s: Level,
    /// Client connections, % of max_connections minus the reserved ones.
    pub connections_used_pct: Level,
}

impl Default for PgThresholds {
    fn default() -> Self {
        PgThresholds {
            query_mean_ms: lvl(50.0, 250.0),
            query_share_pct: 50.0,
            lock_wait_s: lvl(5.0, 30.0),
            lock_waiters: lvl(3.0, 10.0),
            idle_in_transaction_s: lvl(60.0, 300.0),
            connections_used_pct: lvl(80.0, 95.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceThresholds {
    /// A downstream holding this share (%) of the critical path of the slowest traces dominates it.
    pub critical_path_share_pct: Level,
    /// ...if it also takes at least this much self time per trace, ms.
    pub min_self_ms: f64,
    /// Error ratio of the entry service's operations (0 to 1).
    pub error_ratio: Level,
    /// Error spans needed before an error group counts.
    pub min_errors: u64,
}

impl Default for TraceThresholds {
    fn default() -> Self {
        TraceThresholds {
            critical_path_share_pct: lvl(50.0, 70.0),
            min_self_ms: 100.0,
            error_ratio: lvl(0.05, 0.2),
            min_errors: 3,
        }
    }
}
