//! What a handler answers when it cannot do what was asked: [`ApiError`], always as the JSON
//! [`ErrorBody`] (the document's `Error` schema), and the JSON body decoding that says what to
//! send.

use super::limits;
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error: what was wrong and what to send instead.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error, example = json!({"error": "missing bearer token: send Authorization: Bearer <token>"}))]
pub(crate) struct ErrorBody {
    /// What was wrong and what to send.
    pub error: String,
    /// With a 400 for a field over its maximum: the field, as the request named it (e.g.
    /// `title`, `alerts[3].annotations.description`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `field`: its maximum (characters, or bytes of JSON for tool arguments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl ErrorBody {
    pub(crate) fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            field: None,
            limit: None,
        }
    }
}

/// `status` with the JSON error body, and Retry-After when given.
pub(crate) fn error_response(
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<&'static str>,
) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static(s));
    }
    r
}

/// What an API handler can answer besides success. The client gets a plain message; the detail
/// of an internal failure goes to the log only.
#[derive(Debug)]
pub(crate) enum ApiError {
    BadRequest(String),
    /// A field over its maximum: 400 naming the field and the limit.
    TooLong(limits::TooLong),
    /// The caller is at a per-caller cap: 429 naming it and what is open.
    OverCap(limits::OverCap),
    TooLarge(String),
    NotFound(String),
    Forbidden(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl From<crate::incidents::StoreError> for ApiError {
    fn from(e: crate::incidents::StoreError) -> Self {
        match e {
            crate::incidents::StoreError::NoSuchIncident(id) => {
                ApiError::NotFound(format!("no incident {id}"))
            }
            crate::incidents::StoreError::Invalid(m) => ApiError::BadRequest(m),
            other => {
                tracing::error!("incident store: {other}");
                ApiError::Unavailable("the incident store is unavailable; try again".into())
            }
        }
    }
}

impl ApiError {
    /// What the client is told (an internal failure's detail stays in the log).
    pub(crate) fn message(&self) -> String {
        match self {
            ApiError::TooLong(e) => e.to_string(),
            ApiError::OverCap(e) => e.to_string(),
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::NotFound(m)
            | ApiError::Forbidden(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => m.clone(),
            ApiError::Internal(_) => "the request failed inside oncall; see the server log".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.message();
        let (status, body, retry_after) = match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorBody::new(message), None),
            ApiError::TooLong(e) => (
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    error: message,
                    field: Some(e.field),
                    limit: Some(e.limit),
                },
                None,
            ),
            ApiError::OverCap(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorBody::new(message),
                Some("5"),
            ),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorBody::new(message), None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorBody::new(message), None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorBody::new(message), None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorBody::new(message), None),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new(message),
                Some("1"),
            ),
            ApiError::Internal(detail) => {
                tracing::error!("{detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody::new(message),
                    None,
                )
            }
        };
        error_response(status, body, retry_after)
    }
}

/// The JSON body, or a 400 that says what to send (413 when it is over the size limit).
pub(crate) fn body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "{e}: the most this server takes is [server] max_body_bytes"
            ))
        } else {
            ApiError::BadRequest(format!("{e}: send {expected}"))
        }
    })
}

/// The chat model the configuration names.
pub(crate) fn model(st: &super::AppState) -> Result<Box<dyn crate::llm::ChatModel>, ApiError> {
    crate::app::model(&st.config).map_err(|e| ApiError::Internal(format!("model: {e}")))
}

/// The answer to a request beyond `[server] max_concurrent_requests`.
pub(crate) fn overloaded() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorBody::new("oncall is overloaded; retry in a second"),
        Some("1"),
    )
}

/// What a path no route serves answers. A browser (a `GET` that accepts HTML) gets a small page
/// pointing to the incidents and the API docs, with a link to the incident when the path ends in
/// an incident id (`/incidents/2026-11-27-01`, an old or hand-made link); anyone else gets the
/// JSON error naming the method and path. The page holds no data, so it needs no token.
pub(crate) async fn no_route(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let path = uri.path();
    let html = method == axum::http::Method::GET
        && headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if !html {
        return ApiError::NotFound(format!(
            "no route {method} {path}: the API is listed at /api/v1/docs"
        ))
        .into_response();
    }
    let link = path
        .rsplit('/')
        .find(|s| !s.is_empty())
        .filter(|s| crate::incidents::is_incident_id(s))
        .map(|id| format!("<li><a href=\"/#{id}\">Incident {id}</a> on the incidents page.</li>"))
        .unwrap_or_default();
    let page = include_str!("web/not_found.html").replace("<!--INCIDENT-->", &link);
    (
        StatusCode::NOT_FOUND,
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                super::api::meta::PAGE_CSP,
            ),
        ],
        page,
    )
        .into_response()
}
