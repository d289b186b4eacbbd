//! `[prometheus]`: the fleet through Prometheus (USE per instance, RED per service).

use serde::{Deserialize, Serialize};

/// Prometheus: USE per instance from node-exporter metrics and RED per service from the team's
/// request metrics, over the incident window beside a baseline window before it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusSettings {
    /// Base URL, e.g. `http://prometheus:9090`. Empty: no fleet tools (this host is measured).
    pub url: String,
    /// Variable holding a bearer token for Prometheus (may be unset).
    pub bearer_token_env: String,
    /// Seconds one query may take (sent to Prometheus as `timeout` too).
    pub timeout_s: u64,
    /// The incident window in seconds, ending now.
    pub window_s: u64,
    /// The baseline window in seconds, ending where the incident window begins.
    pub baseline_s: u64,
    /// At most this many series per query (`topk`): a fleet of thousands answers in bounds.
    pub max_series: usize,
    /// The label naming an instance (node-exporter target).
    pub instance_label: String,
    /// The label naming a service in the request metrics.
    pub service_label: String,
    /// Counter of requests, with a status label.
    pub requests_metric: String,
    /// The status label of `requests_metric`.
    pub status_label: String,
    /// Regex of the status values that are errors.
    pub error_status: String,
    /// Histogram of request durations in seconds (its `_bucket` series are read).
    pub duration_metric: String,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        PrometheusSettings {
            url: String::new(),
            bearer_token_env: "PROMETHEUS_TOKEN".into(),
            timeout_s: 10,
            window_s: 300,
            baseline_s: 3600,
            max_series: 200,
            instance_label: "instance".into(),
            service_label: "job".into(),
            requests_metric: "http_requests_total".into(),
            status_label: "code".into(),
            error_status: "5..".into(),
            duration_metric: "http_request_duration_seconds".into(),
        }
    }
}
