//! Incidents as MCP resources, for any caller with a token (viewer or stronger):
//!
//! - `oncall://incidents/{id}`: the incident and its hypothesis board (JSON);
//! - `oncall://incidents/{id}/events`: its event log, oldest first (JSON);
//! - `oncall://incidents/{id}/postmortem`: its post-mortem draft (Markdown).
//!
//! The newest incidents are listed; the templates reach any of them.

use super::super::api::incident_or_404;
use super::super::api::postmortem::postmortem_markdown;
use super::super::{ApiError, AppState};
use super::OncallMcp;
use rmcp::ErrorData;
use rmcp::model::{
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};

const PREFIX: &str = "oncall://incidents/";
/// How many of the newest incidents `resources/list` names.
const LISTED: i64 = 50;

/// What a URI names.
#[derive(Debug, PartialEq)]
enum Part {
    Board,
    Events,
    Postmortem,
}

/// The incident and part a URI names, if it is one of ours.
fn parse(uri: &str) -> Option<(&str, Part)> {
    let rest = uri.strip_prefix(PREFIX)?;
    let (id, part) = match rest.split_once('/') {
        None => (rest, Part::Board),
        Some((id, "events")) => (id, Part::Events),
        Some((id, "postmortem")) => (id, Part::Postmortem),
        Some(_) => return None,
    };
    crate::incidents::is_incident_id(id).then_some((id, part))
}

fn unavailable(e: ApiError) -> ErrorData {
    match e {
        ApiError::NotFound(m) => ErrorData::resource_not_found(crate::redact::redact(&m), None),
        other => ErrorData::internal_error(crate::redact::redact(&other.message()), None),
    }
}

pub(super) async fn list(st: &AppState) -> Result<ListResourcesResult, ErrorData> {
    let incidents = st
        .store
        .list(LISTED)
        .await
        .map_err(|e| unavailable(e.into()))?;
    let mut out = vec![];
    for i in incidents {
        let what = format!(
            "{} ({:?}{})",
            i.title,
            i.status,
            if i.severity.is_empty() {
                String::new()
            } else {
                format!(", {}", i.severity)
            }
        );
        out.push(
            Resource::new(format!("{PREFIX}{}", i.id), format!("incident {}", i.id))
                .with_description(format!("{what}: the incident and its hypothesis board"))
                .with_mime_type("application/json"),
        );
        out.push(
            Resource::new(
                format!("{PREFIX}{}/events", i.id),
                format!("incident {} events", i.id),
            )
            .with_description(format!("{what}: its event log, oldest first"))
            .with_mime_type("application/json"),
        );
        out.push(
            Resource::new(
                format!("{PREFIX}{}/postmortem", i.id),
                format!("incident {} post-mortem", i.id),
            )
            .with_description(format!("{what}: its blameless post-mortem draft"))
            .with_mime_type("text/markdown"),
        );
    }
    Ok(ListResourcesResult::with_all_items(out))
}

pub(super) fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{PREFIX}{{id}}"), "incident")
            .with_description("An incident and its hypothesis board")
            .with_mime_type("application/json"),
        ResourceTemplate::new(format!("{PREFIX}{{id}}/events"), "incident events")
            .with_description("An incident's event log, oldest first")
            .with_mime_type("application/json"),
        ResourceTemplate::new(format!("{PREFIX}{{id}}/postmortem"), "incident post-mortem")
            .with_description("An incident's blameless post-mortem draft")
            .with_mime_type("text/markdown"),
    ]
}

pub(super) async fn read(mcp: &OncallMcp, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let st = &mcp.st;
    let Some((id, part)) = parse(uri) else {
        let shown: String = uri.chars().take(200).collect();
        return Err(ErrorData::resource_not_found(
            crate::redact::redact(&format!(
                "no resource {shown:?}: oncall's are {PREFIX}<id>, {PREFIX}<id>/events and {PREFIX}<id>/postmortem"
            )),
            None,
        ));
    };
    let (text, mime) = match part {
        Part::Board => (
            super::tools::board(st, id)
                .await
                .map_err(unavailable)?
                .to_string(),
            "application/json",
        ),
        Part::Events => {
            incident_or_404(st, id).await.map_err(unavailable)?;
            let events = st
                .store
                .events(id, 0, 100_000)
                .await
                .map_err(|e| unavailable(e.into()))?;
            (
                serde_json::to_string(&events).unwrap_or_default(),
                "application/json",
            )
        }
        Part::Postmortem => (
            postmortem_markdown(st, id).await.map_err(unavailable)?,
            "text/markdown",
        ),
    };
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(mcp.budgeted(&text), uri).with_mime_type(mime),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_an_incident_and_a_part() {
        assert_eq!(
            parse("oncall://incidents/2026-11-27-01"),
            Some(("2026-11-27-01", Part::Board))
        );
        assert_eq!(
            parse("oncall://incidents/2026-11-27-01/events"),
            Some(("2026-11-27-01", Part::Events))
        );
        assert_eq!(
            parse("oncall://incidents/2026-11-27-01/postmortem"),
            Some(("2026-11-27-01", Part::Postmortem))
        );
        for bad in [
            "oncall://incidents/../etc/passwd",
            "oncall://incidents/2026-11-27-01/other",
            "file:///etc/passwd",
            "oncall://incidents/",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
