//! Per-socket TCP: every TCP socket of this host's network namespace with its `struct tcp_info`,
//! read through NETLINK_SOCK_DIAG (inet_diag, what `ss -ti` reads), grouped by the service it
//! talks to: a remote `ip:port` this host calls, or a local listening port that clients call.
//!
//! A group is judged on its sockets' lifetime counters (segments retransmitted of data segments
//! sent), not on one window: that is the longer look that makes low-volume loss judgeable when
//! the host-wide counters of one window hold too few segments. A group must also show a minimum
//! count before its ratio means anything. Only when some group looks lossy are its sockets'
//! inodes matched to the owning process (`/proc/<pid>/fd`, stopping once all are found).
//!
//! The request and the parser are hand-written against the kernel's layouts (native byte order,
//! every length checked): `struct tcp_info` grows with each kernel, so a field past the end of
//! the attribute the kernel sent is unknown, never read.

mod judge;
mod netlink;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

pub use judge::{Direction, FullListener, LossyPeer, PeerView, listen_queues, signal, view};
pub use netlink::{parse_datagram, parse_diag_msg, parse_tcp_info, read, request};

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_LISTEN: u8 = 10;

/// The fields of `struct tcp_info` the rules read. Counters the kernel did not send (older
/// kernels send a shorter struct) are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    pub state: u8,
    /// Retransmitted segments not yet acknowledged (`tcpi_retrans`).
    pub retrans: u32,
    /// Segments the kernel currently thinks are lost (`tcpi_lost`).
    pub lost: u32,
    /// Segments sent and not yet acknowledged (`tcpi_unacked`).
    pub unacked: u32,
    /// Smoothed round-trip time, µs (`tcpi_rtt`).
    pub rtt_us: u32,
    /// Segments retransmitted over the socket's lifetime (`tcpi_total_retrans`).
    pub total_retrans: u32,
    /// Segments sent over the socket's lifetime, pure ACKs included (kernel >= 4.2).
    pub segs_out: Option<u32>,
    /// Segments with data sent over the socket's lifetime, retransmits included (kernel >= 4.6).
    pub data_segs_out: Option<u32>,
}

/// One TCP socket as the kernel's socket diagnostics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSocket {
    pub state: u8,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub uid: u32,
    /// 0 for a socket no process holds any more (an orphan closing down).
    pub inode: u32,
    /// For a listener: connections waiting to be accepted (`idiag_rqueue`).
    pub rqueue: u32,
    /// For a listener: its backlog, the most that may wait (`idiag_wqueue`).
    pub wqueue: u32,
    pub info: Option<TcpInfo>,
}

/// What one dump of the host's TCP sockets held.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dump {
    pub sockets: Vec<TcpSocket>,
    /// Messages that could not be parsed and were left out.
    pub skipped: usize,
    /// Parts that could not be read (e.g. IPv6 on a kernel without it); the rest still counts.
    pub problems: Vec<String>,
}

/// Who owns each socket inode: scans `/proc/<pid>/fd` for `socket:[inode]` links and stops once
/// every inode is found. Returns inode -> (pid, process name).
pub fn owners(proc_root: &Path, inodes: &HashSet<u32>) -> HashMap<u32, (u32, String)> {
    let mut found = HashMap::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return found;
    };
    for entry in procs.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut name = None;
        for fd in fds.filter_map(|e| e.ok()) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            if inodes.contains(&inode) && !found.contains_key(&inode) {
                let name = name
                    .get_or_insert_with(|| {
                        std::fs::read_to_string(entry.path().join("comm"))
                            .map(|c| c.trim().to_string())
                            .unwrap_or_else(|_| format!("pid {pid}"))
                    })
                    .clone();
                found.insert(inode, (pid, name));
                if found.len() == inodes.len() {
                    return found;
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_hosts_sockets_and_finds_a_connection_and_its_owner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_a, _) = l.accept().unwrap();
        let dump = read().expect("sock_diag dump");
        let mine = dump
            .sockets
            .iter()
            .find(|s| s.local == c.local_addr().unwrap())
            .expect("the client socket is listed");
        assert_eq!(mine.peer.port(), port);
        assert!(mine.info.is_some() && mine.inode != 0);
        assert!(
            dump.sockets
                .iter()
                .any(|s| s.state == TCP_LISTEN && s.local.port() == port)
        );
        let found = owners(Path::new("/proc"), &HashSet::from([mine.inode]));
        assert_eq!(
            found.get(&mine.inode).map(|o| o.0),
            Some(std::process::id())
        );
    }
}
