//! Network: lossy TCP peers from the per-socket view, full accept queues, and errors or drops
//! of interfaces and host-wide TCP counters.

use super::{Untested, Verdict, against, lean, sig, unreadable, val};
use crate::agent::board::Culprit;
use crate::collectors::outputs::UseSnapshot;
use crate::collectors::outputs::{ResourceReport, Status};

pub(super) fn network(s: &UseSnapshot) -> Result<Verdict, Untested> {
    use crate::collectors::outputs::Direction;
    const PER_SOCKET: &str = "worst_peer_retransmits";
    // The per-socket view names the peer or service port whose connections lose segments; it
    // speaks first unless an interface or a host-wide TCP counter is worse.
    let other = s
        .resources_of("net:")
        .chain(s.resource("tcp"))
        .flat_map(|r| r.signals())
        .filter(|x| x.metric != PER_SOCKET)
        .map(|x| x.status)
        .max()
        .unwrap_or(Status::Normal);
    if let Some(p) = s
        .lossy_peers
        .first()
        .filter(|p| p.status != Status::Normal && p.status >= other)
    {
        let more = match s.lossy_peers.len() {
            1 => String::new(),
            n => format!("; {} more lossy peer(s)", n - 1),
        };
        let window = s
            .resource("tcp")
            .and_then(|t| sig(t, "retransmits"))
            .and_then(|x| x.note.as_deref())
            .map(|n| format!("; host-wide: {n}"))
            .unwrap_or_default();
        // The culprit's name is read back up to " (", so the port goes in before any parenthesis.
        let owner = |port: u16| match (&p.process, p.direction) {
            (Some(n), Direction::Out) => format!("{n} to port {port}"),
            (Some(n), Direction::In) => format!("{n} on port {port}"),
            (None, _) => format!("port {port}"),
        };
        return Ok(Verdict {
            statement: format!("TCP packet loss: {}{more}", p.describe()),
            // One form whichever side retransmits: the service's port, under the network.
            component: format!("network:tcp:{}", p.port),
            culprit: Some(Culprit {
                pid: p.pid,
                name: owner(p.port),
            }),
            supports: true,
            strength: lean(p.status),
            note: format!(
                "{}; {} segment(s) lost now, RTT up to {:.1} ms{more}{window}",
                p.describe(),
                p.lost_now,
                p.rtt_ms
            ),
        });
    }
    let candidates: Vec<&ResourceReport> =
        s.resources_of("net:").chain(s.resource("tcp")).collect();
    if candidates.is_empty() {
        return Err(unreadable(s, "net"));
    }
    let r = candidates
        .iter()
        .max_by_key(|r| r.status)
        .copied()
        .ok_or_else(|| unreadable(s, "net"))?;
    let bad: Vec<String> = r
        .signals()
        .filter(|x| x.status != Status::Normal)
        .map(|x| format!("{} {} {}", x.metric, x.value, x.unit))
        .collect();
    if r.status == Status::Normal {
        let tcp = s.resource("tcp");
        let window = tcp
            .and_then(|t| sig(t, "retransmits"))
            .and_then(|x| x.note.as_deref())
            .filter(|n| n.contains("too few"))
            .map(|_| " (too few segments in the window to judge)")
            .unwrap_or_default();
        let per_socket = match tcp.and_then(|t| sig(t, PER_SOCKET)) {
            Some(x) => format!(
                "; per-socket view: {}",
                x.note.as_deref().unwrap_or("no lossy peer")
            ),
            None => format!(
                "; per-socket view unread ({})",
                unreadable(s, "tcp.sockets")
            ),
        };
        return Ok(against(
            "No network errors, drops or retransmits".into(),
            "network",
            format!(
                "{} interfaces without errors or drops; TCP retransmits {:.1}%{window}, listen overflows {:.0}{per_socket}",
                s.resources_of("net:").count(),
                tcp.map(|t| val(sig(t, "retransmits"))).unwrap_or(0.0),
                tcp.map(|t| val(sig(t, "listen_overflows"))).unwrap_or(0.0)
            ),
        ));
    }
    let nums = format!("{}: {}", r.resource, bad.join(", "));
    // A full accept queue names its port and the program that does not accept in time.
    if let Some(q) = sig(r, "accept_queue_used").filter(|x| x.status >= Status::Warning) {
        let note = q.note.clone().unwrap_or_default();
        let port = note
            .strip_prefix("port ")
            .and_then(|t| t.split(':').next())
            .unwrap_or("?");
        return Ok(Verdict {
            statement: format!("Listen queue full: {note}; {nums}"),
            component: format!("network:tcp:{port}"),
            culprit: None,
            supports: true,
            strength: lean(r.status),
            note: format!("{note}; {nums}"),
        });
    }
    Ok(Verdict {
        statement: format!("Network errors on {}: {}", r.resource, bad.join(", ")),
        component: r.resource.clone(),
        culprit: None,
        supports: true,
        strength: lean(r.status),
        note: nums,
    })
}
