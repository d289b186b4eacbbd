//! `POST /v1/traces`: OTLP/HTTP trace export, protobuf or JSON, gzip or not.
//!
//! In order: the route's middleware ([`super::auth::require_ingest`]) checks the token (an
//! `ingest` token, or a responder) and its rate limit before anything of the body is read; then
//! the body is read (at most `[server] max_body_bytes`, after decompression too), a bounded
//! number of exports decode at once, and the spans per second are checked.

use super::AppState;
use crate::collectors::traces::now_ns;
use crate::collectors::traces::otlp::{Format, convert, decode, error_body, response};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn fail(status: StatusCode, format: Option<Format>, grpc_code: i32, message: &str) -> Response {
    let (ct, body) = error_body(format, grpc_code, message);
    let mut r = reply(status, ct, body);
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// `google.rpc.Status` in OTLP/JSON: an export refused.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // documents what `error_body` writes
pub(crate) struct OtlpStatus {
    /// The gRPC status code (3 invalid argument, 8 resource exhausted, 14 unavailable).
    code: i32,
    message: String,
}

/// A refusal before the export is read (authentication, rate limit, overload: the JSON
/// `Error`), or of the export itself (`OtlpStatus`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the two bodies one status can carry
pub(crate) enum OtlpRefusal {
    Error(super::error::ErrorBody),
    Otlp(OtlpStatus),
}

/// An `ExportTraceServiceRequest` in OTLP/JSON.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the JSON encoding of the request
pub(crate) struct OtlpJsonRequest {
    /// The spans, by resource and instrumentation scope.
    #[schema(rename = "resourceSpans")]
    resource_spans: Vec<serde_json::Value>,
}

/// An `ExportTraceServiceResponse` in OTLP/JSON.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the JSON encoding of the response
pub(crate) struct OtlpJsonResponse {
    /// Present when some spans were rejected: `rejectedSpans` and `errorMessage`.
    #[schema(rename = "partialSuccess")]
    partial_success: Option<serde_json::Value>,
}

/// OTLP/HTTP trace export
///
/// OpenTelemetry traces into the bounded span store, as the OTLP/HTTP specification says:
/// protobuf or JSON `ExportTraceServiceRequest`, optionally `Content-Encoding: gzip` (the body
/// limit applies after decompression too). Errors carry a `google.rpc.Status` in the request's
/// encoding; 429 and 503 carry Retry-After. (401, 403 and 429 from authentication carry the
/// JSON `Error`.)
#[utoipa::path(
    post,
    path = "/v1/traces",
    operation_id = "otlpTraces",
    tag = "traces",
    request_body(content(
        (Vec<u8> = "application/x-protobuf"),
        (OtlpJsonRequest = "application/json"),
    ), description = "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"),
    responses(
        (status = 200, description = "Stored (a partial success names the rejected spans).", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpJsonResponse = "application/json"),
        )),
        (status = 400, description = "The body is not a valid ExportTraceServiceRequest.", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 413, description = "The body (after decompression) is over `[server] max_body_bytes`: send smaller batches.", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 415, description = "The Content-Type is neither application/x-protobuf nor application/json (answered in JSON).", body = OtlpStatus),
        (status = 429, description = "Over the caller's request rate (JSON `Error`), or over `[server] max_spans_per_s` spans per second (OTLP status). Retry after the delay.",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")), content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpRefusal = "application/json"),
        )),
        (status = 503, description = "Too many exports in flight (`[server] max_concurrent_exports`, OTLP status), or the server is overloaded or the token store unavailable (JSON `Error`). Retry after the delay.",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")), content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpRefusal = "application/json"),
        )),
    )
)]
pub async fn export(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = Format::from_content_type(ct) else {
        return fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            3,
            &format!(
                "content type {ct:?} is not OTLP: send application/x-protobuf or application/json"
            ),
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the body is larger than {} bytes: send smaller batches",
                    st.config.server.max_body_bytes
                )
            } else {
                format!("the body could not be read: {e}")
            };
            return fail(status, Some(format), 3, &msg);
        }
    };
    // Overload: a bounded number of exports decode at once.
    let Ok(_permit) = st.exports.try_acquire() else {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format),
            14,
            "too many exports in flight: retry after the delay",
        );
    };
    let req = match decode(format, &body) {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::BAD_REQUEST, Some(format), 3, &e.to_string()),
    };
    let converted = convert(&req);
    let n = converted.spans.len() as f64;
    let allowed = st
        .spans_per_s
        .lock()
        .map(|mut b| b.take(n))
        .unwrap_or(false);
    if !allowed {
        return fail(
            StatusCode::TOO_MANY_REQUESTS,
            Some(format),
            8,
            &format!(
                "more than {} spans per second: retry after the delay",
                st.config.server.max_spans_per_s
            ),
        );
    }
    st.spans.insert(&converted.spans, now_ns());
    reply(
        StatusCode::OK,
        format.content_type(),
        response(format, converted.rejected, converted.first_error),
    )
}
