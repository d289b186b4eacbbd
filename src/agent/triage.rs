//! Triage: what the report says (impact, environment, hints), and the suggested severity, scope
//! and blast radius once the first signals are in. Severity is a suggestion with its reason; the
//! incident commander decides.

use super::board::Hypothesis;
use crate::collectors::outputs::Status;
use crate::collectors::outputs::UseSnapshot;
use crate::taxonomy::Category;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// What kind of impact the report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    Degraded,
    Latency,
    Errors,
    Outage,
}

/// What oncall reads from the report text before measuring anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportHints {
    pub impact: Impact,
    /// The word that decided the impact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact_word: Option<String>,
    pub user_facing: bool,
    /// "everyone", "all users", "entire": the report claims broad impact.
    pub broad: bool,
    /// dev, staging, test, CI: no rollback urgency.
    pub internal_env: bool,
    /// A version the report calls good ("worked in v2.5.0", "upgrading from 1.4").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_good_version: Option<String>,
    /// A version the report blames ("since the deploy of v2.5.1", "after 1.5").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_version: Option<String>,
    pub mentions_deploy: bool,
    /// Comes and goes: a Heisenbug.
    pub intermittent: bool,
    /// Resource categories the report points at, in the order they appear.
    pub suspects: Vec<Category>,
}

fn words(report: &str) -> Vec<String> {
    report
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '/' || c == '.'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn first_hit(ws: &[String], list: &[&str]) -> Option<String> {
    ws.iter()
        .find(|w| list.iter().any(|k| w.starts_with(k)))
        .cloned()
}

static VERSION: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:v\d+(?:\.\d+)+|\d+\.\d+(?:\.\d+)+)\b").ok());

/// Versions in the report, sorted into (known good, suspect) by the words just before them:
/// "worked in v2.5.0", "from 1.4", "before v3" name a good one; "since", "after", "deploy of",
/// "to" name the suspect. A lone version with no such word is taken as the suspect.
fn versions(report: &str) -> (Option<String>, Option<String>) {
    let Some(re) = VERSION.as_ref() else {
        return (None, None);
    };
    let (mut good, mut bad) = (None, None);
    for m in re.find_iter(report) {
        let before = report[..m.start()].to_lowercase();
        // The few words since the previous version, so "from 1.4 to 1.5" reads 1.5 by "to".
        let context: Vec<&str> = before
            .split_whitespace()
            .rev()
            .take(3)
            .take_while(|w| !re.is_match(w))
            .collect();
        let is_good = context
            .iter()
            .any(|w| ["good", "worked", "fine", "from", "before", "was", "last"].contains(w));
        let v = Some(m.as_str().to_string());
        if is_good {
            good = good.or(v);
        } else {
            bad = bad.or(v);
        }
    }
    (good, bad)
}

/// Reads the report.
pub fn read_report(report: &str) -> ReportHints {
    let ws = words(report);
    let lower = report.to_lowercase();
    let outage = first_hit(
        &ws,
        &[
            "down",
            "outage",
            "unavailable",
            "unreachable",
            "dead",
            "offline",
        ],
    );
    let errors = first_hit(
        &ws,
        &[
            "error",
            "5xx",
            "500",
            "502",
            "503",
            "504",
            "fail",
            "crash",
            "exception",
            "oom",
            "killed",
            "refused",
        ],
    );
    let latency = first_hit(
        &ws,
        &[
            "slow", "latency", "p99", "p95", "timeout", "timing", "lag", "hang", "stuck",
            "sluggish",
        ],
    );
    let degraded = first_hit(
        &ws,
        &[
            "degrad", "high", "spike", "full", "alert", "warning", "leak", "growing", "pressure",
        ],
    );
    let (impact, impact_word) = match (outage, errors, latency, degraded) {
        (Some(w), ..) => (Impact::Outage, Some(w)),
        (None, Some(w), ..) => (Impact::Errors, Some(w)),
        (None, None, Some(w), _) => (Impact::Latency, Some(w)),
        (None, None, None, Some(w)) => (Impact::Degraded, Some(w)),
        _ => (Impact::None, None),
    };
    let user_facing = first_hit(
        &ws,
        &[
            "user", "customer", "client", "checkout", "api", "/api", "site", "page", "login",
            "payment", "request", "endpoint", "p99", "p95", "latency", "5xx", "http",
        ],
    )
    .is_some()
        || ws.iter().any(|w| w.starts_with('/'));
    let internal_env = first_hit(
        &ws,
        &["staging", "dev", "test", "ci", "sandbox", "qa", "local"],
    )
    .is_some()
        && !lower.contains("prod");
    let broad = first_hit(
        &ws,
        &["everyone", "all", "entire", "whole", "global", "every"],
    )
    .is_some();
    let (known_good_version, suspect_version) = versions(report);
    let mentions_deploy = first_hit(
        &ws,
        &[
            "deploy",
            "release",
            "rollout",
            "upgrade",
            "regression",
            "since",
        ],
    )
    .is_some();
    let intermittent = first_hit(
        &ws,
        &[
            "intermittent",
            "sometimes",
            "flaky",
            "sporadic",
            "random",
            "occasionally",
        ],
    )
    .is_some();
    let mut suspects = vec![];
    for w in &ws {
        let c = if ["cpu", "load", "hot", "spin", "busy", "throttl"]
            .iter()
            .any(|k| w.starts_with(k))
        {
            Some(Category::HostCpuSaturation)
        } else if ["memory", "mem", "ram", "oom", "leak", "swap", "rss", "heap"]
            .iter()
            .any(|k| w.starts_with(k))
        {
            Some(Category::HostMemoryPressure)
        } else if ["space", "full", "inode", "enospc", "quota"]
            .iter()
            .any(|k| w.starts_with(k))
        {
            Some(Category::HostDiskFull)
        } else if ["disk", "io", "iowait", "await", "storage"]
            .iter()
            .any(|k| w == k || w.starts_with("iowait"))
        {
            Some(Category::HostDiskIoSaturation)
        } else if [
            "network",
            "packet",
            "drop",
            "retransmit",
            "connection",
            "dns",
            "socket",
        ]
        .iter()
        .any(|k| w.starts_with(k))
        {
            Some(Category::HostNetworkErrors)
        } else if ["fd", "fds", "descriptor", "emfile"]
            .iter()
            .any(|k| w.starts_with(k))
            || lower.contains("too many open files")
        {
            Some(Category::HostFdExhaustion)
        } else {
            None
        };
        if let Some(c) = c
            && !suspects.contains(&c)
        {
            suspects.push(c);
        }
    }
    ReportHints {
        impact,
        impact_word,
        user_facing,
        broad,
        internal_env,
        known_good_version,
        suspect_version,
        mentions_deploy,
        intermittent,
        suspects,
    }
}

/// The triage section of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    /// Suggested severity, P0 (worst) to P4.
    pub severity: String,
    pub reason: String,
    pub user_facing: bool,
    /// Resources and processes that show abnormal signals.
    pub scope: Vec<String>,
    pub blast_radius: String,
}

/// Suggests severity, scope and blast radius from the report and what the host showed.
pub fn assess(
    hints: &ReportHints,
    snapshot: Option<&UseSnapshot>,
    findings: &[Hypothesis],
) -> Triage {
    let worst = snapshot
        .map(|s| {
            s.resources
                .iter()
                .map(|r| r.status)
                .max()
                .unwrap_or(Status::Normal)
        })
        .unwrap_or(Status::Normal);
    let mut level: u8 = match hints.impact {
        Impact::Outage if hints.broad => 0,
        Impact::Outage | Impact::Errors => 1,
        Impact::Latency => 2,
        Impact::Degraded => 3,
        Impact::None => 4,
    };
    let mut why = vec![match (&hints.impact, &hints.impact_word) {
        (Impact::None, _) | (_, None) => "the report describes no user impact".to_string(),
        (i, Some(w)) => format!(
            "the report describes {} (\"{w}\"){}",
            match i {
                Impact::Outage => "an outage",
                Impact::Errors => "errors",
                Impact::Latency => "latency",
                _ => "a degradation",
            },
            if hints.broad {
                " affecting everyone"
            } else {
                ""
            }
        ),
    }];
    if let Some(top) = findings.first() {
        // A confirmed finding on a host resource or a database is worth at least a P2.
        let confirmed = top.status == super::board::HypothesisStatus::Confirmed;
        let finding_level = if confirmed || worst == Status::Critical {
            2
        } else {
            3
        };
        level = level.min(finding_level);
        why.push(format!(
            "the top finding is {} on {} ({}, confidence {:.2})",
            top.category,
            top.component,
            if confirmed { "confirmed" } else { "open" },
            top.confidence
        ));
    } else {
        why.push("no measured resource or database is abnormal".into());
    }
    if hints.internal_env && level < 3 {
        level += 1;
        why.push("it is an internal environment".into());
    }
    if hints.user_facing && !hints.internal_env && level > 2 && hints.impact >= Impact::Latency {
        level = 2;
    }
    let mut scope: Vec<String> = vec![];
    if let Some(s) = snapshot {
        for r in s.resources.iter().filter(|r| r.status != Status::Normal) {
            scope.push(format!("{} ({:?})", r.resource, r.status).to_lowercase());
        }
    }
    for h in findings {
        if let Some(c) = &h.culprit {
            let p = match c.pid {
                Some(pid) => format!("process {} (pid {pid})", c.name),
                None => c.name.clone(),
            };
            if !scope.contains(&p) {
                scope.push(p);
            }
        }
    }
    let host = snapshot.map(|s| s.host.as_str()).unwrap_or("this host");
    let blast_radius = match (findings.first(), snapshot) {
        (Some(top), Some(s)) => {
            let shared = match top.category {
                Category::HostCpuSaturation => format!(
                    "every one of the {} processes on it competes for the same {} cores",
                    s.processes.count, s.cores
                ),
                Category::HostMemoryPressure => format!(
                    "all {} processes on it share its memory; the OOM killer may pick any of them",
                    s.processes.count
                ),
                Category::HostDiskFull => format!(
                    "every writer to {} fails or stalls",
                    top.component.trim_start_matches("fs:")
                ),
                Category::HostDiskIoSaturation => format!(
                    "every process doing I/O on {} waits",
                    top.component.trim_start_matches("disk:")
                ),
                Category::HostNetworkErrors => {
                    "every connection through the affected interface is at risk".into()
                }
                Category::HostFdExhaustion => {
                    "the process at its limit cannot accept connections or open files".into()
                }
                Category::DbSlowQuery => format!(
                    "every request that runs this statement, and the other sessions of {} that share its CPU and I/O",
                    top.component
                ),
                Category::DbLockContention => {
                    "the sessions waiting behind the root holder, and every request they serve"
                        .into()
                }
                Category::DbConnectionExhaustion => format!(
                    "every application that needs a new connection to {}",
                    top.component
                ),
                _ => format!("everything that depends on {}", top.component),
            };
            if top.component.starts_with("postgres:") || top.category == Category::DependencyErrors
            {
                format!(
                    "{}: {shared}. Seen from the database's own views; the services calling it were not examined.",
                    top.component
                )
            } else {
                format!(
                    "host {host}: {shared}. Other hosts and downstream services were not examined (one host's view)."
                )
            }
        }
        _ => format!(
            "nothing abnormal on host {host}; if the reported impact is real, it lies beyond this host (downstream services, database, network), which this view cannot see."
        ),
    };
    Triage {
        severity: format!("P{level}"),
        reason: why.join("; "),
        user_facing: hints.user_facing,
        scope,
        blast_radius,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_impact_environment_and_versions() {
        let h = read_report("p99 latency > 2s on /api/checkout since deploy of v2.5.1");
        assert_eq!(h.impact, Impact::Latency);
        assert!(h.user_facing && h.mentions_deploy);
        assert_eq!(h.suspect_version.as_deref(), Some("v2.5.1"));
        assert_eq!(h.known_good_version, None);
        let h = read_report("errors since upgrading from 1.4.2 to 1.5.0; it worked in v1.4.2");
        assert_eq!(h.known_good_version.as_deref(), Some("1.4.2"));
        assert_eq!(h.suspect_version.as_deref(), Some("1.5.0"));
        let h = read_report("the whole site is down for everyone");
        assert_eq!(h.impact, Impact::Outage);
        assert!(h.broad);
        let h = read_report("staging box feels sluggish, memory keeps growing");
        assert!(h.internal_env);
        assert_eq!(h.suspects, vec![Category::HostMemoryPressure]);
        let h = read_report("writes fail with No space left on device");
        assert_eq!(h.suspects, vec![Category::HostDiskFull]);
    }

    #[test]
    fn severity_follows_impact_without_findings() {
        let t = assess(&read_report("site down for everyone"), None, &[]);
        assert_eq!(t.severity, "P0");
        let t = assess(&read_report("checkout returns 500 errors"), None, &[]);
        assert_eq!(t.severity, "P1");
        let t = assess(&read_report("routine check"), None, &[]);
        assert_eq!(t.severity, "P4");
        assert!(t.blast_radius.contains("beyond this host"));
        let t = assess(&read_report("api slow on staging"), None, &[]);
        assert_eq!(t.severity, "P3");
    }
}
