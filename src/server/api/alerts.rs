//! Alertmanager's webhook: the firing alerts of one notification open one incident.

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, AppState, body, limits, start_round_holding};
use super::{JsonBody, open_incident};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Alertmanager's webhook body (version 4); fields other than `alerts` are ignored.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents what the handler reads from the JSON it takes
#[schema(example = json!({"version": "4", "status": "firing", "receiver": "oncall", "alerts": [{"status": "firing", "labels": {"alertname": "HighLatency", "severity": "page", "service": "checkout"}, "annotations": {"summary": "checkout p99 above 2s"}, "startsAt": "2026-11-27T04:40:00Z"}]}))]
pub(crate) struct AlertmanagerWebhook {
    version: Option<String>,
    status: Option<String>,
    receiver: Option<String>,
    #[schema(rename = "groupLabels")]
    group_labels: Option<BTreeMap<String, String>>,
    #[schema(rename = "commonLabels")]
    common_labels: Option<BTreeMap<String, String>>,
    #[schema(rename = "commonAnnotations")]
    common_annotations: Option<BTreeMap<String, String>>,
    #[schema(rename = "externalURL")]
    external_url: Option<String>,
    /// The alerts of the notification; the firing ones open the incident (the first 50 are in
    /// its report, with a count of the others).
    alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents what the handler reads from the JSON it takes
pub(crate) struct Alert {
    /// `firing` (the default) or `resolved`; only firing alerts open an incident.
    #[schema(pattern = "^(firing|resolved)$", default = "firing")]
    status: Option<String>,
    /// `alertname` and `severity` are used, and the first of service, job, instance, pod,
    /// deployment, datname as the target.
    labels: Option<BTreeMap<String, String>>,
    /// `summary` and `description` become the report.
    annotations: Option<BTreeMap<String, String>>,
    /// With the fingerprint (or the labels), what tells a repeat notification from a new
    /// firing: the same firing alerts with the same start open one incident.
    #[schema(rename = "startsAt")]
    starts_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(rename = "endsAt")]
    ends_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: Option<String>,
}

/// What a notification opened.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AlertsAccepted {
    /// The incident opened (none when no alert was firing, or for a repeat notification).
    incidents: Vec<String>,
    /// Why nothing was opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

impl AlertsAccepted {
    fn nothing(note: &'static str) -> Response {
        let a = AlertsAccepted {
            incidents: vec![],
            note: Some(note),
        };
        (StatusCode::OK, Json(a)).into_response()
    }
}

/// Alertmanager webhook
///
/// The firing alerts of one Alertmanager notification open one incident (source `alert`, title
/// `alert: <alertname>` of the first firing alert) and start its investigation. A notification
/// with no firing alert (all resolved) opens nothing and answers 200, and so does a repeat of a
/// notification already received (the same firing alerts with the same start, on any replica,
/// within 6 hours). Point an Alertmanager `webhook_config` here with
/// `http_config.authorization.credentials` set to a responder token.
///
/// The alerts' caller (the webhook's token) counts against `[server] max_investigations_per_user`
/// like anyone: at the cap, 429 and nothing is opened.
#[utoipa::path(
    post,
    path = "/api/v1/alerts",
    operation_id = "alertmanagerWebhook",
    tag = "incidents",
    request_body = AlertmanagerWebhook,
    responses(
        (status = 200, description = "No firing alert, or a repeat notification: nothing opened.", body = AlertsAccepted,
            example = json!({"incidents": [], "note": "no firing alert in this notification; nothing was opened"})),
        (status = 202, description = "One incident opened.", body = AlertsAccepted, example = json!({"incidents": ["2026-11-27-02"]})),
        (status = 400, description = "The body is not JSON (or not application/json), has no `alerts` array, or a field is over its maximum (the answer names `field` and `limit`).", body = ErrorBody),
    )
)]
pub(crate) async fn alerts(
    State(st): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    b: JsonBody<Value>,
) -> Result<Response, ApiError> {
    let v = body(
        b,
        "an Alertmanager webhook body ({\"alerts\": [{\"status\", \"labels\", \"annotations\"}]})",
    )?;
    let Some(alerts) = v["alerts"].as_array() else {
        return Err(ApiError::BadRequest(
            "no `alerts` array: send Alertmanager's webhook body".into(),
        ));
    };
    st.check(limits::alerts(alerts))?;
    let firing: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["status"].as_str().unwrap_or("firing") == "firing")
        .collect();
    if firing.is_empty() {
        return Ok(AlertsAccepted::nothing(
            "no firing alert in this notification; nothing was opened",
        ));
    }
    let s = |a: &Value, k: &str, f: &str| a[k][f].as_str().unwrap_or_default().to_string();
    let mut report = String::new();
    // A big outage fires many alerts at once: the incident opens with the first 50, and says how
    // many more there were, rather than refusing the notification.
    const SHOWN: usize = 50;
    for a in firing.iter().take(SHOWN) {
        let name = s(a, "labels", "alertname");
        let sev = s(a, "labels", "severity");
        let target = ["service", "job", "instance", "pod", "deployment", "datname"]
            .iter()
            .map(|k| s(a, "labels", k))
            .find(|x| !x.is_empty())
            .unwrap_or_default();
        let text = [
            s(a, "annotations", "summary"),
            s(a, "annotations", "description"),
        ]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(" — ");
        report.push_str(&format!(
            "ALERT {name}{}{}: {text} (since {})\n",
            if sev.is_empty() {
                String::new()
            } else {
                format!(" [{sev}]")
            },
            if target.is_empty() {
                String::new()
            } else {
                format!(" on {target}")
            },
            a["startsAt"].as_str().unwrap_or("now"),
        ));
    }
    if firing.len() > SHOWN {
        report.push_str(&format!(
            "… and {} more firing alerts\n",
            firing.len() - SHOWN
        ));
    }
    let report: String = report.chars().take(limits::REPORT_CHARS).collect();
    let title = firing.first().map(|a| {
        format!("alert: {}", s(a, "labels", "alertname"))
            .chars()
            .take(limits::TITLE_CHARS)
            .collect::<String>()
    });
    // Alertmanager sends a notification again (its repeat interval, its retries, several
    // Alertmanagers in a cluster, any replica behind the load balancer): the same firing alerts
    // with the same start open one incident, on whichever replica saw them first.
    // (Checked once a slot is held: a notification refused with 429 is not remembered.)
    let slot = st
        .investigation_slot(&c.name, "a new incident")
        .map_err(ApiError::OverCap)?;
    let key = alert_key(&firing);
    if let Some(key) = &key
        && !st.store.seen_first(key, ALERT_DEDUP_S).await?
    {
        return Ok(AlertsAccepted::nothing(
            "these firing alerts were already received: a repeat notification opens no new incident",
        ));
    }
    let id = match open_incident(&st, &report, title.as_deref(), "alert", &c.name).await {
        Ok(id) => id,
        Err(e) => {
            // Not opened: Alertmanager's retry must open it.
            if let Some(key) = &key {
                let _ = st.store.seen_forget(key).await;
            }
            return Err(e);
        }
    };
    slot.relabel(&format!("incident {id}"));
    start_round_holding(&st, &id, slot);
    let opened = AlertsAccepted {
        incidents: vec![id],
        note: None,
    };
    Ok((StatusCode::ACCEPTED, Json(opened)).into_response())
}

/// How long a notification's firing alerts are remembered, to open one incident for repeats.
const ALERT_DEDUP_S: i64 = 6 * 3600;

/// The key of a notification's firing alerts: each one's fingerprint (or labels) and start, in
/// a stable order. None when an alert has no start time (then nothing tells a repeat from a
/// new firing, and nothing is deduplicated).
fn alert_key(firing: &[&Value]) -> Option<String> {
    let mut parts = vec![];
    for a in firing {
        let starts = a["startsAt"].as_str().filter(|s| !s.is_empty())?;
        let who = match a["fingerprint"].as_str() {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => a["labels"].to_string(),
        };
        parts.push(format!("{who}@{starts}"));
    }
    parts.sort();
    parts.dedup();
    Some(format!(
        "alert:{}",
        crate::policy::canonical_hash(&Value::from(parts))
    ))
}
