//! `oncall serve`: the copilot people talk to, from a web page, Slack and the API.
//!
//! - [`auth`]: bearer tokens with roles (viewer < responder < approver), stored hashed; per-caller
//!   rate limits. Every entry point checks its caller except `/healthz` and the public pages
//!   (the web page and the API docs page, which hold no data); Slack's routes check Slack's
//!   signature instead.
//! - `state`: [`AppState`], what every handler shares.
//! - `router`: the routes, grouped by who may call them (public, viewer, responder, approver,
//!   OTLP ingest, Slack), and the tower layers around them ([`app`]).
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//!   annotations and their types; each operation's role and security come from the group it
//!   is registered in. Served at `/api/v1/openapi.json`, browsable at `/api/v1/docs`.
//! - `api`: incidents (open from a report or an Alertmanager webhook, read, message, resume),
//!   action requests and decisions, the post-mortem draft, investigations, tools, readiness,
//!   metrics, the web page.
//! - `error`: what a handler answers when it cannot (`ApiError`, as JSON).
//! - `bus`: every stored event, for the subscribers below; the runner writes events and knows
//!   none of them.
//! - `sse`: an incident's events live, resumable with `Last-Event-ID` (the web page and API
//!   clients).
//! - `runner`: investigations and approved actions in the background, every step an event.
//! - [`slack`] (verification, parsing, messages, Web API client), `slack_bridge` (the subscriber
//!   that posts an incident's events into its thread) and `slack_routes` (Slack's requests).
//! - [`mcp`]: the same tools, investigations and approval requests for MCP clients, over stdio
//!   (`oncall mcp`) and Streamable HTTP at `/mcp` (behind the bearer tokens); no MCP call can
//!   run an action.
//! - [`metrics`]: Prometheus text at `/metrics`.
//! - `otlp`: OpenTelemetry traces in (`POST /v1/traces`) to the bounded span store.
//! - [`limits`]: the longest text each field may carry, and what one caller may hold open
//!   (event streams, investigations).
//!
//! Around the routes (tower): request tracing, a timeout (503), body-size limits also after gzip
//! decompression (413), response compression, and a concurrency bound that answers 503 at once
//! instead of queueing. Handlers are thin: they decode, call the domain code, and map its errors
//! to status codes.

mod api;
pub mod auth;
mod bus;
mod error;
pub mod limits;
pub mod mcp;
pub mod metrics;
pub mod openapi;
mod otlp;
mod replicas;
mod router;
mod runner;
pub mod slack;
mod slack_bridge;
mod slack_routes;
mod sse;
mod state;

pub(crate) use error::{ApiError, body, model};
pub use router::app;
pub(crate) use state::start_round_holding;
pub use state::{AppState, replica_name};
use std::sync::Arc;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason} (set [server] listen or ONCALL_SERVER__LISTEN)")]
    Bind { addr: String, reason: String },
    #[error("the server stopped: {0}")]
    Serve(String),
    #[error("the server cannot start: {0}")]
    Setup(String),
}

/// Binds and serves until the process ends.
pub async fn serve(st: Arc<AppState>) -> Result<(), ServerError> {
    let addr = st.config.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| ServerError::Bind {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    if st.config.log_format == crate::config::LogFormat::Json {
        // A log pipeline reads stderr: every line there is a JSON object.
        tracing::info!(address = %local, "listening");
    } else {
        eprintln!(
            "oncall serve: listening on http://{local}\n  web page: http://{local}/   API: http://{local}/api/v1/docs   OTLP: POST http://{local}/v1/traces"
        );
    }
    // Small writes go out at once (an event stream's events, an MCP answer after its priming
    // event) instead of waiting for the client's delayed ACK (about 40 ms).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    // The peer address of each connection reaches the handlers (the wrong-token limit).
    axum::serve(
        listener,
        app(st).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(stopped())
    .await
    .map_err(|e| ServerError::Serve(e.to_string()))
}

/// Resolves on SIGTERM or Ctrl-C: the server stops taking requests and finishes the ones in
/// progress. Investigations still running are marked interrupted at the next start.
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("oncall serve: stopping; unfinished investigations will show as interrupted");
    // Event streams never end by themselves: give requests in progress five seconds, then go.
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        // `main` does not return on this path: send oncall's own last spans first.
        crate::telemetry::flush();
        std::process::exit(0);
    });
}
