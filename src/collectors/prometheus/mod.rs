//! The fleet through Prometheus: the USE signals of every instance from node-exporter metrics
//! ([`instances`]) and RED of every service from the team's request metrics ([`services`]), each
//! over the incident window beside a baseline window before it, ranked by how far they deviate.
//! "Which of the 40 hosts is sick" takes one call.
//!
//! Queries go through Prometheus's HTTP API (`/api/v1/query`, instant queries with range
//! functions), each bounded in time (`timeout`, also sent to Prometheus) and in series (`topk`).
//! A Prometheus that is down, slow or answers an error is evidence, not a failure: the tool says
//! which queries could not be answered and why, and ranks with what it has.

pub mod instances;
pub mod services;

use crate::config::{Level, PrometheusSettings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A Prometheus HTTP API client with the fleet settings.
#[derive(Clone)]
pub struct Prometheus {
    pub settings: Arc<PrometheusSettings>,
    http: reqwest::Client,
    token: Option<String>,
}

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    data: Option<ReplyData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ReplyData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<VectorItem>,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Why a query gave no samples, in words a responder can act on.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("Prometheus at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus at {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error(
        "Prometheus at {url} answered HTTP {status} with something that is not its API's JSON: {body}"
    )]
    NotItsApi {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("Prometheus refused the query ({kind}): {error}")]
    Refused { kind: String, error: String },
    #[error("Prometheus answered success without data")]
    NoData,
    #[error("expected an instant vector, Prometheus answered a {0}")]
    NotAVector(String),
}

impl Prometheus {
    /// None when no URL is configured.
    pub fn from_settings(s: &PrometheusSettings) -> Option<Prometheus> {
        if s.url.trim().is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(s.timeout_s.max(1)) + Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(s.timeout_s.clamp(1, 5)))
            .build()
            .ok()?;
        Some(Prometheus {
            settings: Arc::new(s.clone()),
            http,
            token: std::env::var(&s.bearer_token_env)
                .ok()
                .filter(|t| !t.is_empty()),
        })
    }

    pub fn url(&self) -> &str {
        self.settings.url.trim_end_matches('/')
    }

    /// One instant query; the error says what went wrong in words a responder can act on.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PromError> {
        let timeout = format!("{}s", self.settings.timeout_s);
        let url = self.url().to_string();
        let mut req = self
            .http
            .get(format!("{url}/api/v1/query"))
            .query(&[("query", promql), ("timeout", timeout.as_str())]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                PromError::Timeout {
                    url: url.clone(),
                    seconds: self.settings.timeout_s,
                }
            } else if e.is_connect() {
                PromError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                }
            } else {
                PromError::Transport {
                    url: url.clone(),
                    reason: e.to_string(),
                }
            }
        })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| PromError::Transport {
            url: url.clone(),
            reason: format!("reading the answer: {e}"),
        })?;
        let reply: Reply = serde_json::from_str(&body).map_err(|_| PromError::NotItsApi {
            url: url.clone(),
            status,
            body: body.chars().take(200).collect(),
        })?;
        if reply.status != "success" {
            return Err(PromError::Refused {
                kind: reply.error_type.unwrap_or_default(),
                error: reply.error.unwrap_or_default(),
            });
        }
        let data = reply.data.ok_or(PromError::NoData)?;
        if data.result_type != "vector" {
            return Err(PromError::NotAVector(data.result_type));
        }
        Ok(data
            .result
            .into_iter()
            .filter_map(|i| {
                let v: f64 = i.value.1.parse().ok()?;
                v.is_finite().then_some(Sample {
                    labels: i.metric,
                    value: v,
                })
            })
            .collect())
    }

    /// `expr` limited to the `max_series` largest series.
    pub fn bounded(&self, expr: &str) -> String {
        format!("topk({}, {expr})", self.settings.max_series)
    }

    /// Every expression, bounded in series, queried at once; the answers in the same order.
    pub async fn query_all(&self, exprs: &[String]) -> Vec<Result<Vec<Sample>, PromError>> {
        futures::future::join_all(
            exprs
                .iter()
                .map(|e| async move { self.query(&self.bounded(e)).await }),
        )
        .await
    }
}

/// The fleet tools' shared start: the configured Prometheus and the `limit` argument (1 to 50,
/// default 5).
pub fn prepare<'a>(
    tool: &str,
    prometheus: &'a Option<Prometheus>,
    limit: Option<usize>,
) -> Result<(&'a Prometheus, usize), crate::tool::ToolError> {
    let p = prometheus
        .as_ref()
        .ok_or_else(|| crate::tool::ToolError::Failed {
            tool: tool.into(),
            message: "no Prometheus is configured ([prometheus] url)".into(),
        })?;
    let limit = crate::tool::in_range(tool, "limit", limit.unwrap_or(5), 1..=50)?;
    Ok((p, limit))
}

/// How a value compares with its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warn,
    Crit,
}

pub fn severity(v: f64, l: &Level) -> Severity {
    if v >= l.crit {
        Severity::Crit
    } else if v >= l.warn {
        Severity::Warn
    } else {
        Severity::Ok
    }
}

/// One signal of one instance or service, now and in the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    /// What it is, e.g. "cpu run queue per core".
    pub signal: String,
    /// The root-cause category a bad value points to.
    pub category: String,
    pub unit: String,
    pub now: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    pub severity: Severity,
}

impl Signal {
    /// How far it deviates: its severity, plus how much it grew over its baseline.
    pub fn deviation(&self) -> f64 {
        let level = match self.severity {
            Severity::Ok => 0.0,
            Severity::Warn => 1.0,
            Severity::Crit => 2.0,
        };
        let growth = match self.baseline {
            Some(b) if self.severity != Severity::Ok => {
                ((self.now - b) / b.abs().max(1e-9)).clamp(0.0, 10.0) / 10.0
            }
            _ => 0.0,
        };
        level + growth
    }

    /// "cpu run queue per core 2.10 /core (baseline 0.31)".
    pub fn describe(&self) -> String {
        match self.baseline {
            Some(b) => format!(
                "{} {:.2} {} (baseline {:.2})",
                self.signal, self.now, self.unit, b
            ),
            None => format!("{} {:.2} {}", self.signal, self.now, self.unit),
        }
    }
}

/// Rounds for compact evidence.
pub fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    }
}
