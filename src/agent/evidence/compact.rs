//! Host evidence made dense: the snapshot as one short string per signal and rows of processes
//! and peers, with the notes of normal signals dropped; and the compact form read back.

use crate::collectors::outputs::FdUse;
use crate::collectors::outputs::LossyPeer;
use crate::collectors::outputs::{ProcessInfo, ProcessReport, UseSnapshot};
use crate::collectors::outputs::{ResourceReport, Signal, Status};
use serde_json::{Value, json};

/// Fields of a process row in compact evidence.
const PROCESS_FIELDS: [&str; 6] = [
    "pid",
    "name",
    "cpu_pct",
    "rss_mib",
    "rss_growth_mib_per_s",
    "program",
];
const IO_FIELDS: [&str; 4] = ["pid", "name", "read_mib_per_s", "write_mib_per_s"];
const FD_FIELDS: [&str; 6] = ["pid", "name", "open", "limit", "used_pct", "program"];
/// Fields of a lossy peer row (the per-socket TCP view) in compact evidence.
const PEER_FIELDS: [&str; 13] = [
    "direction",
    "local",
    "peer",
    "port",
    "sockets",
    "retrans_segs",
    "segs_out",
    "retrans_pct",
    "lost_now",
    "rtt_ms",
    "status",
    "pid",
    "process",
];

fn peer_row(p: &LossyPeer) -> Value {
    json!([
        p.direction,
        p.local,
        p.peer,
        p.port,
        p.sockets,
        p.retrans_segs,
        p.segs_out,
        p.retrans_pct,
        p.lost_now,
        p.rtt_ms,
        p.status,
        p.pid,
        p.process
    ])
}

fn read_peer_row(row: &Value) -> Option<LossyPeer> {
    fn at<T: serde::de::DeserializeOwned>(row: &Value, i: usize) -> Option<T> {
        serde_json::from_value(row.get(i)?.clone()).ok()
    }
    Some(LossyPeer {
        direction: at(row, 0)?,
        local: at(row, 1)?,
        peer: at(row, 2)?,
        port: at(row, 3)?,
        sockets: at(row, 4)?,
        retrans_segs: at(row, 5)?,
        segs_out: at(row, 6)?,
        retrans_pct: at(row, 7)?,
        lost_now: at(row, 8).unwrap_or_default(),
        rtt_ms: at(row, 9).unwrap_or_default(),
        status: at(row, 10)?,
        pid: at(row, 11).flatten(),
        process: at(row, 12).flatten(),
    })
}

/// One signal as one short string: `metric=value unit [!status] [-- note]`.
fn signal_line(s: &Signal) -> String {
    let mut t = format!("{}={} {}", s.metric, s.value, s.unit);
    if s.status != Status::Normal {
        t.push_str(if s.status == Status::Critical {
            " !critical"
        } else {
            " !warning"
        });
    }
    if let Some(n) = &s.note {
        t.push_str(" -- ");
        t.push_str(n);
    }
    t
}

fn parse_signal_line(t: &str) -> Option<Signal> {
    let (head, note) = match t.split_once(" -- ") {
        Some((h, n)) => (h, Some(n.to_string())),
        None => (t, None),
    };
    let (head, status) = if let Some(h) = head.strip_suffix(" !critical") {
        (h, Status::Critical)
    } else if let Some(h) = head.strip_suffix(" !warning") {
        (h, Status::Warning)
    } else {
        (head, Status::Normal)
    };
    let (metric, rest) = head.split_once('=')?;
    let (value, unit) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(Signal {
        metric: metric.into(),
        value: value.parse().ok()?,
        unit: unit.into(),
        status,
        source: String::new(),
        note,
    })
}

/// The host snapshot as dense evidence: each signal one string, processes as rows, and the notes
/// of normal signals dropped (except the few that name a capacity or a culprit).
pub(super) fn compact_snapshot(v: &Value) -> Option<Value> {
    let s: UseSnapshot = serde_json::from_value(v.clone()).ok()?;
    let lines = |sigs: &[Signal]| -> Vec<String> {
        sigs.iter()
            .map(|sig| {
                let keep_note = sig.status != Status::Normal
                    || matches!(
                        sig.metric.as_str(),
                        "space_used"
                            | "worst_process_used"
                            | "run_queue_per_core"
                            | "retransmits"
                            | "worst_peer_retransmits"
                            | "crowded_dir"
                            | "largest_dir"
                            | "accept_queue_used"
                    );
                let mut sig = sig.clone();
                if !keep_note {
                    sig.note = None;
                }
                signal_line(&sig)
            })
            .collect()
    };
    let resources: Vec<Value> = s
        .resources
        .iter()
        .map(|r| {
            let mut o = json!({"resource": r.resource});
            for (k, sigs) in [
                ("u", &r.utilization),
                ("s", &r.saturation),
                ("e", &r.errors),
            ] {
                if !sigs.is_empty() {
                    o[k] = json!(lines(sigs));
                }
            }
            o
        })
        .collect();
    let rows = |ps: &[ProcessInfo]| -> Vec<Value> {
        ps.iter()
            .take(3)
            .map(|p| {
                json!([
                    p.pid,
                    p.name,
                    p.cpu_pct,
                    p.rss_mib,
                    p.rss_growth_mib_per_s,
                    p.program()
                ])
            })
            .collect()
    };
    let p = &s.processes;
    let mut out = json!({
        "format": "compact/1",
        "host": s.host,
        "taken_at": s.taken_at,
        "window_ms": s.window_ms,
        "cores": s.cores,
        "abnormal": s.abnormal,
        "resources": resources,
        "signal_format": "metric=value unit [!status] [-- note]; u/s/e = utilization/saturation/errors",
        "process_fields": PROCESS_FIELDS,
        "processes": {"count": p.count, "top_cpu": rows(&p.top_cpu), "top_rss": rows(&p.top_rss), "growing": rows(&p.growing)},
    });
    if !p.top_fds.is_empty() {
        out["fd_fields"] = json!(FD_FIELDS);
        out["processes"]["top_fds"] = p
            .top_fds
            .iter()
            .take(3)
            .map(|f| json!([f.pid, f.name, f.open, f.limit, f.used_pct, f.program]))
            .collect();
    }
    if !p.top_io.is_empty() {
        out["io_fields"] = json!(IO_FIELDS);
        out["processes"]["top_io"] = p
            .top_io
            .iter()
            .take(3)
            .map(|u| json!([u.pid, u.name, u.read_mib_per_s, u.write_mib_per_s]))
            .collect();
    }
    if !p.groups.is_empty() {
        // Per program (a pool of workers is one program); the executable path is left out.
        let groups: Vec<Value> = p
            .groups
            .iter()
            .take(6)
            .map(|g| {
                let mut g = g.clone();
                g.exe = None;
                json!(g)
            })
            .collect();
        out["processes"]["groups"] = json!(groups);
    }
    if !p.blocked.is_empty() {
        out["processes"]["blocked"] = json!(p.blocked);
    }
    if !p.oom_killed.is_empty() {
        out["processes"]["oom_killed"] = json!(p.oom_killed.iter().take(3).collect::<Vec<_>>());
    }
    if !s.lossy_peers.is_empty() {
        out["peer_fields"] = json!(PEER_FIELDS);
        out["lossy_peers"] = s.lossy_peers.iter().take(5).map(peer_row).collect();
    }
    if !s.unreadable.is_empty() {
        out["unreadable"] = json!(s.unreadable);
    }
    Some(out)
}

/// Reads host evidence back into a snapshot: the raw form as is, the compact form expanded.
pub fn read_snapshot(text: &str) -> Result<UseSnapshot, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    if v.get("format").and_then(Value::as_str) != Some("compact/1") {
        return serde_json::from_value(v).map_err(|e| format!("not a snapshot ({e})"));
    }
    let bad = |what: &str| format!("compact snapshot: {what}");
    let sigs = |r: &Value, k: &str| -> Vec<Signal> {
        r.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().and_then(parse_signal_line))
                    .collect()
            })
            .unwrap_or_default()
    };
    let resources = v["resources"]
        .as_array()
        .ok_or_else(|| bad("no resources"))?
        .iter()
        .map(|r| {
            ResourceReport::new(
                r["resource"].as_str().unwrap_or("?"),
                sigs(r, "u"),
                sigs(r, "s"),
                sigs(r, "e"),
            )
        })
        .collect();
    let procs = |k: &str| -> Vec<ProcessInfo> {
        v["processes"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|row| {
                        Some(ProcessInfo {
                            pid: row.get(0)?.as_u64()? as u32,
                            name: row.get(1)?.as_str()?.to_string(),
                            cpu_pct: row.get(2)?.as_f64()?,
                            rss_mib: row.get(3)?.as_f64()?,
                            rss_growth_mib_per_s: row.get(4)?.as_f64()?,
                            program: row
                                .get(5)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let top_fds = v["processes"]["top_fds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|row| {
                    Some(FdUse {
                        pid: row.get(0)?.as_u64()? as u32,
                        name: row.get(1)?.as_str()?.to_string(),
                        open: row.get(2)?.as_u64()?,
                        limit: row.get(3)?.as_u64()?,
                        used_pct: row.get(4)?.as_f64()?,
                        status: Status::Normal,
                        program: row
                            .get(5)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(UseSnapshot {
        host: v["host"].as_str().unwrap_or("?").to_string(),
        taken_at: serde_json::from_value(v["taken_at"].clone()).map_err(|_| bad("taken_at"))?,
        window_ms: v["window_ms"].as_u64().unwrap_or(0),
        cores: v["cores"].as_u64().unwrap_or(0) as usize,
        abnormal: serde_json::from_value(v["abnormal"].clone()).unwrap_or_default(),
        resources,
        processes: ProcessReport {
            count: v["processes"]["count"].as_u64().unwrap_or(0) as usize,
            top_cpu: procs("top_cpu"),
            top_rss: procs("top_rss"),
            growing: procs("growing"),
            top_fds,
            top_io: v["processes"]["top_io"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|row| {
                            Some(crate::collectors::outputs::IoUse {
                                pid: row.get(0)?.as_u64()? as u32,
                                name: row.get(1)?.as_str()?.to_string(),
                                read_mib_per_s: row.get(2)?.as_f64()?,
                                write_mib_per_s: row.get(3)?.as_f64()?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            oom_killed: serde_json::from_value(v["processes"]["oom_killed"].clone())
                .unwrap_or_default(),
            groups: serde_json::from_value(v["processes"]["groups"].clone()).unwrap_or_default(),
            blocked: serde_json::from_value(v["processes"]["blocked"].clone()).unwrap_or_default(),
        },
        lossy_peers: v
            .get("lossy_peers")
            .and_then(Value::as_array)
            .map(|rows| rows.iter().filter_map(read_peer_row).collect())
            .unwrap_or_default(),
        unreadable: serde_json::from_value(v.get("unreadable").cloned().unwrap_or(json!([])))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::render;
    use super::*;
    use crate::config::{Config, EvidenceMode, LlmSettings};
    use crate::llm::tokens::TokenCounter;

    #[test]
    fn compact_snapshot_is_smaller_and_still_a_snapshot() {
        let c = Config::default();
        let snap = crate::collectors::host::take(
            &c.host,
            &c.thresholds,
            std::time::Duration::from_millis(100),
            5,
        );
        let v = serde_json::to_value(&snap).unwrap();
        let counter = TokenCounter::for_settings(&LlmSettings::default()).unwrap();
        let compact = render(
            "host.use_snapshot",
            &v,
            EvidenceMode::Compact,
            100_000,
            &counter,
        );
        let raw = render(
            "host.use_snapshot",
            &v,
            EvidenceMode::Raw,
            100_000,
            &counter,
        );
        assert!(
            counter.count(&compact) < counter.count(&raw),
            "compact {} vs raw {}",
            counter.count(&compact),
            counter.count(&raw)
        );
        let back = read_snapshot(&compact).expect("compact evidence reads back");
        assert_eq!(back.resources.len(), snap.resources.len());
        for (a, b) in back.resources.iter().zip(&snap.resources) {
            assert_eq!(a.resource, b.resource);
            assert_eq!(a.status, b.status);
            let values = |r: &ResourceReport| {
                r.signals()
                    .map(|s| (s.metric.clone(), s.value, s.status))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                values(a),
                values(b),
                "every number the rules read survives compaction"
            );
        }
        assert_eq!(
            back.processes.top_cpu.first().map(|p| p.pid),
            snap.processes.top_cpu.first().map(|p| p.pid)
        );
        assert_eq!(
            read_snapshot(&render(
                "host.use_snapshot",
                &v,
                EvidenceMode::Raw,
                100_000,
                &counter
            ))
            .unwrap(),
            snap
        );
        let capped = render("host.use_snapshot", &v, EvidenceMode::Raw, 50, &counter);
        assert!(capped.ends_with("[output cut at 50 tokens to fit the context window]"));
    }

    #[test]
    fn signal_lines_round_trip() {
        let s = Signal {
            metric: "psi_some".into(),
            value: 41.5,
            unit: "% of window".into(),
            status: Status::Warning,
            source: String::new(),
            note: Some("avg10 3.0%".into()),
        };
        assert_eq!(parse_signal_line(&signal_line(&s)).unwrap(), s);
        let n = Signal {
            note: None,
            status: Status::Normal,
            ..s
        };
        assert_eq!(parse_signal_line(&signal_line(&n)).unwrap(), n);
    }

    #[test]
    fn lossy_peers_survive_compaction_and_old_compact_evidence_still_reads() {
        let old = json!({
            "format": "compact/1",
            "host": "h",
            "taken_at": "2026-01-02T03:04:05Z",
            "window_ms": 250,
            "cores": 2,
            "abnormal": [],
            "resources": [{"resource": "tcp", "e": ["retransmits=0 % of segments sent -- 4 retransmitted of 7 sent in the window: too few segments in the window to judge (under 100); see the per-socket view (worst_peer_retransmits)"]}],
            "processes": {"count": 1, "top_cpu": [], "top_rss": [], "growing": []},
        });
        let mut snap = read_snapshot(&old.to_string()).expect("compact data without lossy_peers");
        assert!(snap.lossy_peers.is_empty());
        snap.lossy_peers = vec![LossyPeer {
            direction: crate::collectors::host::sockets::Direction::Out,
            local: "127.0.0.1:*".into(),
            peer: "127.0.0.1:40123".into(),
            port: 40123,
            sockets: 3,
            retrans_segs: 12,
            segs_out: 61,
            retrans_pct: 19.67,
            lost_now: 1,
            rtt_ms: 0.05,
            status: Status::Critical,
            pid: Some(77),
            process: Some("pricing".into()),
        }];
        let counter = TokenCounter::for_settings(&LlmSettings::default()).unwrap();
        let v = serde_json::to_value(&snap).unwrap();
        let compact = render(
            "host.use_snapshot",
            &v,
            EvidenceMode::Compact,
            100_000,
            &counter,
        );
        assert!(compact.contains("\"lossy_peers\""), "{compact}");
        let back = read_snapshot(&compact).unwrap();
        assert_eq!(back.lossy_peers, snap.lossy_peers);
        let note = back.resource("tcp").unwrap().errors[0].note.clone();
        assert!(
            note.is_some_and(|n| n.contains("too few segments")),
            "the honest note of a normal retransmit signal is kept"
        );
        // A peer without an owner reads back without one.
        let mut anon = snap.clone();
        anon.lossy_peers[0].pid = None;
        anon.lossy_peers[0].process = None;
        let compact = render(
            "host.use_snapshot",
            &serde_json::to_value(&anon).unwrap(),
            EvidenceMode::Compact,
            100_000,
            &counter,
        );
        assert_eq!(
            read_snapshot(&compact).unwrap().lossy_peers,
            anon.lossy_peers
        );
    }
}
