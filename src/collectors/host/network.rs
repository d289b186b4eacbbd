//! Network: per-interface throughput, errors and drops from `/proc/net/dev`; TCP retransmits and
//! listen-queue overflows from `/proc/net/snmp` and `/proc/net/netstat`.

use super::signal::{ResourceReport, Signal, Unreadable, counter_delta};
use crate::config::NetworkThresholds;
use std::collections::HashMap;

/// Counters of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IfCounters {
    pub rx_bytes: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// Parses /proc/net/dev into interface -> counters.
pub fn parse_net_dev(text: &str) -> Result<HashMap<String, IfCounters>, String> {
    let mut out = HashMap::new();
    for line in text.lines().skip(2).filter(|l| !l.trim().is_empty()) {
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("line `{}` has no `iface:`", line.trim()))?;
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|w| {
                w.parse::<u64>()
                    .map_err(|e| format!("{} field `{w}`: {e}", name.trim()))
            })
            .collect::<Result<_, _>>()?;
        if f.len() < 16 {
            return Err(format!(
                "{} has {} counters, expected 16",
                name.trim(),
                f.len()
            ));
        }
        out.insert(
            name.trim().to_string(),
            IfCounters {
                rx_bytes: f[0],
                rx_errs: f[2],
                rx_drop: f[3],
                tx_bytes: f[8],
                tx_errs: f[10],
                tx_drop: f[11],
            },
        );
    }
    if out.is_empty() {
        return Err("no interfaces listed".into());
    }
    Ok(out)
}

/// Parses the header/value line pairs of /proc/net/snmp and /proc/net/netstat into
/// `Prefix.Name -> value` (e.g. `Tcp.RetransSegs`, `TcpExt.ListenOverflows`).
pub fn parse_pairs(text: &str) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !lines.len().is_multiple_of(2) {
        return Err(format!(
            "{} lines: header and value lines do not pair up (truncated?)",
            lines.len()
        ));
    }
    for pair in lines.chunks(2) {
        let (hp, hk) = pair[0]
            .split_once(':')
            .ok_or("header line without `Prefix:`")?;
        let (vp, vv) = pair[1]
            .split_once(':')
            .ok_or("value line without `Prefix:`")?;
        if hp != vp {
            return Err(format!("header `{hp}` is followed by values for `{vp}`"));
        }
        let keys: Vec<&str> = hk.split_whitespace().collect();
        let vals: Vec<&str> = vv.split_whitespace().collect();
        if keys.len() != vals.len() {
            return Err(format!(
                "{hp}: {} names but {} values",
                keys.len(),
                vals.len()
            ));
        }
        for (k, v) in keys.iter().zip(vals) {
            let v = v
                .parse::<i64>()
                .map_err(|e| format!("{hp}.{k} `{v}`: {e}"))?;
            out.insert(format!("{hp}.{k}"), v);
        }
    }
    Ok(out)
}

/// Per-interface reports. Loopback is shown only when it has errors or drops.
pub fn interface_reports(
    before: &HashMap<String, IfCounters>,
    after: &HashMap<String, IfCounters>,
    speeds_mbit: &HashMap<String, u64>,
    window_s: f64,
    th: &NetworkThresholds,
    unreadable: &mut Vec<Unreadable>,
) -> Vec<ResourceReport> {
    let mut names: Vec<&String> = after.keys().collect();
    names.sort();
    let mut out = vec![];
    for name in names {
        let (Some(a), Some(b)) = (before.get(name), after.get(name)) else {
            continue;
        };
        let d = (|| -> Result<[u64; 4], String> {
            Ok([
                counter_delta("rx_bytes", a.rx_bytes, b.rx_bytes)?
                    + counter_delta("tx_bytes", a.tx_bytes, b.tx_bytes)?,
                counter_delta("rx_errs", a.rx_errs, b.rx_errs)?
                    + counter_delta("tx_errs", a.tx_errs, b.tx_errs)?,
                counter_delta("rx_drop", a.rx_drop, b.rx_drop)?
                    + counter_delta("tx_drop", a.tx_drop, b.tx_drop)?,
                counter_delta("rx_bytes", a.rx_bytes, b.rx_bytes)?,
            ])
        })();
        let [bytes, errs, drops, rx] = match d {
            Ok(d) => d,
            Err(e) => {
                unreadable.push(Unreadable::new(&format!("net:{name}"), "/proc/net/dev", e));
                continue;
            }
        };
        if name == "lo" && errs == 0 && drops == 0 {
            continue;
        }
        let mbit = |b: u64| b as f64 * 8.0 / 1e6 / window_s;
        let mut util = vec![];
        let note = format!(
            "rx {:.2} Mbit/s, tx {:.2} Mbit/s",
            mbit(rx),
            mbit(bytes - rx)
        );
        match speeds_mbit.get(name) {
            Some(&speed) if speed > 0 => {
                let pct = 100.0 * mbit(bytes) / speed as f64;
                util.push(
                    Signal::info("throughput", pct, "% of link", "/proc/net/dev")
                        .with_note(format!("{note} on {speed} Mbit/s")),
                );
            }
            _ => util.push(
                Signal::info("throughput", mbit(bytes), "Mbit/s", "/proc/net/dev")
                    .with_note(format!("{note}; link speed unknown")),
            ),
        }
        out.push(ResourceReport::new(
            format!("net:{name}"),
            util,
            vec![Signal::rated(
                "drops",
                drops as f64 / window_s,
                "packets/s",
                th.drops_per_s,
                "/proc/net/dev",
            )],
            vec![Signal::rated(
                "errors",
                errs as f64 / window_s,
                "errors/s",
                th.errors_per_s,
                "/proc/net/dev",
            )],
        ));
    }
    out
}

/// Fewer segments sent in the window than this and the host-wide retransmit ratio is not judged.
pub const MIN_WINDOW_SEGS: u64 = 100;

/// The TCP report from two readings of /proc/net/snmp merged with /proc/net/netstat.
/// Connection-tracking table use from `nf_conntrack_count` / `nf_conntrack_max` (None where
/// netfilter's connection tracking is not loaded).
pub fn conntrack_signal(count: &str, max: &str, th: &NetworkThresholds) -> Option<Signal> {
    let (n, m) = (
        count.trim().parse::<u64>().ok()?,
        max.trim().parse::<u64>().ok()?,
    );
    (m > 0).then(|| {
        Signal::rated(
            "conntrack_used",
            100.0 * n as f64 / m as f64,
            "% of nf_conntrack_max",
            th.conntrack_used_pct,
            "/proc/sys/net/netfilter/nf_conntrack_count",
        )
        .with_note(format!("{n} of {m} tracked connections"))
    })
}

pub fn tcp_report(
    before: &HashMap<String, i64>,
    after: &HashMap<String, i64>,
    th: &NetworkThresholds,
    unreadable: &mut Vec<Unreadable>,
) -> Option<ResourceReport> {
    let delta = |k: &str| -> Option<Result<u64, String>> {
        let (a, b) = (*before.get(k)?, *after.get(k)?);
        Some(counter_delta(k, a.max(0) as u64, b.max(0) as u64))
    };
    let mut sat = vec![];
    let mut errs = vec![];
    match (delta("Tcp.RetransSegs"), delta("Tcp.OutSegs")) {
        (Some(Ok(re)), Some(Ok(out))) => {
            // A handful of segments make a meaningless ratio: say so rather than claim 0%.
            let (pct, note) = if out >= MIN_WINDOW_SEGS {
                (
                    100.0 * re as f64 / out as f64,
                    format!("{re} retransmitted of {out} sent in the window"),
                )
            } else {
                (
                    0.0,
                    format!(
                        "{re} retransmitted of {out} sent in the window: too few segments in the window to judge (under {MIN_WINDOW_SEGS}); see the per-socket view (worst_peer_retransmits)"
                    ),
                )
            };
            errs.push(
                Signal::rated(
                    "retransmits",
                    pct,
                    "% of segments sent",
                    th.retrans_pct,
                    "/proc/net/snmp",
                )
                .with_note(note),
            );
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            unreadable.push(Unreadable::new("tcp.retransmits", "/proc/net/snmp", e))
        }
        _ => unreadable.push(Unreadable::new(
            "tcp.retransmits",
            "/proc/net/snmp",
            "no Tcp RetransSegs/OutSegs counters",
        )),
    }
    if let Some(Ok(e)) = delta("Tcp.InErrs") {
        errs.push(Signal::rated(
            "in_errors",
            e as f64,
            "segments in window",
            th.errors_per_s,
            "/proc/net/snmp",
        ));
    }
    match delta("TcpExt.ListenOverflows") {
        Some(Ok(o)) => sat.push(Signal::rated(
            "listen_overflows",
            o as f64,
            "in window",
            th.listen_overflows,
            "/proc/net/netstat",
        )),
        Some(Err(e)) => unreadable.push(Unreadable::new(
            "tcp.listen_overflows",
            "/proc/net/netstat",
            e,
        )),
        None => unreadable.push(Unreadable::new(
            "tcp.listen_overflows",
            "/proc/net/netstat",
            "no TcpExt ListenOverflows counter",
        )),
    }
    if let Some(est) = after.get("Tcp.CurrEstab") {
        sat.push(Signal::info(
            "established",
            *est as f64,
            "connections",
            "/proc/net/snmp",
        ));
    }
    (!sat.is_empty() || !errs.is_empty()).then(|| ResourceReport::new("tcp", vec![], sat, errs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_conntrack_table_is_critical_and_absent_tracking_is_no_signal() {
        let th = NetworkThresholds::default();
        let s = conntrack_signal("65000\n", "65536\n", &th).expect("a signal");
        assert_eq!(s.status, super::super::signal::Status::Critical);
        assert!(
            s.note
                .as_deref()
                .unwrap_or_default()
                .contains("65000 of 65536")
        );
        assert_eq!(
            conntrack_signal("10", "65536", &th).map(|s| s.status),
            Some(super::super::signal::Status::Normal)
        );
        assert!(conntrack_signal("x", "0", &th).is_none());
    }

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   52440     624    0    0    0     0          0         0    52440     624    0    0    0     0       0          0
  eth0: 1046915    2163    0    0    0     0          0         0   123812    1308    0    0    0     0       0          0
";

    #[test]
    fn parses_captured_net_dev() {
        let d = parse_net_dev(DEV).unwrap();
        assert_eq!(d["eth0"].rx_bytes, 1046915);
        assert_eq!(d["eth0"].tx_bytes, 123812);
        assert!(
            parse_net_dev("h\nh\n eth0: 1 2 3\n")
                .unwrap_err()
                .contains("expected 16")
        );
        assert!(
            parse_net_dev("h\nh\n eth0 1 2 3\n")
                .unwrap_err()
                .contains("iface")
        );
        assert!(parse_net_dev("h\nh\n").is_err());
    }

    #[test]
    fn errors_are_rated_and_quiet_loopback_hidden() {
        let a = parse_net_dev(DEV).unwrap();
        let mut b = a.clone();
        b.get_mut("eth0").unwrap().rx_errs += 500;
        b.get_mut("eth0").unwrap().rx_bytes += 125_000;
        let mut u = vec![];
        let r = interface_reports(
            &a,
            &b,
            &HashMap::from([("eth0".into(), 1000)]),
            1.0,
            &NetworkThresholds::default(),
            &mut u,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].signal("errors").unwrap().value, 500.0);
        assert_eq!(r[0].signal("throughput").unwrap().value, 0.1);
        assert_eq!(r[0].status, super::super::signal::Status::Critical);
    }

    const SNMP: &str = "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 100 10 0 0 3 5000 4000 10 0 5 0
";

    #[test]
    fn snmp_pairs_and_retransmit_ratio() {
        let a = parse_pairs(SNMP).unwrap();
        assert_eq!(a["Tcp.MaxConn"], -1);
        let mut b = a.clone();
        b.insert("Tcp.OutSegs".into(), 5000);
        b.insert("Tcp.RetransSegs".into(), 110);
        let mut u = vec![];
        let r = tcp_report(&a, &b, &NetworkThresholds::default(), &mut u).unwrap();
        assert_eq!(r.signal("retransmits").unwrap().value, 10.0);
        assert_eq!(u.len(), 1, "netstat counters missing is reported: {u:?}");
        assert!(parse_pairs("Tcp: A B\n").unwrap_err().contains("pair"));
        assert!(
            parse_pairs("Tcp: A B\nTcp: 1\n")
                .unwrap_err()
                .contains("2 names but 1")
        );
        assert!(parse_pairs("Tcp: A\nUdp: 1\n").unwrap_err().contains("Udp"));
    }

    #[test]
    fn too_few_segments_in_the_window_say_so_instead_of_zero_normal() {
        let a = parse_pairs(SNMP).unwrap();
        let mut b = a.clone();
        b.insert("Tcp.OutSegs".into(), 4007);
        b.insert("Tcp.RetransSegs".into(), 14);
        let r = tcp_report(&a, &b, &NetworkThresholds::default(), &mut vec![]).unwrap();
        let s = r.signal("retransmits").unwrap();
        assert_eq!(s.value, 0.0);
        let note = s.note.as_deref().unwrap();
        assert!(
            note.starts_with("4 retransmitted of 7 sent in the window: too few segments"),
            "{note}"
        );
        assert!(note.contains("per-socket view"), "{note}");
    }
}
