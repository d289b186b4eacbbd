//! Judging the dump: loss per peer or local service port over the connections' lifetimes, and
//! the accept queues of listeners.

use super::{TCP_LISTEN, TCP_TIME_WAIT, TcpSocket};
use crate::collectors::host::signal::{Signal, Status, round2};
use crate::config::NetworkThresholds;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

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
    use super::super::TcpInfo;
    use super::*;

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
}
