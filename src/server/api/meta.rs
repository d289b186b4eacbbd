//! The server itself: liveness, readiness, metrics, who the caller is, the tools, the web page.

use super::super::auth::Caller;
use super::super::{ApiError, AppState};
use crate::policy::Role;
use crate::tool::ToolSpec;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use std::sync::Arc;

/// The Content-Security-Policy of the public pages: their own inline script and style, and
/// requests to this server only.
pub(crate) const PAGE_CSP: &str = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:";

/// A public page (inline CSS and JS, nothing from elsewhere).
pub(crate) fn html_page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        ],
        Html(html),
    )
        .into_response()
}

/// Liveness
///
/// Answers the constant `ok` while the process serves requests. Touches nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "Alive.", body = String, content_type = "text/plain", example = json!("ok")))
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The web page
///
/// One self-contained HTML file (inline CSS and JS, no build step). It holds no data: it asks
/// for a bearer token and calls this API with it (the event stream is read with fetch(), since
/// EventSource cannot send Authorization). Its header links to the API's page, `/api/v1/docs`.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "page",
    tag = "web",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html"))
)]
pub(crate) async fn page() -> Response {
    html_page(include_str!("../web/index.html"))
}

/// Who a token belongs to.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "ana", "role": "approver"}))]
pub(crate) struct Me {
    /// The token's holder (`admin` for the operator token).
    name: String,
    role: Role,
}

/// Who the token belongs to
///
/// The caller's name and role (the operator token from `[server] token_env` is `admin`,
/// approver).
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "identity",
    responses((status = 200, description = "The caller.", body = Me))
)]
pub(crate) async fn me(Extension(c): Extension<Caller>) -> Json<Me> {
    Json(Me {
        name: c.name,
        role: c.role,
    })
}

/// The incident store answers.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"store": "ok", "replica": "oncall-0"}))]
pub(crate) struct Readiness {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    store: &'static str,
    /// This replica's name (`[server] replica`, else the host name).
    replica: String,
}

/// Readiness
///
/// Ready when the incident store answers a round trip; 503 naming why when it does not (the
/// reason passes the redactor).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses((status = 200, description = "The store answers.", body = Readiness))
)]
pub(crate) async fn readyz(State(st): State<Arc<AppState>>) -> Result<Json<Readiness>, ApiError> {
    if let Err(e) = st.store.ping().await {
        tracing::error!("readiness: incident store: {e}");
        return Err(ApiError::Unavailable(crate::redact::redact(&format!(
            "not ready: {e}"
        ))));
    }
    Ok(Json(Readiness {
        store: "ok",
        replica: st.replica.clone(),
    }))
}

/// Prometheus / OpenMetrics
///
/// Request counts and latencies by route, open event streams, investigations, Slack requests,
/// actions, refusals by reason, connection pools.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition.", body = String, content_type = "application/openmetrics-text"))
)]
pub(crate) async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// The tools an investigation can call
///
/// Every registered tool with its risk class and argument schema, in registry order; tools the
/// configuration cannot serve are listed with `unavailable: true`.
#[utoipa::path(
    get,
    path = "/api/v1/tools",
    operation_id = "tools",
    tag = "tools",
    responses((status = 200, description = "The tools, in registry order.", body = Vec<ToolSpec>))
)]
pub(crate) async fn tools(State(st): State<Arc<AppState>>) -> Json<Vec<ToolSpec>> {
    Json(st.registry.specs())
}
