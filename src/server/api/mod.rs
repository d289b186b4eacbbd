//! The API's handlers, by area. Each is annotated with `#[utoipa::path]`: its doc comment is the
//! operation's summary (first line) and description, its request and response types are the
//! document's schemas. Who may call it is not said here but by the group the router registers it
//! in (`super::router`), which also stamps it into the document.
//!
//! - `meta`: liveness, readiness, metrics, who am I, tools, the web page;
//! - `incidents`: open (a report), list, show, talk to, resume, set the status of an incident;
//! - `alerts`: Alertmanager's webhook;
//! - `approvals`: action requests and their decisions;
//! - `postmortem`: the post-mortem draft;
//! - `investigations`: a synchronous investigation, an eval case recorded live.

pub(crate) mod alerts;
pub(crate) mod approvals;
pub(crate) mod incidents;
pub(crate) mod investigations;
pub(crate) mod meta;
pub(crate) mod postmortem;

pub(crate) use incidents::{open_incident, post_message};

use super::{ApiError, AppState};
use axum::Json;

/// A handler's JSON body, or why it could not be read (see [`super::body`]).
pub(crate) type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// The incident `id`, or a 404 that names it.
pub(crate) async fn incident_or_404(
    st: &AppState,
    id: &str,
) -> Result<crate::incidents::Incident, ApiError> {
    st.store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))
}
