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
