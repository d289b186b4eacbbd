//! OTLP trace payloads: decoding (protobuf and OTLP/JSON, from the published definitions in
//! opentelemetry-proto), validation span by span, and the responses the OTLP/HTTP spec asks for.
//!
//! A span with a bad id or a missing name is rejected alone and counted in the partial-success
//! answer; the rest of the request is kept.

use super::store::NewSpan;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value as AnyValue};
use prost::Message;

/// The wire format of a request (and so of its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a Content-Type header; None for anything OTLP/HTTP does not define.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/x-protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// A request body that is not an OTLP export request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not a valid OTLP protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("the body is not valid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes a request body.
pub fn decode(format: Format, body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    Ok(match format {
        Format::Protobuf => ExportTraceServiceRequest::decode(body)?,
        Format::Json => serde_json::from_slice(body)?,
    })
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Spans ready for the store, and what was rejected.
pub struct Converted<'a> {
    pub spans: Vec<NewSpan<'a>>,
    pub rejected: i64,
    pub first_error: Option<String>,
}

/// How far in the future a span may end (clock skew) before it is rejected.
const MAX_FUTURE_NS: u64 = 3_600_000_000_000;

/// Validates and converts every span of a request.
pub fn convert(req: &ExportTraceServiceRequest) -> Converted<'_> {
    let now_ns = super::now_ns();
    let mut out = Converted {
        spans: vec![],
        rejected: 0,
        first_error: None,
    };
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| str_attr(&r.attributes, "service.name"))
            .unwrap_or("unknown_service");
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let problem = if s.trace_id.len() != 16 || s.trace_id.iter().all(|b| *b == 0) {
                    Some(format!(
                        "span {:?}: trace_id must be 16 bytes and not all zero, got {} bytes",
                        s.name,
                        s.trace_id.len()
                    ))
                } else if s.span_id.len() != 8 || s.span_id.iter().all(|b| *b == 0) {
                    Some(format!(
                        "span {:?}: span_id must be 8 bytes and not all zero, got {} bytes",
                        s.name,
                        s.span_id.len()
                    ))
                } else if !(s.parent_span_id.is_empty() || s.parent_span_id.len() == 8) {
                    Some(format!(
                        "span {:?}: parent_span_id must be empty or 8 bytes",
                        s.name
                    ))
                } else if s.name.is_empty() {
                    Some("a span has no name".to_string())
                } else if s.end_time_unix_nano < s.start_time_unix_nano {
                    Some(format!("span {:?} ends before it starts", s.name))
                } else if s.end_time_unix_nano > now_ns.saturating_add(MAX_FUTURE_NS) {
                    Some(format!(
                        "span {:?} ends more than an hour in the future (clock skew?)",
                        s.name
                    ))
                } else {
                    None
                };
                if let Some(p) = problem {
                    out.rejected += 1;
                    out.first_error.get_or_insert(p);
                    continue;
                }
                let mut trace_id = [0u8; 16];
                trace_id.copy_from_slice(&s.trace_id);
                let mut span_id = [0u8; 8];
                span_id.copy_from_slice(&s.span_id);
                let mut parent_id = [0u8; 8];
                if s.parent_span_id.len() == 8 {
                    parent_id.copy_from_slice(&s.parent_span_id);
                }
                let status = s.status.as_ref();
                out.spans.push(NewSpan {
                    trace_id,
                    span_id,
                    parent_id,
                    service,
                    name: &s.name,
                    kind: s.kind.clamp(0, 5) as u8,
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    error: status.is_some_and(|st| st.code == 2),
                    status_message: status.map(|st| st.message.as_str()).unwrap_or(""),
                    db_system: str_attr(&s.attributes, "db.system")
                        .or_else(|| str_attr(&s.attributes, "db.system.name"))
                        .unwrap_or(""),
                });
            }
        }
    }
    out
}

/// The success answer, with partial success when some spans were rejected.
pub fn response(format: Format, rejected: i64, error: Option<String>) -> Vec<u8> {
    let resp = ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected,
            error_message: error.unwrap_or_default(),
        }),
    };
    match format {
        Format::Protobuf => resp.encode_to_vec(),
        Format::Json => serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP asks for on 4xx and 5xx answers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error body in the request's format (JSON when the format is unknown).
pub fn error_body(format: Option<Format>, code: i32, message: &str) -> (&'static str, Vec<u8>) {
    match format {
        Some(Format::Protobuf) => (
            "application/x-protobuf",
            RpcStatus {
                code,
                message: message.to_string(),
            }
            .encode_to_vec(),
        ),
        _ => (
            "application/json",
            serde_json::json!({"code": code, "message": message})
                .to_string()
                .into_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue as Any;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    pub fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(Any {
                            value: Some(AnyValue::StringValue("payments".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn span(trace: u8, id: u8, name: &str) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: name.into(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            status: Some(Status {
                code: 2,
                message: "declined".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn protobuf_round_trip_and_partial_success() {
        let mut bad = span(1, 2, "bad");
        bad.span_id = vec![1, 2, 3];
        let req = request(vec![span(1, 1, "provider.authorize"), bad]);
        let body = req.encode_to_vec();
        let back = decode(Format::Protobuf, &body).unwrap();
        let c = convert(&back);
        assert_eq!(c.spans.len(), 1);
        assert_eq!(c.spans[0].service, "payments");
        assert!(c.spans[0].error);
        assert_eq!(c.rejected, 1);
        assert!(c.first_error.unwrap().contains("span_id must be 8 bytes"));
        let r = ExportTraceServiceResponse::decode(
            response(Format::Protobuf, 1, Some("x".into())).as_slice(),
        )
        .unwrap();
        assert_eq!(r.partial_success.unwrap().rejected_spans, 1);
        assert!(
            decode(Format::Protobuf, &body[..body.len() - 3])
                .unwrap_err()
                .to_string()
                .contains("not a valid OTLP protobuf")
        );
    }

    #[test]
    fn json_mapping_uses_hex_ids() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"storefront"}}]},
            "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /checkout",
            "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","kind":2}]}]}]}"#;
        let req = decode(Format::Json, json.as_bytes()).unwrap();
        let c = convert(&req);
        assert_eq!(c.spans.len(), 1, "{:?}", c.first_error);
        assert_eq!(c.spans[0].trace_id[0], 0x5b);
        assert_eq!(c.spans[0].service, "storefront");
        assert_eq!(c.spans[0].end_ns - c.spans[0].start_ns, 1_000_000_000);
        assert!(decode(Format::Json, b"{\"resourceSpans\": 7}").is_err());
    }

    /// A short, deterministic fuzz run that CI can afford: thousands of mutations of a valid
    /// payload (flipped bytes, truncations, splices) and random bytes go through the decoder and
    /// the validator. Nothing may panic. The coverage-guided target is fuzz/fuzz_targets/otlp_decode.rs.
    #[test]
    fn mutated_payloads_never_panic() {
        let valid = request((0..20).map(|i| span(i + 1, i + 1, "op")).collect()).encode_to_vec();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut decoded = 0;
        for round in 0..20_000 {
            let mut b = valid.clone();
            match round % 4 {
                0 => {
                    for _ in 0..(next() % 8 + 1) {
                        let i = (next() as usize) % b.len();
                        b[i] = next() as u8;
                    }
                }
                1 => b.truncate((next() as usize) % b.len()),
                2 => {
                    let i = (next() as usize) % b.len();
                    let extra: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
                    b.splice(i..i, extra);
                }
                _ => b = (0..(next() % 512)).map(|_| next() as u8).collect(),
            }
            if let Ok(r) = decode(Format::Protobuf, &b) {
                decoded += 1;
                let c = convert(&r);
                assert!(c.spans.len() as i64 + c.rejected >= 0);
            }
            let _ = decode(Format::Json, &b);
        }
        assert!(
            decoded > 0,
            "some mutations still decode, so convert() was exercised too"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type("application/x-protobuf"),
            Some(Format::Protobuf)
        );
        assert_eq!(
            Format::from_content_type("application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
