//! `[traces]`: the embedded span store, or the team's Tempo or Jaeger.

use serde::{Deserialize, Serialize};

/// Span store settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSettings {
    /// Hard memory bound of the span store, bytes; the oldest spans are dropped first.
    pub max_bytes: u64,
    /// How long spans are kept, seconds.
    pub retention_s: u64,
    /// The incident window the traces tools look at by default, seconds (the baseline is the
    /// same length before it).
    pub window_s: u64,
    /// Where the traces tools read spans: `embedded` (the OTLP receiver's store), or the team's
    /// `tempo` or `jaeger` through its HTTP query API at `backend_url`.
    pub backend: TraceBackendKind,
    /// The backend's base URL, e.g. `http://tempo:3200` or `http://jaeger-query:16686`.
    pub backend_url: String,
    /// Variable holding a bearer token for the backend (may be unset).
    pub backend_token_env: String,
    /// Seconds one backend request may take.
    pub backend_timeout_s: u64,
    /// At most this many traces are fetched per question (the slowest and failing ones are
    /// what the tools look at).
    pub backend_max_traces: usize,
}

/// Where spans come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TraceBackendKind {
    #[default]
    Embedded,
    Tempo,
    Jaeger,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            max_bytes: 256 << 20,
            retention_s: 3600,
            window_s: 300,
            backend: TraceBackendKind::Embedded,
            backend_url: String::new(),
            backend_token_env: "TRACES_TOKEN".into(),
            backend_timeout_s: 10,
            backend_max_traces: 200,
        }
    }
}
