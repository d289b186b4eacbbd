//! The routes, by who may call them, and the layers around them. The live router and the
//! OpenAPI document come from the same groups: each handler is registered once, with
//! `utoipa_axum`'s `routes!`, in the group of its callers; the group's authentication layer
//! guards it, and [`openapi::stamp`] writes the group's role and security into its operations.

use super::api::{alerts, approvals, incidents, investigations, meta, postmortem};
use super::openapi::{self, Access};
use super::{AppState, auth, error, metrics, otlp, slack_routes, sse};
use crate::policy::Role;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{Extension, Router, middleware};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Group = OpenApiRouter<Arc<AppState>>;

/// Every route, in the group of who may call it.
fn groups() -> Vec<(Access, Group)> {
    let public = Group::default()
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::page))
        .routes(routes!(openapi::docs));
    let viewer = Group::default()
        .routes(routes!(meta::me))
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::show))
        .routes(routes!(sse::events))
        .routes(routes!(postmortem::postmortem))
        .routes(routes!(approvals::approvals))
        .routes(routes!(meta::tools))
        .routes(routes!(openapi::openapi))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::readyz));
    let responder = Group::default()
        .routes(routes!(incidents::open))
        .routes(routes!(alerts::alerts))
        .routes(routes!(incidents::message))
        .routes(routes!(incidents::resume))
        .routes(routes!(approvals::request_action))
        .routes(routes!(approvals::withdraw))
        .routes(routes!(postmortem::draft_postmortem))
        .routes(routes!(incidents::set_status))
        .routes(routes!(investigations::triage))
        .routes(routes!(investigations::record));
    let approver = Group::default().routes(routes!(approvals::decision));
    // OpenTelemetry exporters: an ingest token (or a responder).
    let ingest = Group::default().routes(routes!(otlp::export));
    let slack = Group::default()
        .routes(routes!(slack_routes::command))
        .routes(routes!(slack_routes::events))
        .routes(routes!(slack_routes::interaction));
    vec![
        (Access::Public, public),
        (Access::Role(Role::Viewer), viewer),
        (Access::Role(Role::Responder), responder),
        (Access::Role(Role::Approver), approver),
        (Access::Ingest, ingest),
        (Access::Slack, slack),
    ]
}

/// The routes and their document: each group stamped with its access, then passed through
/// `guard` (which adds its authentication layer), then merged; the common responses last.
pub(crate) fn assemble(guard: impl Fn(Access, Group) -> Group) -> (Router<Arc<AppState>>, OpenApi) {
    let mut all = Group::with_openapi(openapi::base());
    for (access, mut group) in groups() {
        openapi::stamp(group.get_openapi_mut(), access);
        all = all.merge(guard(access, group));
    }
    let (router, mut doc) = all.split_for_parts();
    openapi::CommonResponses.modify(&mut doc);
    (router, doc)
}

/// The router, testable without a socket.
pub fn app(st: Arc<AppState>) -> Router {
    let s = &st.config.server;
    let (router, doc) = assemble(|access, group| match access {
        Access::Public | Access::Slack => group,
        Access::Role(r) => group.layer(middleware::from_fn_with_state(
            (st.clone(), r),
            auth::require,
        )),
        // Authentication and the rate limit run in this layer, before the handler reads and
        // decodes the body.
        Access::Ingest => group.layer(middleware::from_fn_with_state(
            st.clone(),
            auth::require_ingest,
        )),
    });
    // MCP over Streamable HTTP: any token holder (each tool checks its own role inside).
    let router = match (
        st.config.mcp.serve_http,
        super::mcp::http_service(st.clone()),
    ) {
        (false, _) => router,
        (true, Ok(mcp)) => router.merge(Router::new().route_service("/mcp", mcp).layer(
            middleware::from_fn_with_state((st.clone(), Role::Viewer), auth::require),
        )),
        (true, Err(e)) => {
            tracing::error!("MCP over HTTP is off: {e}");
            router
        }
    };
    router
        .fallback(error::no_route)
        .layer(Extension(Arc::new(openapi::Served::new(&doc))))
        .layer(middleware::from_fn_with_state(
            st.metrics.clone(),
            metrics::track,
        ))
        // The limit applies to the decompressed body too: the decompression layer sits outside it.
        .layer(DefaultBodyLimit::max(s.max_body_bytes))
        .layer(RequestDecompressionLayer::new())
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            std::time::Duration::from_secs(s.request_timeout_s.max(1)),
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    error::overloaded()
                }))
                .load_shed()
                .concurrency_limit(s.max_concurrent_requests.max(1)),
        )
        .layer(TraceLayer::new_for_http())
        .with_state(st)
}
