//! The team's trace backend instead of the embedded store: Grafana Tempo or Jaeger through its
//! HTTP query API (`[traces] backend`, `backend_url`). For each question the traces tools ask,
//! the traces of the incident window and its baseline are fetched (at most
//! `backend_max_traces`), converted to spans and put in a fresh bounded store, and the same
//! analysis runs over it (RED, critical path, error groups).
//!
//! - Tempo: `GET /api/search?start=&end=&limit=` (seconds) for trace ids, then
//!   `GET /api/traces/<id>` for each, which answers OTLP in protobuf's JSON mapping (`batches`,
//!   ids in base64, older versions `instrumentationLibrarySpans`).
//! - Jaeger: `GET /api/services`, then `GET /api/traces?service=&start=&end=&limit=`
//!   (microseconds) per service; spans with `references`, `tags` and `processes`.

use super::otlp;
use super::store::{NewSpan, SpanStore};
use crate::config::{TraceBackendKind, TraceSettings};
use base64::Engine;
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub struct Backend {
    kind: TraceBackendKind,
    url: String,
    http: reqwest::Client,
    token: Option<String>,
    max_traces: usize,
    timeout_s: u64,
}

/// Why the team's trace backend gave no traces.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{who} did not answer {path} within {seconds} s")]
    Timeout {
        who: String,
        path: String,
        seconds: u64,
    },
    #[error("{who} is unreachable: {reason}")]
    Unreachable { who: String, reason: String },
    #[error("{who}: {path}: {reason}")]
    Transport {
        who: String,
        path: String,
        reason: String,
    },
    #[error("{who} answered {path} with HTTP {status}: {body}")]
    Status {
        who: String,
        path: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("{who} sent {path} as something other than JSON: {reason}")]
    NotJson {
        who: String,
        path: String,
        reason: String,
    },
    /// A trace the backend sent that is not a trace as its API defines it.
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Decode(#[from] otlp::DecodeError),
}

impl Backend {
    /// None for the embedded store.
    pub fn from_settings(s: &TraceSettings) -> Option<Backend> {
        if s.backend == TraceBackendKind::Embedded || s.backend_url.is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(s.backend_timeout_s.max(1)))
            .connect_timeout(Duration::from_secs(s.backend_timeout_s.clamp(1, 5)))
            .build()
            .ok()?;
        Some(Backend {
            kind: s.backend,
            url: s.backend_url.trim_end_matches('/').to_string(),
            http,
            token: std::env::var(&s.backend_token_env)
                .ok()
                .filter(|t| !t.is_empty()),
            max_traces: s.backend_max_traces,
            timeout_s: s.backend_timeout_s,
        })
    }

    fn name(&self) -> &'static str {
        match self.kind {
            TraceBackendKind::Jaeger => "Jaeger",
            _ => "Tempo",
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, BackendError> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let who = format!("{} at {}", self.name(), self.url);
        let path_s = path.to_string();
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                BackendError::Timeout {
                    who: who.clone(),
                    path: path_s.clone(),
                    seconds: self.timeout_s,
                }
            } else if e.is_connect() {
                BackendError::Unreachable {
                    who: who.clone(),
                    reason: e.to_string(),
                }
            } else {
                BackendError::Transport {
                    who: who.clone(),
                    path: path_s.clone(),
                    reason: e.to_string(),
                }
            }
        })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| BackendError::Transport {
            who: who.clone(),
            path: format!("reading {path}"),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(BackendError::Status {
                who,
                path: path_s,
                status,
                body: body.chars().take(200).collect(),
            });
        }
        serde_json::from_str(&body).map_err(|e| BackendError::NotJson {
            who,
            path: path_s,
            reason: e.to_string(),
        })
    }

    /// The spans of the traces in `[from_ns, to_ns)`, in a fresh store.
    pub async fn fetch(&self, from_ns: u64, to_ns: u64) -> Result<Arc<SpanStore>, BackendError> {
        let window_s = (to_ns.saturating_sub(from_ns) / 1_000_000_000).max(1) + 60;
        let store = Arc::new(SpanStore::new(128 << 20, window_s));
        match self.kind {
            TraceBackendKind::Jaeger => self.fetch_jaeger(from_ns, to_ns, &store).await?,
            _ => self.fetch_tempo(from_ns, to_ns, &store).await?,
        }
        Ok(store)
    }

    async fn fetch_tempo(
        &self,
        from_ns: u64,
        to_ns: u64,
        store: &SpanStore,
    ) -> Result<(), BackendError> {
        let found = self
            .get(
                "/api/search",
                &[
                    ("start", (from_ns / 1_000_000_000).to_string()),
                    ("end", to_ns.div_ceil(1_000_000_000).to_string()),
                    ("limit", self.max_traces.to_string()),
                ],
            )
            .await?;
        let ids: Vec<String> = found["traces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["traceID"].as_str().map(str::to_string))
                    .take(self.max_traces)
                    .collect()
            })
            .unwrap_or_default();
        let traces: Vec<Result<Value, BackendError>> = futures::stream::iter(ids)
            .map(|id| async move { self.get(&format!("/api/traces/{id}"), &[]).await })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut first_err = None;
        let mut got = 0;
        for t in traces {
            match t.and_then(|v| tempo_to_otlp(&v)) {
                Ok(req) => {
                    let conv = otlp::convert(&req);
                    store.insert(&conv.spans, to_ns);
                    got += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if got == 0 => Err(e),
            _ => Ok(()),
        }
    }

    async fn fetch_jaeger(
        &self,
        from_ns: u64,
        to_ns: u64,
        store: &SpanStore,
    ) -> Result<(), BackendError> {
        let services: Vec<String> = self.get("/api/services", &[]).await?["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .filter(|s| s != "jaeger-query" && s != "jaeger-all-in-one")
                    .take(50)
                    .collect()
            })
            .unwrap_or_default();
        let per = (self.max_traces / services.len().max(1)).max(1);
        let answers: Vec<Result<Value, BackendError>> = futures::stream::iter(services)
            .map(|svc| async move {
                self.get(
                    "/api/traces",
                    &[
                        ("service", svc),
                        ("start", (from_ns / 1000).to_string()),
                        ("end", to_ns.div_ceil(1000).to_string()),
                        ("limit", per.to_string()),
                    ],
                )
                .await
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut seen = HashSet::new();
        let mut first_err = None;
        let mut ok = 0;
        for a in answers {
            let v = match a {
                Ok(v) => v,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            ok += 1;
            for t in v["data"].as_array().into_iter().flatten() {
                let id = t["traceID"].as_str().unwrap_or("").to_string();
                if !seen.insert(id) || seen.len() > self.max_traces {
                    continue;
                }
                let spans = jaeger_spans(t);
                let refs: Vec<NewSpan<'_>> = spans.iter().map(JaegerSpan::as_new).collect();
                store.insert(&refs, to_ns);
            }
        }
        match first_err {
            Some(e) if ok == 0 => Err(e),
            _ => Ok(()),
        }
    }
}

/// An id in hex (OTLP/JSON) or base64 (protobuf's JSON mapping, as Tempo answers) as hex.
fn id_hex(s: &str, bytes: usize) -> Option<String> {
    if s.len() == bytes * 2 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(s.to_ascii_lowercase());
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    (raw.len() == bytes).then(|| hex::encode(raw))
}

/// Tempo's trace-by-id answer as an OTLP export request.
fn tempo_to_otlp(
    v: &Value,
) -> Result<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest, BackendError>
{
    // v1: {"batches": [...]}; v2: {"trace": {"resourceSpans": [...]}}.
    let mut rs = ["/batches", "/trace/resourceSpans", "/resourceSpans"]
        .iter()
        .find_map(|p| v.pointer(p))
        .cloned()
        .ok_or_else(|| BackendError::Malformed("a Tempo trace without batches".into()))?;
    for b in rs.as_array_mut().into_iter().flatten() {
        if let Some(obj) = b.as_object_mut()
            && let Some(old) = obj.remove("instrumentationLibrarySpans")
        {
            obj.insert("scopeSpans".into(), old);
        }
        for ss in b["scopeSpans"].as_array_mut().into_iter().flatten() {
            for sp in ss["spans"].as_array_mut().into_iter().flatten() {
                for (k, n) in [("traceId", 16), ("spanId", 8), ("parentSpanId", 8)] {
                    if let Some(id) = sp[k].as_str().filter(|s| !s.is_empty()) {
                        let h = id_hex(id, n).ok_or_else(|| {
                            BackendError::Malformed(format!(
                                "a span's {k} {id:?} is neither hex nor base64 of {n} bytes"
                            ))
                        })?;
                        sp[k] = Value::String(h);
                    }
                }
                // protobuf's JSON mapping writes enums by name.
                if let Some(k) = sp["kind"].as_str() {
                    let n = match k {
                        "SPAN_KIND_INTERNAL" => 1,
                        "SPAN_KIND_SERVER" => 2,
                        "SPAN_KIND_CLIENT" => 3,
                        "SPAN_KIND_PRODUCER" => 4,
                        "SPAN_KIND_CONSUMER" => 5,
                        _ => 0,
                    };
                    sp["kind"] = Value::from(n);
                }
                if let Some(c) = sp.pointer("/status/code").and_then(Value::as_str) {
                    let n = match c {
                        "STATUS_CODE_OK" => 1,
                        "STATUS_CODE_ERROR" => 2,
                        _ => 0,
                    };
                    sp["status"]["code"] = Value::from(n);
                }
            }
        }
    }
    let body = serde_json::json!({ "resourceSpans": rs });
    Ok(otlp::decode(
        otlp::Format::Json,
        body.to_string().as_bytes(),
    )?)
}

/// One Jaeger span, owned, until it is inserted.
struct JaegerSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: [u8; 8],
    service: String,
    name: String,
    kind: u8,
    start_ns: u64,
    end_ns: u64,
    error: bool,
    status_message: String,
    db_system: String,
}

impl JaegerSpan {
    fn as_new(&self) -> NewSpan<'_> {
        NewSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_id: self.parent_id,
            service: &self.service,
            name: &self.name,
            kind: self.kind,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            error: self.error,
            status_message: &self.status_message,
            db_system: &self.db_system,
        }
    }
}

fn fixed<const N: usize>(hex_id: &str) -> Option<[u8; N]> {
    // Jaeger drops leading zeros and may use 64-bit trace ids: pad on the left.
    let padded = format!("{:0>width$}", hex_id, width = N * 2);
    let raw = hex::decode(padded).ok()?;
    raw.try_into().ok()
}

fn jaeger_spans(t: &Value) -> Vec<JaegerSpan> {
    let tag = |s: &Value, key: &str| -> Option<Value> {
        s["tags"]
            .as_array()?
            .iter()
            .find(|x| x["key"] == key)
            .map(|x| x["value"].clone())
    };
    let mut out = vec![];
    for s in t["spans"].as_array().into_iter().flatten() {
        let (Some(trace_id), Some(span_id)) = (
            s["traceID"].as_str().and_then(fixed::<16>),
            s["spanID"].as_str().and_then(fixed::<8>),
        ) else {
            continue;
        };
        let parent_id = s["references"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["refType"] == "CHILD_OF"))
            .and_then(|r| r["spanID"].as_str())
            .and_then(fixed::<8>)
            .unwrap_or([0; 8]);
        let service = s["processID"]
            .as_str()
            .and_then(|p| t["processes"][p]["serviceName"].as_str())
            .unwrap_or("unknown_service")
            .to_string();
        let kind = match tag(s, "span.kind").as_ref().and_then(Value::as_str) {
            Some("internal") => 1,
            Some("server") => 2,
            Some("client") => 3,
            Some("producer") => 4,
            Some("consumer") => 5,
            _ => 0,
        };
        let error = tag(s, "error").is_some_and(|v| v == Value::Bool(true) || v == "true")
            || tag(s, "otel.status_code").is_some_and(|v| v == "ERROR");
        let start_us = s["startTime"].as_u64().unwrap_or(0);
        let dur_us = s["duration"].as_u64().unwrap_or(0);
        out.push(JaegerSpan {
            trace_id,
            span_id,
            parent_id,
            service,
            name: s["operationName"].as_str().unwrap_or("?").to_string(),
            kind,
            start_ns: start_us * 1000,
            end_ns: (start_us + dur_us) * 1000,
            error,
            status_message: tag(s, "otel.status_description")
                .or_else(|| tag(s, "error.message"))
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            db_system: tag(s, "db.system")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_hex_or_base64_and_jaeger_short_ids() {
        assert_eq!(
            id_hex("AAECAwQFBgc=", 8).as_deref(),
            Some("0001020304050607")
        );
        assert_eq!(
            id_hex("0001020304050607", 8).as_deref(),
            Some("0001020304050607")
        );
        assert_eq!(id_hex("nope", 8), None);
        assert_eq!(
            fixed::<16>("abc"),
            Some({
                let mut a = [0u8; 16];
                a[14] = 0x0a;
                a[15] = 0xbc;
                a
            })
        );
    }
}
