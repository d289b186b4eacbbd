//! `/metrics` in Prometheus text format: requests, investigations, tool calls and their
//! latencies, tokens, approvals, open event streams, and requests refused before they did
//! anything (a field too long, a caller at a cap, an address with too many wrong tokens):
//! refusals are counted by reason and field, never copied. The PostgreSQL pools (the store's
//! and each investigated database's) are read at each scrape: connections idle and in use, the
//! size limit and the callers waiting.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

type Labels = Vec<(String, String)>;
type Hist = Family<Labels, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.25 ms .. about 8 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

fn slow() -> Histogram {
    // 50 ms .. about 14 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

/// Every metric oncall exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels, Counter>,
    pub request_seconds: Hist,
    pub investigations: Family<Labels, Counter>,
    pub investigation_seconds: Hist,
    pub tool_calls: Family<Labels, Counter>,
    pub tool_seconds: Hist,
    /// Model tokens by `kind`: `prompt`, `completion`, `cached` (prompt tokens served from the
    /// endpoint's cache).
    pub tokens: Family<Labels, Counter>,
    /// HTTP calls to the model endpoint by `outcome` (`ok`, `failed`).
    pub llm_calls: Family<Labels, Counter>,
    /// Time one model step waited for its reasoner, retries included.
    pub llm_step_seconds: Hist,
    /// USD spent on the model endpoint, where prices are configured.
    pub llm_cost: Counter<f64, std::sync::atomic::AtomicU64>,
    pub approvals: Family<Labels, Counter>,
    pub streams: Gauge,
    pub slack_requests: Family<Labels, Counter>,
    /// Requests refused before they did anything, by `reason` (`too_long`, `over_cap`,
    /// `auth_failures`, `unknown_tool`) and `field` (a fixed name, never client text).
    pub refusals: Family<Labels, Counter>,
}

/// The PostgreSQL pools, read at each scrape.
#[derive(Debug, Default)]
struct Pools(Vec<crate::pg::PoolGauge>);

impl Collector for Pools {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: Vec<(&str, crate::pg::PoolStats)> = self
            .0
            .iter()
            .map(|p| (p.name.as_str(), p.stats()))
            .collect();
        let mut gauge = |name: &str,
                         help: &str,
                         rows: Vec<(Labels, usize)>|
         -> Result<(), std::fmt::Error> {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (labels, v) in rows {
                ConstGauge::new(v as i64).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        gauge(
            "pg_pool_connections",
            "PostgreSQL pool connections by pool (store, or a database's name) and state (idle, in_use)",
            stats
                .iter()
                .flat_map(|(n, s)| {
                    [("idle", s.idle), ("in_use", s.in_use)]
                        .map(|(state, v)| (labels(&[("pool", n), ("state", state)]), v))
                })
                .collect(),
        )?;
        gauge(
            "pg_pool_max",
            "Largest number of connections a PostgreSQL pool may hold",
            stats
                .iter()
                .map(|(n, s)| (labels(&[("pool", n)]), s.max))
                .collect(),
        )?;
        gauge(
            "pg_pool_waiting",
            "Callers waiting for a connection from a PostgreSQL pool",
            stats
                .iter()
                .map(|(n, s)| (labels(&[("pool", n)]), s.waiting))
                .collect(),
        )
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_pools(vec![])
    }
}

impl Metrics {
    /// Every metric, with these PostgreSQL pools read at each scrape.
    pub fn with_pools(pools: Vec<crate::pg::PoolGauge>) -> Self {
        let mut registry = Registry::with_prefix("oncall");
        if !pools.is_empty() {
            registry.register_collector(Box::new(Pools(pools)));
        }
        let requests = Family::<Labels, Counter>::default();
        let request_seconds: Hist = Family::new_with_constructor(latency);
        let investigations = Family::<Labels, Counter>::default();
        let investigation_seconds: Hist = Family::new_with_constructor(slow);
        let tool_calls = Family::<Labels, Counter>::default();
        let tool_seconds: Hist = Family::new_with_constructor(slow);
        let tokens = Family::<Labels, Counter>::default();
        let llm_calls = Family::<Labels, Counter>::default();
        let llm_step_seconds: Hist = Family::new_with_constructor(slow);
        let llm_cost = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        let approvals = Family::<Labels, Counter>::default();
        let streams = Gauge::default();
        let slack_requests = Family::<Labels, Counter>::default();
        let refusals = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "Time to the response head, by route",
            request_seconds.clone(),
        );
        registry.register(
            "investigations",
            "Investigation rounds by outcome",
            investigations.clone(),
        );
        registry.register(
            "investigation_seconds",
            "Duration of an investigation round",
            investigation_seconds.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls by tool and result",
            tool_calls.clone(),
        );
        registry.register(
            "tool_call_seconds",
            "Tool call latency by tool",
            tool_seconds.clone(),
        );
        registry.register("llm_tokens", "Model tokens by kind", tokens.clone());
        registry.register(
            "llm_calls",
            "HTTP calls to the model endpoint by outcome",
            llm_calls.clone(),
        );
        registry.register(
            "llm_step_seconds",
            "Time one model step waited for its reasoner, retries included",
            llm_step_seconds.clone(),
        );
        registry.register(
            "llm_cost_usd",
            "USD spent on the model endpoint (where prices are configured)",
            llm_cost.clone(),
        );
        registry.register(
            "approvals",
            "Action requests, decisions and executions by event",
            approvals.clone(),
        );
        registry.register("event_streams", "Open event streams (SSE)", streams.clone());
        registry.register(
            "slack_requests",
            "Requests from Slack by endpoint and outcome",
            slack_requests.clone(),
        );
        registry.register(
            "refused_requests",
            "Requests refused before they did anything, by reason and field",
            refusals.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            investigations,
            investigation_seconds,
            tool_calls,
            tool_seconds,
            tokens,
            llm_calls,
            llm_step_seconds,
            llm_cost,
            approvals,
            streams,
            slack_requests,
            refusals,
        }
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Metrics {
    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }

    pub fn count(&self, family: &Family<Labels, Counter>, pairs: &[(&str, &str)]) {
        family.get_or_create(&labels(pairs)).inc();
    }
}

/// Counts and times every request by its route template (never the raw path: ids would make
/// unbounded series).
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // A fixed set of methods: an arbitrary one would make a new series per request.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    m.requests
        .get_or_create(&labels(&[
            ("route", &route),
            ("method", &method),
            ("status", &status),
        ]))
        .inc();
    m.request_seconds
        .get_or_create(&labels(&[("route", &route)]))
        .observe(started.elapsed().as_secs_f64());
    resp
}
