//! `fleet.red_by_service`: rate, error ratio and p99 latency of every service from the team's
//! request metrics (a request counter with a status label and a duration histogram; names set
//! in `[prometheus]`, Prometheus's own conventions by default), over the incident window beside
//! the baseline, services ranked by deviation.

use super::{Prometheus, Severity, Signal, round, severity};
use crate::config::{Level, Thresholds};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub struct RedByServiceTool {
    pub prometheus: Option<Prometheus>,
    pub thresholds: Thresholds,
}

/// Arguments of `fleet.red_by_service`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedArgs {
    /// How many services to return, most deviant first, 1 to 50 (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceRed {
    pub service: String,
    pub deviation: f64,
    pub rate_per_s: f64,
    pub error_ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Signals beyond their thresholds, worst first.
    pub abnormal: Vec<Signal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetRed {
    pub source: String,
    pub window_s: u64,
    pub baseline_s: u64,
    pub services_seen: usize,
    pub ranked: Vec<ServiceRed>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<String>,
    pub note: String,
}

/// Latency relative to its baseline: twice is a warning, four times critical.
const LATENCY_GROWTH: Level = Level {
    warn: 2.0,
    crit: 4.0,
};
/// Traffic relative to its baseline.
const TRAFFIC_GROWTH: Level = Level {
    warn: 2.0,
    crit: 3.0,
};

#[async_trait]
impl Tool for RedByServiceTool {
    const NAME: &'static str = "fleet.red_by_service";
    const DESCRIPTION: &'static str = "RED of every service from Prometheus request metrics: request rate, error ratio and p99 latency over the incident window beside a baseline, services ranked by deviation. Offered when a Prometheus URL is configured.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = RedArgs;
    type Output = FleetRed;

    fn available(&self) -> bool {
        self.prometheus.is_some()
    }

    async fn call(&self, a: RedArgs) -> Result<FleetRed, ToolError> {
        let (p, limit) = super::prepare(Self::NAME, &self.prometheus, a.limit)?;
        let s = &p.settings;
        let (sl, req, st) = (&s.service_label, &s.requests_metric, &s.status_label);
        let err = s.error_status.replace('\\', "\\\\").replace('"', "\\\"");
        let dur = &s.duration_metric;
        let q = |range: u64, off: Option<u64>| {
            let o = off.map(|o| format!(" offset {o}s")).unwrap_or_default();
            [
                format!("sum by ({sl}) (rate({req}[{range}s]{o}))"),
                format!("sum by ({sl}) (rate({req}{{{st}=~\"{err}\"}}[{range}s]{o}))"),
                format!(
                    "histogram_quantile(0.99, sum by ({sl}, le) (rate({dur}_bucket[{range}s]{o})))"
                ),
            ]
        };
        let all: Vec<String> = q(s.window_s, None)
            .into_iter()
            .chain(q(s.baseline_s, Some(s.window_s)))
            .collect();
        let answers = p.query_all(&all).await;
        let names = ["request rate", "error rate", "p99 latency"];
        let mut unanswered = vec![];
        let by = |i: usize| -> BTreeMap<String, f64> {
            answers[i]
                .as_ref()
                .map(|v| {
                    v.iter()
                        .filter_map(|x| Some((x.labels.get(sl.as_str())?.clone(), x.value)))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (i, n) in names.iter().enumerate() {
            match &answers[i] {
                Err(e) => unanswered.push(format!("{n}: {e}")),
                Ok(v) if v.is_empty() && i != 1 => unanswered.push(format!(
                    "{n}: no series (is `{}` exported with a `{sl}` label?)",
                    if i == 2 { dur } else { req }
                )),
                _ => {}
            }
        }
        let (rate, errs, p99) = (by(0), by(1), by(2));
        let (brate, berrs, bp99) = (by(3), by(4), by(5));
        let th = &self.thresholds.traces;
        let mut ranked: Vec<ServiceRed> = rate
            .iter()
            .map(|(svc, r)| {
                let ratio = if *r > 0.0 {
                    errs.get(svc).copied().unwrap_or(0.0) / r
                } else {
                    0.0
                };
                let bratio = brate
                    .get(svc)
                    .filter(|b| **b > 0.0)
                    .map(|b| berrs.get(svc).copied().unwrap_or(0.0) / b);
                let mut abnormal = vec![];
                let e = Signal {
                    signal: "error ratio".into(),
                    category: "app.error_spike".into(),
                    unit: "of requests".into(),
                    now: round(ratio),
                    baseline: bratio.map(round),
                    severity: severity(ratio, &th.error_ratio),
                };
                if e.severity != Severity::Ok {
                    abnormal.push(e);
                }
                let p99_ms = p99.get(svc).map(|v| round(v * 1000.0));
                if let (Some(now), Some(base)) = (p99_ms, bp99.get(svc).map(|v| v * 1000.0))
                    && base > 0.0
                {
                    let sig = Signal {
                        signal: "p99 latency".into(),
                        category: String::new(),
                        unit: "ms".into(),
                        now,
                        baseline: Some(round(base)),
                        severity: severity(now / base, &LATENCY_GROWTH),
                    };
                    if sig.severity != Severity::Ok {
                        abnormal.push(sig);
                    }
                }
                if let Some(b) = brate.get(svc).filter(|b| **b > 0.0) {
                    let sig = Signal {
                        signal: "request rate".into(),
                        category: "capacity.traffic_spike".into(),
                        unit: "/s".into(),
                        now: round(*r),
                        baseline: Some(round(*b)),
                        severity: severity(r / b, &TRAFFIC_GROWTH),
                    };
                    if sig.severity != Severity::Ok {
                        abnormal.push(sig);
                    }
                }
                abnormal.sort_by(|x, y| y.deviation().total_cmp(&x.deviation()));
                ServiceRed {
                    service: svc.clone(),
                    deviation: round(abnormal.iter().map(Signal::deviation).fold(0.0, f64::max)),
                    rate_per_s: round(*r),
                    error_ratio: round(ratio),
                    p99_ms,
                    abnormal,
                }
            })
            .collect();
        ranked.sort_by(|x, y| {
            y.deviation
                .total_cmp(&x.deviation)
                .then(x.service.cmp(&y.service))
        });
        let seen = ranked.len();
        ranked.truncate(limit);
        let note = match ranked.first() {
            None => format!(
                "no request metrics found in Prometheus at {} (`{req}` by `{sl}`)",
                p.url()
            ),
            Some(r) if r.abnormal.is_empty() => {
                format!("all {seen} service(s) are within their thresholds")
            }
            Some(r) => format!(
                "most deviant of {seen}: {} ({})",
                r.service,
                r.abnormal
                    .iter()
                    .map(Signal::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        Ok(FleetRed {
            source: format!("Prometheus at {}", p.url()),
            window_s: s.window_s,
            baseline_s: s.baseline_s,
            services_seen: seen,
            ranked,
            unanswered,
            note,
        })
    }
}
