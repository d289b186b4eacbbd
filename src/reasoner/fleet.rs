//! Rules over the fleet tools (Prometheus): the same host categories as the USE sweep of one
//! host, judged per instance. The most deviant instance with a signal of a category beyond its
//! thresholds supports that category, naming the instance; when no instance of the fleet shows
//! one, the category is ruled out across the fleet. Errors of a service's own requests are
//! `app.error_spike`, naming the service.

use super::{Finding, cite};
use crate::agent::board::{Culprit, Strength};
use crate::collectors::outputs::Severity;
use crate::taxonomy::Category;
use serde_json::Value;

/// The categories these rules decide, in the order of the USE sweep.
pub const COVERS: [Category; 6] = [
    Category::HostCpuSaturation,
    Category::HostMemoryPressure,
    Category::HostDiskIoSaturation,
    Category::HostDiskFull,
    Category::HostNetworkErrors,
    Category::AppErrorSpike,
];

/// What the fleet tools said: (call id, answer).
#[derive(Default)]
pub struct FleetEvidence {
    pub instances: Option<(String, Value)>,
    pub services: Option<(String, Value)>,
}

fn title(c: Category) -> &'static str {
    match c {
        Category::HostCpuSaturation => "CPU saturation on an instance",
        Category::HostMemoryPressure => "Memory pressure on an instance",
        Category::HostDiskIoSaturation => "Disk I/O saturation on an instance",
        Category::HostDiskFull => "A filesystem full on an instance",
        Category::HostNetworkErrors => "Network errors on an instance",
        Category::AppErrorSpike => "A service's own errors rising",
        _ => "fleet",
    }
}

/// The hypothesis as stated when nothing supports it.
pub fn statement_of(c: Category) -> &'static str {
    title(c)
}

fn severity_of(s: &Value) -> Severity {
    match s["severity"].as_str() {
        Some("crit") => Severity::Crit,
        Some("warn") => Severity::Warn,
        _ => Severity::Ok,
    }
}

fn describe(s: &Value) -> String {
    let now = s["now"].as_f64().unwrap_or_default();
    match s["baseline"].as_f64() {
        Some(b) => format!(
            "{} {now} {} (baseline {b})",
            s["signal"].as_str().unwrap_or("?"),
            s["unit"].as_str().unwrap_or("")
        ),
        None => format!(
            "{} {now} {}",
            s["signal"].as_str().unwrap_or("?"),
            s["unit"].as_str().unwrap_or("")
        ),
    }
}

/// Judges one category over the fleet; Err(why) when it could not be measured.
pub fn judge(category: Category, e: &FleetEvidence) -> Result<Finding, String> {
    let (call, answer, list, key, what) = if category == Category::AppErrorSpike {
        let (c, a) = e
            .services
            .as_ref()
            .ok_or("fleet.red_by_service did not answer")?;
        (c, a, "ranked", "service", "fleet-service")
    } else {
        let (c, a) = e
            .instances
            .as_ref()
            .ok_or("fleet.use_by_instance did not answer")?;
        (c, a, "ranked", "instance", "instance")
    };
    let rows = answer[list].as_array().cloned().unwrap_or_default();
    let label = category.label();
    // The worst signal of this category, over the ranked rows.
    let mut best: Option<(Severity, String, Vec<String>)> = None;
    for r in &rows {
        let name = r[key].as_str().unwrap_or("?").to_string();
        let sigs: Vec<&Value> = r["abnormal"]
            .as_array()
            .map(|a| a.iter().filter(|s| s["category"] == label).collect())
            .unwrap_or_default();
        let Some(sev) = sigs.iter().map(|s| severity_of(s)).max() else {
            continue;
        };
        if best.as_ref().is_none_or(|b| sev > b.0) {
            best = Some((sev, name, sigs.iter().map(|s| describe(s)).collect()));
        }
    }
    let seen = answer[if category != Category::AppErrorSpike {
        "instances_seen"
    } else {
        "services_seen"
    }]
    .as_u64()
    .unwrap_or(0);
    let source = answer["source"].as_str().unwrap_or("Prometheus");
    match best {
        Some((sev, name, sigs)) if sev != Severity::Ok => {
            let strength = if sev == Severity::Crit {
                Strength::Strong
            } else {
                Strength::Moderate
            };
            let note = format!("{what} {name}: {}", sigs.join("; "));
            Ok(Finding {
                statement: format!("{} ({what} {name}): {}", title(category), sigs.join("; ")),
                component: format!("{what}:{name}"),
                culprit: Some(Culprit {
                    name: name.clone(),
                    pid: None,
                }),
                citations: vec![cite(call, true, strength, note)],
            })
        }
        _ if seen == 0 => Err(format!(
            "no {what} was measured ({})",
            answer["note"].as_str().unwrap_or("no answer")
        )),
        _ => Ok(Finding::ruled_out(
            title(category),
            format!("{what}s"),
            call,
            format!(
                "none of {seen} {what}(s) in {source} shows {label} signals beyond their thresholds"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_most_deviant_instance_is_named_and_a_quiet_fleet_rules_out() {
        let e = FleetEvidence {
            instances: Some((
                "c1".into(),
                json!({"source": "Prometheus at http://p:9090", "instances_seen": 40, "ranked": [
                    {"instance": "web-7:9100", "abnormal": [
                        {"signal": "cpu run queue per core", "category": "host.cpu_saturation", "unit": "/core", "now": 2.4, "baseline": 0.3, "severity": "crit"}]},
                    {"instance": "web-2:9100", "abnormal": [
                        {"signal": "fullest filesystem", "category": "host.disk_full", "unit": "%", "now": 91.0, "severity": "warn"}]}
                ]}),
            )),
            services: None,
        };
        let f = judge(Category::HostCpuSaturation, &e).unwrap();
        assert_eq!(f.component, "instance:web-7:9100");
        assert!(f.citations[0].supports && f.citations[0].strength == Strength::Strong);
        assert!(
            f.statement
                .contains("cpu run queue per core 2.4 /core (baseline 0.3)")
        );
        let f = judge(Category::HostDiskFull, &e).unwrap();
        assert_eq!(f.citations[0].strength, Strength::Moderate);
        let f = judge(Category::HostMemoryPressure, &e).unwrap();
        assert!(!f.citations[0].supports);
        assert!(f.citations[0].note.contains("none of 40 instance(s)"));
        assert!(judge(Category::AppErrorSpike, &e).is_err());
    }
}
