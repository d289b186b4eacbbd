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

use super::signal::{Signal, Status, round2};
use crate::config::NetworkThresholds;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;
const INET_DIAG_INFO: u16 = 2;
/// `struct nlattr` type bits (the top two are the nested and byte-order flags).
const NLA_TYPE_MASK: u16 = 0x3fff;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_LISTEN: u8 = 10;
/// Every state from ESTABLISHED (1) to CLOSING (11) but TIME_WAIT: listeners are read to know
/// which local ports are services; TIME_WAIT sockets carry no tcp_info and no owner.
const STATES: u32 = 0x0ffe & !(1 << TCP_TIME_WAIT);

/// More sockets than this and the dump is refused rather than held in memory.
const MAX_SOCKETS: usize = 500_000;
/// The whole dump must be read within this time.
const DUMP_DEADLINE: Duration = Duration::from_secs(5);

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

/// A listener whose accept queue is filling: connections wait for the program to accept them,
/// and once it is full the kernel drops new ones (`ListenOverflows`).
#[derive(Debug, Clone, PartialEq)]
pub struct FullListener {
    pub port: u16,
    pub queued: u32,
    pub backlog: u32,
    pub inode: u32,
}

impl FullListener {
    /// Queued connections, % of the backlog.
    pub fn used_pct(&self) -> f64 {
        100.0 * self.queued as f64 / self.backlog.max(1) as f64
    }
}

/// The listeners with anything waiting in their accept queue, fullest first.
pub fn listen_queues(sockets: &[TcpSocket]) -> Vec<FullListener> {
    let mut v: Vec<FullListener> = sockets
        .iter()
        .filter(|s| s.state == TCP_LISTEN && s.rqueue > 0 && s.wqueue > 0)
        .map(|s| FullListener {
            port: s.local.port(),
            queued: s.rqueue,
            backlog: s.wqueue,
            inode: s.inode,
        })
        .collect();
    v.sort_by(|a, b| b.used_pct().total_cmp(&a.used_pct()));
    v
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

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// The dump request (`nlmsghdr` + `inet_diag_req_v2`) for one address family, asking for
/// `INET_DIAG_INFO` (the `tcp_info` attribute).
pub fn request(family: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend((len as u32).to_ne_bytes());
    b.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend(seq.to_ne_bytes());
    b.extend(0u32.to_ne_bytes());
    b.extend([family, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0]);
    b.extend(STATES.to_ne_bytes());
    // inet_diag_sockid: all zero, any socket.
    b.extend([0u8; 48]);
    b
}

/// Parses the `tcp_info` attribute. Shorter than the fields up to `tcpi_total_retrans` (the
/// 2.6-era struct) is unusable; later counters are read only when the kernel sent them.
pub fn parse_tcp_info(b: &[u8]) -> Option<TcpInfo> {
    Some(TcpInfo {
        state: *b.first()?,
        unacked: u32_at(b, 24)?,
        lost: u32_at(b, 32)?,
        retrans: u32_at(b, 36)?,
        rtt_us: u32_at(b, 68)?,
        total_retrans: u32_at(b, 100)?,
        segs_out: u32_at(b, 136),
        data_segs_out: u32_at(b, 156),
    })
}

fn ip(family: u8, b: &[u8]) -> Result<IpAddr, String> {
    match family {
        AF_INET => {
            let a: [u8; 4] = b
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or("short IPv4 address")?;
            Ok(IpAddr::V4(Ipv4Addr::from(a)))
        }
        AF_INET6 => {
            let a: [u8; 16] = b
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or("short IPv6 address")?;
            Ok(Ipv6Addr::from(a).to_canonical())
        }
        f => Err(format!("address family {f} is not IPv4 or IPv6")),
    }
}

/// Parses one `inet_diag_msg` with its attributes.
pub fn parse_diag_msg(p: &[u8]) -> Result<TcpSocket, String> {
    if p.len() < DIAG_MSG_LEN {
        return Err(format!(
            "inet_diag_msg of {} bytes, expected at least {DIAG_MSG_LEN}",
            p.len()
        ));
    }
    let family = p[0];
    let port = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    let local = SocketAddr::new(ip(family, &p[8..24])?, port(4));
    let peer = SocketAddr::new(ip(family, &p[24..40])?, port(6));
    let rqueue = u32_at(p, 56).ok_or("short inet_diag_msg")?;
    let wqueue = u32_at(p, 60).ok_or("short inet_diag_msg")?;
    let uid = u32_at(p, 64).ok_or("short inet_diag_msg")?;
    let inode = u32_at(p, 68).ok_or("short inet_diag_msg")?;
    let mut info = None;
    let mut off = align4(DIAG_MSG_LEN);
    while off + 4 <= p.len() {
        let (Some(len), Some(ty)) = (u16_at(p, off), u16_at(p, off + 2)) else {
            break;
        };
        let len = len as usize;
        if len < 4 || off + len > p.len() {
            return Err(format!(
                "attribute of {len} bytes at offset {off} overruns the {}-byte message",
                p.len()
            ));
        }
        if ty & NLA_TYPE_MASK == INET_DIAG_INFO {
            info = parse_tcp_info(&p[off + 4..off + len]);
        }
        off += align4(len);
    }
    Ok(TcpSocket {
        state: p[1],
        local,
        peer,
        uid,
        inode,
        rqueue,
        wqueue,
        info,
    })
}

/// Parses one datagram of the dump answering request `seq`. Returns whether the dump is done.
pub fn parse_datagram(buf: &[u8], seq: u32, dump: &mut Dump) -> Result<bool, String> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let bad = || format!("short netlink header at offset {off}");
        let len = u32_at(buf, off).ok_or_else(bad)? as usize;
        let ty = u16_at(buf, off + 4).ok_or_else(bad)?;
        let mseq = u32_at(buf, off + 8).ok_or_else(bad)?;
        if len < NLMSG_HDRLEN || len > buf.len() - off {
            return Err(format!(
                "netlink message of {len} bytes at offset {off} does not fit the {}-byte datagram",
                buf.len()
            ));
        }
        let payload = &buf[off + NLMSG_HDRLEN..off + len];
        if mseq == seq {
            match ty {
                NLMSG_DONE | NLMSG_ERROR => {
                    let code = u32_at(payload, 0).map(|c| c as i32).unwrap_or(0);
                    if code < 0 {
                        return Err(format!(
                            "the kernel answered the dump with {}",
                            nix::errno::Errno::from_raw(-code)
                        ));
                    }
                    if ty == NLMSG_DONE {
                        return Ok(true);
                    }
                }
                SOCK_DIAG_BY_FAMILY => match parse_diag_msg(payload) {
                    Ok(s) => dump.sockets.push(s),
                    Err(_) => dump.skipped += 1,
                },
                _ => {}
            }
        }
        off += align4(len);
    }
    Ok(false)
}

/// Reads every TCP socket of this network namespace (IPv4 and IPv6).
pub fn read() -> Result<Dump, String> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(|e| format!("socket(AF_NETLINK, NETLINK_SOCK_DIAG): {e}"))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(2, 0),
    )
    .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let kernel = NetlinkAddr::new(0, 0);
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut dump = Dump::default();
    for (i, family) in [AF_INET, AF_INET6].into_iter().enumerate() {
        let name = if family == AF_INET { "IPv4" } else { "IPv6" };
        let seq = 0x6f63_0001 + i as u32;
        let outcome = (|| -> Result<(), String> {
            sendto(
                fd.as_raw_fd(),
                &request(family, seq),
                &kernel,
                MsgFlags::empty(),
            )
            .map_err(|e| format!("send the dump request: {e}"))?;
            loop {
                if started.elapsed() > DUMP_DEADLINE {
                    return Err(format!(
                        "the dump took longer than {} s",
                        DUMP_DEADLINE.as_secs()
                    ));
                }
                let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("receive the dump: {e}")),
                };
                if n > buf.len() {
                    return Err(format!(
                        "a {n}-byte datagram did not fit the {}-byte buffer",
                        buf.len()
                    ));
                }
                if n == 0 {
                    return Err("the kernel closed the dump".into());
                }
                if parse_datagram(&buf[..n], seq, &mut dump)? {
                    return Ok(());
                }
                if dump.sockets.len() > MAX_SOCKETS {
                    return Err(format!("more than {MAX_SOCKETS} TCP sockets; not read"));
                }
            }
        })();
        match outcome {
            Ok(()) => {}
            // Without IPv4 nothing was read; IPv6 alone may be missing from the kernel.
            Err(e) if family == AF_INET => return Err(format!("{name} sockets: {e}")),
            Err(e) => {
                dump.problems.push(format!("{name} sockets: {e}"));
                break;
            }
        }
    }
    Ok(dump)
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

/// Which side of the connections a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This host's connections to a remote service at `peer`.
    Out,
    /// Connections clients made to this host's service at `local`.
    In,
}

/// The TCP connections to one peer `ip:port` (or accepted on one local service port) whose
/// lifetime counters show loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossyPeer {
    pub direction: Direction,
    /// `ip:port` on this host; `ip:*` when the local ports vary (outgoing connections).
    pub local: String,
    /// `ip:port` of the remote end; `ip:*` (or `*`) for the clients of a local service.
    pub peer: String,
    /// The service port: the peer's for outgoing connections, the local one for incoming.
    pub port: u16,
    pub sockets: u32,
    /// Segments retransmitted over the connections' lifetimes.
    pub retrans_segs: u64,
    /// Data segments sent over the connections' lifetimes, retransmits included (all segments
    /// on kernels before 4.6).
    pub segs_out: u64,
    pub retrans_pct: f64,
    /// Segments the kernel considers lost right now.
    #[serde(default)]
    pub lost_now: u64,
    /// The largest smoothed RTT among the connections, ms.
    #[serde(default)]
    pub rtt_ms: f64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl LossyPeer {
    /// `12 of 61 segments retransmitted (19.7%) to 127.0.0.1:40123 (port 40123, process X pid 7)`.
    pub fn describe(&self) -> String {
        let whom = match self.direction {
            Direction::Out => format!("to {}", self.peer),
            Direction::In => format!(
                "on connections from {} to this host's {}",
                self.peer, self.local
            ),
        };
        let owner = match (&self.process, self.pid) {
            (Some(n), Some(p)) => format!(", process {n} pid {p}"),
            (Some(n), None) => format!(", process {n}"),
            _ => String::new(),
        };
        format!(
            "{} of {} segments retransmitted ({:.1}%) {whom} (port {}{owner}) over {} connection(s)' lifetimes",
            self.retrans_segs, self.segs_out, self.retrans_pct, self.port, self.sockets
        )
    }
}

/// The per-socket view of one snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerView {
    /// Connections with a tcp_info (listeners and orphans left out).
    pub connections: usize,
    /// Peer and port groups formed.
    pub groups: usize,
    /// Groups with enough segments to judge.
    pub judged: usize,
    /// The groups over the warning level, worst first.
    pub lossy: Vec<LossyPeer>,
    /// The worst judged group, lossy or not.
    pub worst: Option<LossyPeer>,
}

fn endpoint(ips: &HashSet<IpAddr>, port: Option<u16>) -> String {
    let host = match ips.iter().next() {
        Some(ip) if ips.len() == 1 => match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        },
        _ => "*".into(),
    };
    match port {
        Some(p) => format!("{host}:{p}"),
        None if host == "*" => host,
        None => format!("{host}:*"),
    }
}

/// Groups connections by service (remote `ip:port`, or local listening port), rates each group
/// on its lifetime counters, and names the owners of the lossy groups' sockets with `owners`.
pub fn view(
    sockets: &[TcpSocket],
    th: &NetworkThresholds,
    owners: impl FnOnce(&HashSet<u32>) -> HashMap<u32, (u32, String)>,
) -> PeerView {
    #[derive(Default)]
    struct Acc {
        locals: HashSet<IpAddr>,
        peers: HashSet<IpAddr>,
        sockets: u32,
        retrans: u64,
        segs: u64,
        lost: u64,
        rtt_us: u32,
        /// (retransmits, inode) of each socket.
        inodes: Vec<(u32, u32)>,
    }
    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|s| s.state == TCP_LISTEN)
        .map(|s| s.local.port())
        .collect();
    let mut groups: HashMap<(Direction, Option<IpAddr>, u16), Acc> = HashMap::new();
    let mut connections = 0;
    for s in sockets {
        // Listeners send nothing; an orphan's owner is gone.
        if s.state == TCP_LISTEN || s.state == TCP_TIME_WAIT || s.inode == 0 {
            continue;
        }
        let Some(info) = s.info else { continue };
        connections += 1;
        let key = if listening.contains(&s.local.port()) {
            (Direction::In, None, s.local.port())
        } else {
            (Direction::Out, Some(s.peer.ip()), s.peer.port())
        };
        let g = groups.entry(key).or_default();
        g.locals.insert(s.local.ip());
        g.peers.insert(s.peer.ip());
        g.sockets += 1;
        g.retrans += info.total_retrans as u64;
        g.segs += info.data_segs_out.or(info.segs_out).unwrap_or(0) as u64;
        g.lost += info.lost as u64;
        g.rtt_us = g.rtt_us.max(info.rtt_us);
        g.inodes.push((info.total_retrans, s.inode));
    }
    let mut rated: Vec<(LossyPeer, Vec<(u32, u32)>)> = groups
        .into_iter()
        .map(|((direction, peer_ip, port), g)| {
            let pct = if g.segs > 0 {
                100.0 * g.retrans as f64 / g.segs as f64
            } else {
                0.0
            };
            // Enough segments to judge at all; enough retransmits to call it lossy.
            let judged = g.segs >= th.socket_min_segs;
            let lossy = judged && g.retrans >= th.socket_min_retrans;
            let (local, peer) = match direction {
                Direction::Out => (
                    endpoint(&g.locals, None),
                    endpoint(&HashSet::from_iter(peer_ip), Some(port)),
                ),
                Direction::In => (endpoint(&g.locals, Some(port)), endpoint(&g.peers, None)),
            };
            let p = LossyPeer {
                direction,
                local,
                peer,
                port,
                sockets: g.sockets,
                retrans_segs: g.retrans,
                segs_out: g.segs,
                retrans_pct: round2(pct),
                lost_now: g.lost,
                rtt_ms: round2(g.rtt_us as f64 / 1000.0),
                status: if lossy {
                    Status::of(pct, th.socket_retrans_pct)
                } else {
                    Status::Normal
                },
                pid: None,
                process: None,
            };
            (p, if judged { g.inodes } else { vec![] })
        })
        .collect();
    let groups = rated.len();
    // Judged groups first, then worst status, then highest ratio, then most retransmits.
    rated.sort_by(|(a, ai), (b, bi)| {
        (!bi.is_empty())
            .cmp(&!ai.is_empty())
            .then(b.status.cmp(&a.status))
            .then(b.retrans_pct.total_cmp(&a.retrans_pct))
            .then(b.retrans_segs.cmp(&a.retrans_segs))
            .then(a.peer.cmp(&b.peer))
    });
    let judged = rated.iter().filter(|(_, i)| !i.is_empty()).count();
    rated.truncate(judged);
    let wanted: HashSet<u32> = rated
        .iter()
        .filter(|(p, _)| p.status != Status::Normal)
        .flat_map(|(_, i)| i.iter().map(|(_, inode)| *inode))
        .collect();
    let found = if wanted.is_empty() {
        HashMap::new()
    } else {
        owners(&wanted)
    };
    let mut worst = None;
    let mut lossy = vec![];
    for (mut p, mut inodes) in rated {
        if p.status != Status::Normal {
            // The owner of the socket that retransmitted most speaks for the group.
            inodes.sort_by_key(|i| std::cmp::Reverse(i.0));
            if let Some((pid, name)) = inodes.iter().find_map(|(_, i)| found.get(i)) {
                p.pid = Some(*pid);
                p.process = Some(name.clone());
            }
        }
        if worst.is_none() {
            worst = Some(p.clone());
        }
        if p.status != Status::Normal {
            lossy.push(p);
        }
    }
    lossy.truncate(5);
    PeerView {
        connections,
        groups,
        judged,
        lossy,
        worst,
    }
}

/// The per-socket view as one signal for the `tcp` report: the worst judged group's lifetime
/// retransmit ratio, with a note naming the peer, the port, the process and the counts.
pub fn signal(v: &PeerView, th: &NetworkThresholds) -> Signal {
    const UNIT: &str = "% of segments sent (per peer, connection lifetimes)";
    const SOURCE: &str = "NETLINK_SOCK_DIAG tcp_info";
    match &v.worst {
        Some(w) => {
            let mut s = Signal::rated(
                "worst_peer_retransmits",
                w.retrans_pct,
                UNIT,
                th.socket_retrans_pct,
                SOURCE,
            );
            s.status = w.status;
            let more = if v.lossy.len() > 1 {
                format!("; {} more lossy peer(s)", v.lossy.len() - 1)
            } else {
                String::new()
            };
            s.with_note(format!(
                "{}{more}; {} connection(s) in {} peer/port group(s), {} judged",
                w.describe(),
                v.connections,
                v.groups,
                v.judged
            ))
        }
        None => Signal::info("worst_peer_retransmits", 0.0, UNIT, SOURCE).with_note(format!(
            "{} connection(s) in {} peer/port group(s); none sent enough to judge (at least {} segments)",
            v.connections, v.groups, th.socket_min_segs
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `tcp_info` of `len` bytes with the counters the parser reads.
    fn tcp_info(len: usize, total_retrans: u32, segs_out: u32, data_segs_out: u32) -> Vec<u8> {
        let mut b = vec![0u8; len.max(160)];
        b[0] = TCP_ESTABLISHED;
        b[24..28].copy_from_slice(&3u32.to_ne_bytes());
        b[32..36].copy_from_slice(&1u32.to_ne_bytes());
        b[36..40].copy_from_slice(&2u32.to_ne_bytes());
        b[68..72].copy_from_slice(&1500u32.to_ne_bytes());
        b[100..104].copy_from_slice(&total_retrans.to_ne_bytes());
        b[136..140].copy_from_slice(&segs_out.to_ne_bytes());
        b[156..160].copy_from_slice(&data_segs_out.to_ne_bytes());
        b.truncate(len);
        b
    }

    /// An `inet_diag_msg` for 127.0.0.1:sport -> 127.0.0.1:dport with the given attributes.
    fn diag_msg(state: u8, sport: u16, dport: u16, inode: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; DIAG_MSG_LEN];
        b[0] = AF_INET;
        b[1] = state;
        b[4..6].copy_from_slice(&sport.to_be_bytes());
        b[6..8].copy_from_slice(&dport.to_be_bytes());
        b[8..12].copy_from_slice(&[127, 0, 0, 1]);
        b[24..28].copy_from_slice(&[127, 0, 0, 1]);
        b[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        b[68..72].copy_from_slice(&inode.to_ne_bytes());
        for (ty, data) in attrs {
            b.extend(((4 + data.len()) as u16).to_ne_bytes());
            b.extend(ty.to_ne_bytes());
            b.extend(*data);
            b.resize(align4(b.len()), 0);
        }
        b
    }

    fn nlmsg(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![];
        b.extend(((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        b.extend(ty.to_ne_bytes());
        b.extend(2u16.to_ne_bytes());
        b.extend(seq.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        b.extend(payload);
        b.resize(align4(b.len()), 0);
        b
    }

    #[test]
    fn request_is_an_inet_diag_dump_asking_for_tcp_info() {
        let r = request(AF_INET6, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), Some(72));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_at(&r, 8), Some(7));
        assert_eq!(&r[16..20], &[AF_INET6, IPPROTO_TCP, 2, 0]);
        let states = u32_at(&r, 20).unwrap();
        assert!(states & (1 << TCP_ESTABLISHED) != 0 && states & (1 << TCP_LISTEN) != 0);
        assert_eq!(states & (1 << TCP_TIME_WAIT), 0);
    }

    #[test]
    fn parses_a_hand_built_dump_and_stops_at_done() {
        let info = tcp_info(232, 12, 130, 61);
        let mut d = nlmsg(
            SOCK_DIAG_BY_FAMILY,
            9,
            &diag_msg(
                TCP_ESTABLISHED,
                51000,
                40123,
                77,
                &[(INET_DIAG_INFO, &info)],
            ),
        );
        d.extend(nlmsg(
            SOCK_DIAG_BY_FAMILY,
            9,
            &diag_msg(TCP_LISTEN, 40123, 0, 78, &[]),
        ));
        // Another request's message is ignored.
        d.extend(nlmsg(SOCK_DIAG_BY_FAMILY, 8, &diag_msg(1, 1, 2, 3, &[])));
        let mut dump = Dump::default();
        assert_eq!(parse_datagram(&d, 9, &mut dump), Ok(false));
        assert_eq!(dump.sockets.len(), 2);
        let s = &dump.sockets[0];
        assert_eq!(s.local.to_string(), "127.0.0.1:51000");
        assert_eq!(s.peer.to_string(), "127.0.0.1:40123");
        assert_eq!((s.inode, s.uid, s.state), (77, 1000, TCP_ESTABLISHED));
        let i = s.info.unwrap();
        assert_eq!(
            (
                i.total_retrans,
                i.segs_out,
                i.data_segs_out,
                i.retrans,
                i.lost,
                i.unacked,
                i.rtt_us
            ),
            (12, Some(130), Some(61), 2, 1, 3, 1500)
        );
        assert_eq!(dump.sockets[1].info, None);
        let done = nlmsg(NLMSG_DONE, 9, &0i32.to_ne_bytes());
        assert_eq!(parse_datagram(&done, 9, &mut dump), Ok(true));
        let refused = nlmsg(NLMSG_ERROR, 9, &(-2i32).to_ne_bytes());
        assert!(
            parse_datagram(&refused, 9, &mut dump)
                .unwrap_err()
                .contains("ENOENT")
        );
    }

    #[test]
    fn short_tcp_info_leaves_newer_counters_unknown_and_a_stub_is_no_info() {
        // Kernel 4.2-4.5: segs_out but no data_segs_out.
        let i = parse_tcp_info(&tcp_info(144, 4, 50, 0)).unwrap();
        assert_eq!(
            (i.total_retrans, i.segs_out, i.data_segs_out),
            (4, Some(50), None)
        );
        // Before 4.2: only the old counters.
        let i = parse_tcp_info(&tcp_info(104, 4, 50, 0)).unwrap();
        assert_eq!((i.segs_out, i.data_segs_out), (None, None));
        // Cut inside tcpi_total_retrans: unusable, not a panic.
        assert_eq!(parse_tcp_info(&tcp_info(102, 4, 50, 0)), None);
        assert_eq!(parse_tcp_info(&[]), None);
        let m = diag_msg(1, 1, 2, 3, &[(INET_DIAG_INFO, &[1, 2, 3])]);
        assert_eq!(parse_diag_msg(&m).unwrap().info, None);
    }

    #[test]
    fn truncated_or_lying_lengths_are_errors_not_panics() {
        let info = tcp_info(232, 1, 2, 3);
        let m = diag_msg(1, 1, 2, 3, &[(INET_DIAG_INFO, &info)]);
        // Every cut of the message parses or errs; none panics.
        for cut in 0..m.len() {
            let _ = parse_diag_msg(&m[..cut]);
        }
        assert!(parse_diag_msg(&m[..40]).unwrap_err().contains("72"));
        // An attribute that claims more than there is.
        let mut lie = diag_msg(1, 1, 2, 3, &[(INET_DIAG_INFO, &info)]);
        lie[DIAG_MSG_LEN..DIAG_MSG_LEN + 2].copy_from_slice(&4000u16.to_ne_bytes());
        assert!(parse_diag_msg(&lie).unwrap_err().contains("overruns"));
        // A netlink header that claims more than the datagram holds.
        let mut d = nlmsg(SOCK_DIAG_BY_FAMILY, 1, &m);
        d[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(parse_datagram(&d, 1, &mut Dump::default()).is_err());
        for cut in 0..d.len() {
            let _ = parse_datagram(&d[..cut], 1, &mut Dump::default());
        }
        // A bad message is skipped and counted; the dump goes on.
        let mut dump = Dump::default();
        let short = nlmsg(SOCK_DIAG_BY_FAMILY, 1, &[0u8; 10]);
        assert_eq!(parse_datagram(&short, 1, &mut dump), Ok(false));
        assert_eq!((dump.skipped, dump.sockets.len()), (1, 0));
    }

    #[test]
    fn ipv6_and_mapped_addresses_read_back() {
        let mut m = diag_msg(1, 443, 5000, 9, &[]);
        m[0] = AF_INET6;
        m[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        m[24..40].copy_from_slice(&Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().octets());
        let s = parse_diag_msg(&m).unwrap();
        assert_eq!(s.local.to_string(), "[::1]:443");
        assert_eq!(s.peer.to_string(), "10.1.2.3:5000");
        m[0] = 99;
        assert!(parse_diag_msg(&m).is_err());
    }

    fn sock(state: u8, local: &str, peer: &str, inode: u32, retrans: u32, data: u32) -> TcpSocket {
        TcpSocket {
            state,
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
            uid: 0,
            inode,
            rqueue: 0,
            wqueue: 0,
            info: Some(TcpInfo {
                state,
                total_retrans: retrans,
                segs_out: Some(data * 2),
                data_segs_out: Some(data),
                rtt_us: 2500,
                ..TcpInfo::default()
            }),
        }
    }

    #[test]
    fn the_fullest_accept_queue_comes_first_and_empty_ones_are_left_out() {
        let mut a = sock(TCP_LISTEN, "0.0.0.0:8080", "0.0.0.0:0", 1, 0, 0);
        (a.rqueue, a.wqueue) = (3, 2);
        let mut b = sock(TCP_LISTEN, "0.0.0.0:9090", "0.0.0.0:0", 2, 0, 0);
        (b.rqueue, b.wqueue) = (10, 128);
        let idle = sock(TCP_LISTEN, "0.0.0.0:22", "0.0.0.0:0", 3, 0, 0);
        let q = listen_queues(&[b, idle, a]);
        assert_eq!(
            q.iter().map(|l| l.port).collect::<Vec<_>>(),
            vec![8080, 9090]
        );
        assert_eq!(q[0].used_pct(), 150.0);
    }

    #[test]
    fn groups_by_peer_and_by_local_service_port_and_names_the_owner() {
        let th = NetworkThresholds::default();
        let socks = vec![
            // A service on port 8080 and its lossy accepted connections (server side).
            sock(TCP_LISTEN, "0.0.0.0:8080", "0.0.0.0:0", 1, 0, 0),
            sock(1, "10.0.0.1:8080", "10.0.0.9:40000", 11, 3, 20),
            sock(1, "10.0.0.1:8080", "10.0.0.8:40001", 12, 4, 21),
            // This host's connections to a remote database, lossy (client side).
            sock(1, "10.0.0.1:50001", "10.0.0.5:5432", 21, 5, 30),
            sock(1, "10.0.0.1:50002", "10.0.0.5:5432", 22, 7, 31),
            // A clean peer with plenty of traffic.
            sock(1, "10.0.0.1:50003", "10.0.0.6:443", 31, 0, 5000),
            // A peer with a bad ratio but too few segments to judge.
            sock(1, "10.0.0.1:50004", "10.0.0.7:80", 41, 2, 4),
            // An orphan: left out.
            sock(4, "10.0.0.1:50005", "10.0.0.5:5432", 0, 50, 60),
        ];
        let mut asked = HashSet::new();
        let v = view(&socks, &th, |i| {
            asked = i.clone();
            HashMap::from([(22, (4242, "billing".to_string()))])
        });
        assert_eq!(asked, HashSet::from([11, 12, 21, 22]), "only lossy inodes");
        assert_eq!((v.connections, v.groups, v.judged), (6, 4, 3));
        assert_eq!(v.lossy.len(), 2);
        let db = &v.lossy[0];
        assert_eq!(
            (db.direction, db.peer.as_str(), db.local.as_str(), db.port),
            (Direction::Out, "10.0.0.5:5432", "10.0.0.1:*", 5432)
        );
        assert_eq!((db.sockets, db.retrans_segs, db.segs_out), (2, 12, 61));
        assert_eq!(db.retrans_pct, 19.67);
        assert_eq!(db.status, Status::Critical);
        assert_eq!(
            (db.pid, db.process.as_deref()),
            (Some(4242), Some("billing"))
        );
        assert_eq!(db.rtt_ms, 2.5);
        let svc = &v.lossy[1];
        assert_eq!(
            (
                svc.direction,
                svc.local.as_str(),
                svc.peer.as_str(),
                svc.port
            ),
            (Direction::In, "10.0.0.1:8080", "*", 8080)
        );
        assert_eq!(
            (svc.retrans_segs, svc.segs_out, svc.status),
            (7, 41, Status::Critical)
        );
        assert_eq!(svc.pid, None);
        let s = signal(&v, &th);
        assert_eq!((s.value, s.status), (19.67, Status::Critical));
        let note = s.note.unwrap();
        assert!(
            note.starts_with("12 of 61 segments retransmitted (19.7%) to 10.0.0.5:5432 (port 5432, process billing pid 4242)"),
            "{note}"
        );
        assert!(note.contains("1 more lossy"), "{note}");
    }

    #[test]
    fn thresholds_decide_warning_critical_and_too_few_to_judge() {
        let th = NetworkThresholds::default();
        let rate = |retrans, data| {
            let v = view(
                &[sock(
                    1,
                    "127.0.0.1:50000",
                    "127.0.0.1:9000",
                    5,
                    retrans,
                    data,
                )],
                &th,
                |_| HashMap::new(),
            );
            (v.lossy.first().map(|p| p.status), v.worst.map(|p| p.status))
        };
        assert_eq!(rate(5, 100), (Some(Status::Warning), Some(Status::Warning)));
        assert_eq!(
            rate(15, 100),
            (Some(Status::Critical), Some(Status::Critical))
        );
        assert_eq!(
            rate(4, 20),
            (None, Some(Status::Normal)),
            "fewer than 5 retransmits: judged, not lossy"
        );
        assert_eq!(rate(5, 19), (None, None), "fewer than 20 segments");
        assert_eq!(rate(1, 1000), (None, Some(Status::Normal)));
        assert_eq!(
            rate(5, 1000),
            (None, Some(Status::Normal)),
            "judged and clean"
        );
        let quiet = view(&[], &th, |_| panic!("no owner lookup without loss"));
        let s = signal(&quiet, &th);
        assert_eq!((s.value, s.status), (0.0, Status::Normal));
        assert!(s.note.unwrap().contains("none sent enough to judge"));
    }

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
