//! `GET /api/v1/incidents/{id}/events`: an incident's events as Server-Sent Events, from the
//! store, then live. Each message carries `id: <seq>`, so a client that reconnects with
//! `Last-Event-ID` (or `?after=`) misses nothing and sees nothing twice.
//!
//! A stream reads the store after the last seq it sent whenever this replica appends to the
//! incident, and at least every two seconds (events appended by other replicas sharing a
//! PostgreSQL store). Streams beyond `[server] max_streams` get 503, and a caller's streams
//! beyond `[server] max_streams_per_user` get 429 naming the ones they have open. A stream's
//! slots are freed when it ends, the client's connection dropping included.

use super::auth::Caller;
use super::{ApiError, AppState};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct After {
    /// Send the events with a seq greater than this (default 0: all).
    #[param(minimum = 0, default = 0)]
    after: Option<i64>,
}

/// Counts the stream in the metrics, and holds its slots (the server's and the caller's), for
/// as long as it is open.
struct Open(
    Arc<AppState>,
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
    #[allow(dead_code)] super::limits::Slot,
);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics.streams.dec();
    }
}

struct Cursor {
    st: Arc<AppState>,
    incident: String,
    after: i64,
    queue: VecDeque<crate::incidents::Event>,
    rx: tokio::sync::broadcast::Receiver<super::bus::Published>,
    _open: Open,
}

/// The incident's events as Server-Sent Events
///
/// The events after `after` (or the `Last-Event-ID` header, which wins) from the store, then
/// live. Each message is `id: <seq>`, `event: <kind>`, `data: <Event JSON>`; a `: keep-alive`
/// comment comes every 15 s. A client reconnecting with Last-Event-ID misses nothing and sees
/// nothing twice. Read it with fetch() and a ReadableStream: EventSource cannot send the
/// Authorization header. Streams beyond `[server] max_streams` get 503.
///
/// A caller with `[server] max_streams_per_user` streams open gets 429 naming them; a closed
/// stream or dropped connection frees its slot.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/events",
    operation_id = "incidentEvents",
    tag = "incidents",
    params(
        ("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01"),
        After,
        ("Last-Event-ID" = Option<i64>, Header, description = "The last seq the client saw (SSE reconnection); takes precedence over `after`.", minimum = 0),
    ),
    responses(
        (status = 200, description = "The stream (it does not end while the client listens): each message's `data` is an `Event`.",
            body = String, content_type = "text/event-stream",
            example = json!("id: 1\nevent: report\ndata: {\"seq\":1,\"at\":\"2026-11-27T04:40:00Z\",\"kind\":\"report\",\"actor\":\"ana\",\"data\":{\"text\":\"checkout p99 > 2s\"}}\n\n")),
        (status = 400, description = "`after` or `Last-Event-ID` is not an integer.", body = super::error::ErrorBody),
        (status = 404, description = "No incident with this id.", body = super::error::ErrorBody),
    )
)]
pub async fn events(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<After>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("{e}: use ?after=<seq>")))?;
    let from_header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("Last-Event-ID {v:?} is not an event number"))
            })
        })
        .transpose()?;
    let after = from_header.or(q.after).unwrap_or(0).max(0);
    super::api::incident_or_404(&st, &id).await?;
    let slot = st
        .streams_per_caller
        .acquire(&c.name, &format!("incident {id}"))
        .map_err(|e| {
            st.metrics.count(
                &st.metrics.refusals,
                &[("reason", "over_cap"), ("field", "event_streams")],
            );
            ApiError::OverCap(e)
        })?;
    let Ok(permit) = st.streams.clone().try_acquire_owned() else {
        return Err(ApiError::Unavailable(format!(
            "{} event streams are open, the most this server takes; retry later",
            st.config.server.max_streams
        )));
    };
    st.metrics.streams.inc();
    let cursor = Cursor {
        rx: st.bus.subscribe(),
        _open: Open(st.clone(), permit, slot),
        st,
        incident: id,
        after,
        queue: VecDeque::new(),
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.queue.pop_front() {
                c.after = e.seq;
                let data = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
                let msg = SseEvent::default()
                    .id(e.seq.to_string())
                    .event(event_name(&e.kind))
                    .data(data);
                return Some((Ok::<_, Infallible>(msg), c));
            }
            match c.st.store.events(&c.incident, c.after, 500).await {
                Ok(evs) if !evs.is_empty() => {
                    c.queue.extend(evs);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("event stream of {}: {e}", c.incident);
                }
            }
            // Wait for news of this incident, or poll again in two seconds.
            let wait = async {
                loop {
                    match c.rx.recv().await {
                        Ok(p) if p.incident == c.incident => return,
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => return,
                        Err(RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The `event:` line of a message: the kind's name. A kind this version does not know is named
/// as written, unless it could break the stream's framing (that line cannot hold a line break).
fn event_name(kind: &crate::incidents::EventKind) -> &str {
    let name = kind.as_str();
    if name.contains(['\n', '\r']) {
        "unknown"
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::EventKind;

    #[test]
    fn event_names_never_break_the_stream() {
        assert_eq!(event_name(&EventKind::ActionApproved), "action_approved");
        assert_eq!(
            event_name(&EventKind::Other("runbook_linked".into())),
            "runbook_linked"
        );
        for bad in ["a\nb", "a\rb", "\n"] {
            assert_eq!(event_name(&EventKind::Other(bad.into())), "unknown");
        }
        // What axum would refuse (it panics on a line break) is never handed to it.
        let _ = SseEvent::default().event(event_name(&EventKind::Other("x\ny".into())));
    }
}
