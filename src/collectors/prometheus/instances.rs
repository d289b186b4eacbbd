//! `fleet.use_by_instance`: the USE signals of every instance from node-exporter metrics (CPU
//! utilization, run queue and pressure; memory used, major faults and pressure; the busiest disk
//! and I/O pressure; the fullest filesystem; network errors and drops), over the incident window
//! beside the baseline before it, instances ranked by how far they deviate.

use super::{Prometheus, Severity, Signal, round, severity};
use crate::config::{Level, Thresholds};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub struct UseByInstanceTool {
    pub prometheus: Option<Prometheus>,
    pub thresholds: Thresholds,
}

/// Arguments of `fleet.use_by_instance`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UseArgs {
    /// How many instances to return, most deviant first, 1 to 50 (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only this instance (its `instance` label, e.g. "web-7:9100"). Omit for the whole fleet.
    #[serde(default)]
    pub instance: Option<String>,
}

/// One instance's signals.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceUse {
    pub instance: String,
    /// 0 when every signal is normal; 2+ when one is critical (plus its growth over baseline).
    pub deviation: f64,
    /// Signals beyond their thresholds, worst first.
    pub abnormal: Vec<Signal>,
    /// The other signals' current values.
    pub normal: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetUse {
    pub source: String,
    pub window_s: u64,
    pub baseline_s: u64,
    pub instances_seen: usize,
    pub ranked: Vec<InstanceUse>,
    /// Signals that could not be read, with why (e.g. no PSI series, Prometheus down).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<String>,
    pub note: String,
}

/// One signal: how to query it now and in the baseline, and where it stops being normal.
struct Spec {
    signal: &'static str,
    category: &'static str,
    unit: &'static str,
    /// PromQL with `{I}` for the instance label, `{R}` for the range and `{O}` for the offset
    /// (empty now, ` offset <window>` in the baseline).
    expr: &'static str,
    level: Level,
}

const FS: &str = r#"fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|autofs|fuse.*""#;

fn specs(t: &Thresholds) -> Vec<Spec> {
    vec![
        Spec {
            signal: "cpu utilization",
            category: "host.cpu_saturation",
            unit: "%",
            expr: r#"100 * (1 - avg by ({I}) (rate(node_cpu_seconds_total{mode="idle"}[{R}]{O})))"#,
            level: t.cpu.utilization_pct,
        },
        Spec {
            signal: "cpu run queue per core",
            category: "host.cpu_saturation",
            unit: "/core",
            expr: r#"avg by ({I}) (avg_over_time(node_procs_running[{R}]{O})) / count by ({I}) (node_cpu_seconds_total{mode="idle"}{O})"#,
            level: t.cpu.run_queue_per_core,
        },
        Spec {
            signal: "cpu pressure (PSI some)",
            category: "host.cpu_saturation",
            unit: "%",
            expr: "100 * max by ({I}) (rate(node_pressure_cpu_waiting_seconds_total[{R}]{O}))",
            level: t.cpu.psi_some_pct,
        },
        Spec {
            signal: "memory used",
            category: "host.memory_pressure",
            unit: "%",
            expr: "100 * (1 - max by ({I}) (avg_over_time(node_memory_MemAvailable_bytes[{R}]{O})) / max by ({I}) (avg_over_time(node_memory_MemTotal_bytes[{R}]{O})))",
            level: t.memory.used_pct,
        },
        Spec {
            signal: "major page faults",
            category: "host.memory_pressure",
            unit: "/s",
            expr: "sum by ({I}) (rate(node_vmstat_pgmajfault[{R}]{O}))",
            level: t.memory.major_faults_per_s,
        },
        Spec {
            signal: "memory pressure (PSI some)",
            category: "host.memory_pressure",
            unit: "%",
            expr: "100 * max by ({I}) (rate(node_pressure_memory_waiting_seconds_total[{R}]{O}))",
            level: t.memory.psi_some_pct,
        },
        Spec {
            signal: "busiest disk busy",
            category: "host.disk_io_saturation",
            unit: "%",
            expr: "100 * max by ({I}) (rate(node_disk_io_time_seconds_total[{R}]{O}))",
            level: t.disk.utilization_pct,
        },
        Spec {
            signal: "io pressure (PSI some)",
            category: "host.disk_io_saturation",
            unit: "%",
            expr: "100 * max by ({I}) (rate(node_pressure_io_waiting_seconds_total[{R}]{O}))",
            level: t.disk.psi_some_pct,
        },
        Spec {
            signal: "fullest filesystem",
            category: "host.disk_full",
            unit: "%",
            expr: "100 * max by ({I}) (1 - node_filesystem_avail_bytes{FS}{O} / node_filesystem_size_bytes{FS}{O})",
            level: t.filesystem.used_pct,
        },
        Spec {
            signal: "network errors",
            category: "host.network_errors",
            unit: "/s",
            expr: "sum by ({I}) (rate(node_network_receive_errs_total[{R}]{O}) + rate(node_network_transmit_errs_total[{R}]{O}))",
            level: t.network.errors_per_s,
        },
        Spec {
            signal: "network drops",
            category: "host.network_errors",
            unit: "/s",
            expr: "sum by ({I}) (rate(node_network_receive_drop_total[{R}]{O}) + rate(node_network_transmit_drop_total[{R}]{O}))",
            level: t.network.drops_per_s,
        },
    ]
}

fn fill(expr: &str, instance_label: &str, range_s: u64, offset_s: Option<u64>) -> String {
    expr.replace("{FS}", &format!("{{{FS}}}"))
        .replace("{I}", instance_label)
        .replace("{R}", &format!("{range_s}s"))
        .replace(
            "{O}",
            &offset_s
                .map(|o| format!(" offset {o}s"))
                .unwrap_or_default(),
        )
}

#[async_trait]
impl Tool for UseByInstanceTool {
    const NAME: &'static str = "fleet.use_by_instance";
    const DESCRIPTION: &'static str = "USE signals of every instance in the fleet from Prometheus node-exporter metrics (CPU utilization, run queue, PSI; memory used, major faults; busiest disk; fullest filesystem; network errors) over the incident window beside a baseline, instances ranked by deviation: which host is sick and which resource, in one call. Offered when a Prometheus URL is configured.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = UseArgs;
    type Output = FleetUse;

    fn available(&self) -> bool {
        self.prometheus.is_some()
    }

    async fn call(&self, a: UseArgs) -> Result<FleetUse, ToolError> {
        let (p, limit) = super::prepare(Self::NAME, &self.prometheus, a.limit)?;
        let s = &p.settings;
        let specs = specs(&self.thresholds);
        let il = s.instance_label.as_str();
        let queries: Vec<String> = specs
            .iter()
            .flat_map(|sp| {
                [
                    fill(sp.expr, il, s.window_s, None),
                    fill(sp.expr, il, s.baseline_s, Some(s.window_s)),
                ]
            })
            .collect();
        let answers = p.query_all(&queries).await;
        let mut per: BTreeMap<String, InstanceUse> = BTreeMap::new();
        let mut unanswered = vec![];
        for (i, sp) in specs.iter().enumerate() {
            let (now, base) = (&answers[2 * i], &answers[2 * i + 1]);
            let now = match now {
                Ok(v) if v.is_empty() => {
                    unanswered.push(format!(
                        "{}: no series (is the metric exported?)",
                        sp.signal
                    ));
                    continue;
                }
                Ok(v) => v,
                Err(e) => {
                    unanswered.push(format!("{}: {e}", sp.signal));
                    continue;
                }
            };
            let base: BTreeMap<&str, f64> = base
                .as_ref()
                .map(|b| {
                    b.iter()
                        .filter_map(|x| Some((x.labels.get(il)?.as_str(), x.value)))
                        .collect()
                })
                .unwrap_or_default();
            for x in now {
                let Some(inst) = x.labels.get(il) else {
                    continue;
                };
                if a.instance.as_ref().is_some_and(|want| want != inst) {
                    continue;
                }
                let e = per.entry(inst.clone()).or_insert_with(|| InstanceUse {
                    instance: inst.clone(),
                    deviation: 0.0,
                    abnormal: vec![],
                    normal: BTreeMap::new(),
                });
                let sig = Signal {
                    signal: sp.signal.into(),
                    category: sp.category.into(),
                    unit: sp.unit.into(),
                    now: round(x.value),
                    baseline: base.get(inst.as_str()).map(|b| round(*b)),
                    severity: severity(x.value, &sp.level),
                };
                if sig.severity == Severity::Ok {
                    e.normal
                        .insert(format!("{} ({})", sp.signal, sp.unit), sig.now);
                } else {
                    e.deviation = e.deviation.max(sig.deviation());
                    e.abnormal.push(sig);
                }
            }
        }
        let mut ranked: Vec<InstanceUse> = per.into_values().collect();
        for r in &mut ranked {
            r.abnormal
                .sort_by(|x, y| y.deviation().total_cmp(&x.deviation()));
            r.deviation = round(r.deviation);
        }
        ranked.sort_by(|x, y| {
            y.deviation
                .total_cmp(&x.deviation)
                .then(x.instance.cmp(&y.instance))
        });
        let seen = ranked.len();
        ranked.truncate(limit);
        let note = match ranked.first() {
            None if unanswered.len() == specs.len() => format!(
                "no signal could be read from Prometheus at {}: the fleet was not measured",
                p.url()
            ),
            None => "no instance matched".into(),
            Some(r) if r.abnormal.is_empty() => {
                format!("all {seen} instance(s) are within their thresholds")
            }
            Some(r) => format!(
                "most deviant of {seen}: {} ({})",
                r.instance,
                r.abnormal
                    .iter()
                    .take(3)
                    .map(Signal::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        Ok(FleetUse {
            source: format!("Prometheus at {}", p.url()),
            window_s: s.window_s,
            baseline_s: s.baseline_s,
            instances_seen: seen,
            ranked,
            unanswered,
            note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_filled_for_now_and_the_baseline() {
        let e = fill(specs(&Thresholds::default())[1].expr, "host", 300, None);
        assert_eq!(
            e,
            r#"avg by (host) (avg_over_time(node_procs_running[300s])) / count by (host) (node_cpu_seconds_total{mode="idle"})"#
        );
        let b = fill(
            specs(&Thresholds::default())[8].expr,
            "instance",
            3600,
            Some(300),
        );
        assert!(
            b.contains(r#"node_filesystem_avail_bytes{fstype!~"tmpfs"#),
            "{b}"
        );
        assert!(b.contains("} offset 300s /"), "{b}");
    }
}
