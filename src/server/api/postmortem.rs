//! The post-mortem: drafted from the incident's own log, kept in it, read back.

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, AppState};
use super::incident_or_404;
use crate::incidents::EventKind;
use crate::postmortem::blameless::Finding;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// A post-mortem draft, as stored in the incident's `postmortem_drafted` event.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PostmortemDraft {
    /// The `postmortem_drafted` event's seq.
    seq: i64,
    /// The draft.
    markdown: String,
    /// Where the draft reads as blame, to fix before publishing.
    blameless_findings: Vec<Finding>,
    /// Who wrote the prose: `oncall (facts only)`, or the model (its claims checked against the
    /// log).
    written_by: String,
    /// How the draft was made (also at the top of the draft).
    notes: Vec<String>,
    /// The model's claims that were left out, each with why.
    dropped: Vec<String>,
}

/// Draft the post-mortem and keep it in the log
///
/// Builds the blameless post-mortem draft from the incident's event log (with a model
/// configured, the model writes the prose and every claim is checked against the log), runs the
/// blameless-language check over it, and appends a `postmortem_drafted` event with the Markdown
/// and the findings. An incident cannot be closed before this. No body.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/postmortem",
    operation_id = "draftPostmortem",
    tag = "incidents",
    params(("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01")),
    responses(
        (status = 201, description = "The draft, stored as an event.", body = PostmortemDraft),
        (status = 404, description = "No incident with this id.", body = ErrorBody),
        (status = 500, description = "The model could not be built or the template failed; see the server log.", body = ErrorBody),
    )
)]
pub(crate) async fn draft_postmortem(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let inc = incident_or_404(&st, &id).await?;
    let events = st.store.events(&id, 0, 100_000).await?;
    let prompts = crate::agent::prompts::Prompts::load(&st.config.llm.prompts_dir);
    let mut facts = crate::postmortem::facts(&inc, &events);
    // With a model configured it writes the prose; every claim is checked against the log.
    let m = super::super::model(&st)?;
    if !m.is_offline() {
        facts = crate::postmortem::prose::write(m.as_ref(), &prompts, facts).await;
    }
    let md = crate::postmortem::render(&prompts, &facts)
        .map_err(|e| ApiError::Internal(format!("post-mortem template: {e}")))?;
    let findings = crate::postmortem::blameless::check(&md);
    let brief = crate::postmortem::brief(&facts);
    let e = st
        .publish(
            &id,
            EventKind::PostmortemDrafted,
            &c.name,
            json!({"markdown": md, "brief": brief, "blameless_findings": findings, "written_by": facts.written_by, "notes": facts.notes, "dropped": facts.dropped}),
        )
        .await?;
    let draft = PostmortemDraft {
        seq: e.seq,
        markdown: md,
        blameless_findings: findings,
        written_by: facts.written_by,
        notes: facts.notes,
        dropped: facts.dropped,
    };
    Ok((StatusCode::CREATED, Json(draft)).into_response())
}

/// The post-mortem draft
///
/// The last draft kept in the log (it may carry the model's checked prose), else a Markdown
/// draft made now from the incident's own log (timeline, hypotheses, actions and their measured
/// effects).
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/postmortem",
    operation_id = "postmortem",
    tag = "incidents",
    params(("id" = String, Path, description = "The incident id, `YYYY-MM-DD-NN`.", example = "2026-11-27-01")),
    responses(
        (status = 200, description = "The draft.", body = String, content_type = "text/markdown"),
        (status = 404, description = "No incident with this id.", body = ErrorBody),
        (status = 500, description = "The post-mortem template failed; see the server log.", body = ErrorBody),
    )
)]
pub(crate) async fn postmortem(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let md = postmortem_markdown(&st, &id).await?;
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], md).into_response())
}

/// The last post-mortem draft kept in the log (it may carry the model's checked prose), else
/// one made now from the incident's own log. Shared by the API and MCP.
pub(crate) async fn postmortem_markdown(st: &AppState, id: &str) -> Result<String, ApiError> {
    let inc = incident_or_404(st, id).await?;
    let events = st.store.events(id, 0, 100_000).await?;
    match events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::PostmortemDrafted)
    {
        Some(e) => Ok(e.data["markdown"].as_str().unwrap_or_default().to_string()),
        None => crate::postmortem::render(
            &crate::agent::prompts::Prompts::load(&st.config.llm.prompts_dir),
            &crate::postmortem::facts(&inc, &events),
        )
        .map_err(|e| ApiError::Internal(format!("post-mortem template: {e}"))),
    }
}
