//! Traces: spans received over OTLP into a bounded in-process store, and the tools that ask it
//! where the time and the errors go.
//!
//! [`store`] keeps a time window of spans under a hard memory bound; [`otlp`] decodes and
//! validates OTLP payloads; [`analysis`] computes RED, critical paths and error groups. The
//! tools are offered only where a store is attached (`oncall serve`).

pub mod analysis;
pub mod backend;
pub mod otlp;
pub mod store;

use crate::tool::{RiskClass, Tool, ToolError, in_range};
use analysis::{CriticalPath, ErrorGroup, RedRow};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use store::{SpanStore, StoreStats};

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What every traces tool shares: the store (if any) and the default window.
#[derive(Clone)]
pub struct Traces {
    pub store: Option<Arc<SpanStore>>,
    pub default_window_s: u64,
    /// The team's trace backend (Tempo or Jaeger), read instead of the store when configured.
    pub backend: Option<Arc<backend::Backend>>,
}

impl Traces {
    fn window(&self, tool: &str, w: Option<u64>) -> Result<(u64, u64), ToolError> {
        let w = in_range(
            tool,
            "window_s",
            w.unwrap_or(self.default_window_s),
            5..=86_400,
        )?;
        let now = now_ns();
        Ok((now.saturating_sub(w * 1_000_000_000), now + 1))
    }

    /// The spans to answer from: the team's backend's traces of the window and its baseline
    /// (fetched now), else the embedded store.
    async fn source(&self, tool: &str, from: u64, to: u64) -> Result<Arc<SpanStore>, ToolError> {
        let fail = |message: String| ToolError::Failed {
            tool: tool.into(),
            message,
        };
        if let Some(b) = &self.backend {
            return b
                .fetch(from.saturating_sub(to.saturating_sub(from)), to)
                .await
                .map_err(|e| fail(e.to_string()));
        }
        self.store.clone().ok_or_else(|| {
            fail("no span store here: traces are received by `oncall serve`, or set [traces] backend".into())
        })
    }
}

/// A read view of a span store, or why there is none.
fn view<'a>(tool: &str, store: &'a SpanStore) -> Result<store::View<'a>, ToolError> {
    store.view().ok_or_else(|| ToolError::Failed {
        tool: tool.into(),
        message: "span store unavailable".into(),
    })
}

macro_rules! traces_tool {
    () => {
        fn available(&self) -> bool {
            self.traces.store.is_some() || self.traces.backend.is_some()
        }
    };
}

/// Filters shared by the traces tools.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    /// Only this service (its service.name). Omit for all services.
    #[serde(default)]
    pub service: Option<String>,
    /// Only this operation (span name, e.g. "GET /checkout"). Omit for all.
    #[serde(default)]
    pub operation: Option<String>,
    /// The incident window in seconds, ending now (default 300). The baseline is the window before it.
    #[serde(default)]
    pub window_s: Option<u64>,
    /// How many rows to return, 1 to 50 (default 10).
    #[serde(default)]
    pub limit: Option<usize>,
}

fn limit(tool: &str, l: Option<usize>) -> Result<usize, ToolError> {
    in_range(tool, "limit", l.unwrap_or(10), 1..=50)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedAnswer {
    pub window_s: u64,
    pub rows: Vec<RedRow>,
    pub store: StoreStats,
}

pub struct RedTool {
    pub traces: Traces,
}

#[async_trait]
impl Tool for RedTool {
    const NAME: &'static str = "traces.red";
    const DESCRIPTION: &'static str = "RED from received traces: per service and operation, rate, error ratio and latency p50/p95/p99 over the incident window, each beside the same figures for the baseline window before it. Slowest p99 first.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = TraceQuery;
    type Output = RedAnswer;
    traces_tool!();

    async fn call(&self, a: TraceQuery) -> Result<RedAnswer, ToolError> {
        let (from, to) = self.traces.window(Self::NAME, a.window_s)?;
        let n = limit(Self::NAME, a.limit)?;
        let src = self.traces.source(Self::NAME, from, to).await?;
        let v = view(Self::NAME, &src)?;
        let mut rows = analysis::red(&v, a.service.as_deref(), from, to);
        if let Some(op) = &a.operation {
            rows.retain(|r| &r.operation == op);
        }
        rows.truncate(n);
        Ok(RedAnswer {
            window_s: (to - from) / 1_000_000_000,
            rows,
            store: v.stats(),
        })
    }
}

/// One slow trace, compacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowTrace {
    pub trace_id: String,
    pub service: String,
    pub operation: String,
    pub duration_ms: f64,
    pub error: bool,
    pub spans: usize,
    /// The spans that hold the time: (service, operation, self ms) along the critical path.
    pub critical_path: Vec<(String, String, f64)>,
}

pub struct SlowestTool {
    pub traces: Traces,
}

#[async_trait]
impl Tool for SlowestTool {
    const NAME: &'static str = "traces.slowest";
    const DESCRIPTION: &'static str = "The slowest traces in the incident window (optionally for one service or route), each compacted to the spans on its critical path with their self time.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = TraceQuery;
    type Output = Vec<SlowTrace>;
    traces_tool!();

    async fn call(&self, a: TraceQuery) -> Result<Vec<SlowTrace>, ToolError> {
        let (from, to) = self.traces.window(Self::NAME, a.window_s)?;
        let n = limit(Self::NAME, a.limit)?;
        let src = self.traces.source(Self::NAME, from, to).await?;
        let v = view(Self::NAME, &src)?;
        let roots =
            analysis::slow_roots(&v, a.service.as_deref(), a.operation.as_deref(), from, to);
        Ok(roots
            .iter()
            .take(n)
            .map(|r| {
                let spans = v.trace(&r.trace_id);
                let mut path = analysis::critical_path(&spans);
                path.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
                SlowTrace {
                    trace_id: hex::encode(r.trace_id),
                    service: v.str(r.service).to_string(),
                    operation: v.str(r.name).to_string(),
                    duration_ms: r.duration_ns() as f64 / 1e6,
                    error: spans.iter().any(|s| s.error),
                    spans: spans.len(),
                    critical_path: path
                        .iter()
                        .take(4)
                        .map(|(s, ns)| {
                            (
                                v.str(s.service).to_string(),
                                v.str(s.name).to_string(),
                                *ns as f64 / 1e6,
                            )
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

/// Arguments of `traces.critical_path`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CriticalPathArgs {
    /// One trace id (32 hex digits). Omit to aggregate over the slowest traces in the window.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// With no trace_id: only traces whose root is in this service.
    #[serde(default)]
    pub service: Option<String>,
    /// With no trace_id: only traces whose root operation is this (e.g. "GET /checkout").
    #[serde(default)]
    pub operation: Option<String>,
    /// The incident window in seconds, ending now (default 300).
    #[serde(default)]
    pub window_s: Option<u64>,
    /// With no trace_id: how many of the slowest traces to aggregate, 1 to 200 (default 20).
    #[serde(default)]
    pub traces: Option<usize>,
}

pub struct CriticalPathTool {
    pub traces: Traces,
}

#[async_trait]
impl Tool for CriticalPathTool {
    const NAME: &'static str = "traces.critical_path";
    const DESCRIPTION: &'static str = "Self time along the critical path, by service and operation, for one trace or aggregated over the slowest traces in the window: which downstream dominates (e.g. provider.authorize in service payments: 1.22 s of 1.24 s).";
    const RISK: RiskClass = RiskClass::Read;
    type Args = CriticalPathArgs;
    type Output = CriticalPath;
    traces_tool!();

    async fn call(&self, a: CriticalPathArgs) -> Result<CriticalPath, ToolError> {
        let bad = |m: String| ToolError::BadArguments {
            tool: Self::NAME.into(),
            message: m,
        };
        let (from, to) = self.traces.window(Self::NAME, a.window_s)?;
        let n = in_range(Self::NAME, "traces", a.traces.unwrap_or(20), 1..=200)?;
        let src = self.traces.source(Self::NAME, from, to).await?;
        let v = view(Self::NAME, &src)?;
        let ids: Vec<[u8; 16]> = match &a.trace_id {
            Some(t) => {
                let b =
                    hex::decode(t).map_err(|e| bad(format!("trace_id {t:?} is not hex: {e}")))?;
                let id: [u8; 16] = b
                    .try_into()
                    .map_err(|_| bad(format!("trace_id {t:?} must be 32 hex digits")))?;
                vec![id]
            }
            None => {
                analysis::slow_roots(&v, a.service.as_deref(), a.operation.as_deref(), from, to)
                    .iter()
                    .take(n)
                    .map(|s| s.trace_id)
                    .collect()
            }
        };
        let mut cp = analysis::aggregate_path(&v, &ids);
        cp.path.truncate(8);
        Ok(cp)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorsAnswer {
    pub window_s: u64,
    pub groups: Vec<ErrorGroup>,
}

pub struct ErrorsTool {
    pub traces: Traces,
}

#[async_trait]
impl Tool for ErrorsTool {
    const NAME: &'static str = "traces.errors";
    const DESCRIPTION: &'static str = "Error spans in the incident window grouped by service, operation and status message, with counts, whether the error starts there (origin) or only propagates, and one exemplar trace id each.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = TraceQuery;
    type Output = ErrorsAnswer;
    traces_tool!();

    async fn call(&self, a: TraceQuery) -> Result<ErrorsAnswer, ToolError> {
        let (from, to) = self.traces.window(Self::NAME, a.window_s)?;
        let n = limit(Self::NAME, a.limit)?;
        let src = self.traces.source(Self::NAME, from, to).await?;
        let v = view(Self::NAME, &src)?;
        let mut groups = analysis::errors(&v, a.service.as_deref(), from, to);
        groups.truncate(n);
        Ok(ErrorsAnswer {
            window_s: (to - from) / 1_000_000_000,
            groups,
        })
    }
}
