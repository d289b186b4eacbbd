//! The socket dump through NETLINK_SOCK_DIAG: the request, the hand-written parser of the
//! kernel's replies (native byte order, every length checked) and the read itself.

use super::{AF_INET, AF_INET6, Dump, TCP_TIME_WAIT, TcpInfo, TcpSocket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
const IPPROTO_TCP: u8 = 6;

/// Every state from ESTABLISHED (1) to CLOSING (11) but TIME_WAIT: listeners are read to know
/// which local ports are services; TIME_WAIT sockets carry no tcp_info and no owner.
const STATES: u32 = 0x0ffe & !(1 << TCP_TIME_WAIT);

/// More sockets than this and the dump is refused rather than held in memory.
const MAX_SOCKETS: usize = 500_000;
/// The whole dump must be read within this time.
const DUMP_DEADLINE: Duration = Duration::from_secs(5);

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

#[cfg(test)]
mod tests {
    use super::super::{TCP_ESTABLISHED, TCP_LISTEN};
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
}
