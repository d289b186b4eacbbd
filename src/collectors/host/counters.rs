//! The `/proc` reads at each end of the window: files read under a `/proc` root (a failure
//! becomes an [`Unreadable`] entry with its reason) and the counters paired across the window.

use super::signal::Unreadable;
use super::{cpu, disk, memory, network, pressure};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads files under a /proc root, turning failures into [`Unreadable`] entries.
pub(super) struct Proc<'a> {
    pub(super) root: &'a Path,
}

impl Proc<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn display(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    pub(super) fn read(&self, rel: &str) -> Result<String, String> {
        std::fs::read_to_string(self.path(rel)).map_err(|e| format!("cannot read: {e}"))
    }

    /// Reads and parses; on failure records why and returns None.
    pub(super) fn parse<T>(
        &self,
        rel: &str,
        signal: &str,
        f: impl Fn(&str) -> Result<T, String>,
        un: &mut Vec<Unreadable>,
    ) -> Option<T> {
        match self.read(rel).and_then(|t| f(&t)) {
            Ok(v) => Some(v),
            Err(e) => {
                un.push(Unreadable::new(signal, &self.display(rel), e));
                None
            }
        }
    }
}

/// The counters read at each end of the window.
pub(super) struct Counters {
    pub(super) stat: Option<cpu::Stat>,
    pub(super) vmstat: Option<memory::VmStat>,
    pub(super) diskstats: Option<HashMap<String, disk::DiskCounters>>,
    pub(super) netdev: Option<HashMap<String, network::IfCounters>>,
    pub(super) tcp: Option<HashMap<String, i64>>,
    pub(super) psi: [Option<pressure::Psi>; 3],
}

const PSI_FILES: [&str; 3] = ["pressure/cpu", "pressure/memory", "pressure/io"];

pub(super) fn read_counters(p: &Proc<'_>, un: &mut Vec<Unreadable>) -> Counters {
    let tcp = p
        .parse("net/snmp", "tcp", network::parse_pairs, un)
        .map(|mut snmp| {
            if let Some(ext) = p.parse("net/netstat", "tcp.ext", network::parse_pairs, un) {
                snmp.extend(ext);
            }
            snmp
        });
    Counters {
        stat: p.parse("stat", "cpu", cpu::parse_stat, un),
        vmstat: p.parse("vmstat", "memory.paging", memory::parse_vmstat, un),
        diskstats: p.parse("diskstats", "disk", disk::parse_diskstats, un),
        netdev: p.parse("net/dev", "net", network::parse_net_dev, un),
        tcp,
        psi: PSI_FILES.map(|f| p.parse(f, f, pressure::parse, un)),
    }
}

pub(super) fn pair<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<(T, T)> {
    Some((a.clone()?, b.clone()?))
}
