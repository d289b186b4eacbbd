//! What incident memory keeps of a resolved incident: the report, the confirmed cause, a summary
//! of the evidence and what fixed it. Built from the incident's own log (server) or from an
//! investigation (eval), always from already-redacted text.

use crate::incidents::{Event, EventKind, Incident};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One remembered incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    pub incident: String,
    pub title: String,
    pub report: String,
    /// The confirmed root-cause category (`host.cpu_saturation`, ...); none when nothing was
    /// confirmed.
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    /// The confirmed hypothesis, or the investigation's conclusion when none was confirmed.
    pub cause: String,
    /// The notes of the evidence that confirmed the cause.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// What was done: executed actions with their measured effect, else what was proposed.
    #[serde(default)]
    pub remediation: Vec<String>,
    pub resolved_at: DateTime<Utc>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

impl Doc {
    /// The text that is embedded.
    pub fn text(&self) -> String {
        let mut t = format!("{}\n{}\n{}", self.title, self.report, self.cause);
        if let Some(c) = &self.category {
            t.push('\n');
            t.push_str(c);
        }
        if let Some(c) = &self.component {
            t.push('\n');
            t.push_str(c);
        }
        for e in self.evidence.iter().chain(&self.remediation) {
            t.push('\n');
            t.push_str(e);
        }
        t
    }

    /// From the last finished round (`investigation_finished`'s data, or a serialized
    /// [`crate::agent::Investigation`]) and the actions that ran.
    pub fn from_finished(
        incident: &str,
        title: &str,
        report: &str,
        finished: &Value,
        executed: Vec<String>,
        resolved_at: DateTime<Utc>,
    ) -> Doc {
        let confirmed = finished["hypotheses"].as_array().and_then(|hs| {
            hs.iter()
                .filter(|h| s(h, "status") == "confirmed")
                .max_by(|a, b| {
                    let (x, y) = (
                        a["confidence"].as_f64().unwrap_or_default(),
                        b["confidence"].as_f64().unwrap_or_default(),
                    );
                    x.total_cmp(&y)
                })
        });
        let (category, component, cause, evidence) = match confirmed {
            Some(h) => (
                Some(s(h, "category").to_string()).filter(|c| !c.is_empty()),
                Some(s(h, "component").to_string()).filter(|c| !c.is_empty()),
                s(h, "statement").to_string(),
                h["evidence"]
                    .as_array()
                    .map(|ev| {
                        ev.iter()
                            .filter(|e| e["supports"] != Value::Bool(false))
                            .map(|e| s(e, "note").to_string())
                            .filter(|n| !n.is_empty())
                            .take(6)
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            None => (None, None, s(finished, "conclusion").to_string(), vec![]),
        };
        let remediation = if executed.is_empty() {
            finished["stabilize"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            format!("proposed {} {}: {}", s(p, "tool"), p["args"], s(p, "why"))
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            executed
        };
        Doc {
            incident: incident.to_string(),
            title: title.to_string(),
            report: report.to_string(),
            category,
            component,
            cause,
            evidence,
            remediation,
            resolved_at,
        }
    }

    /// From an incident's event log: its report, last finished round and executed actions with
    /// their measured effect. None when no round finished (nothing worth remembering).
    pub fn from_events(inc: &Incident, events: &[Event]) -> Option<Doc> {
        let finished = events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::InvestigationFinished)?;
        let report = events
            .iter()
            .find(|e| e.kind == EventKind::Report)
            .map(|e| s(&e.data, "text").to_string())
            .unwrap_or_default();
        let executed = events
            .iter()
            .filter(|e| e.kind == EventKind::ActionExecuted && e.data["ok"] == Value::Bool(true))
            .map(|e| {
                let id = s(&e.data, "request");
                let effect = events
                    .iter()
                    .find(|v| v.kind == EventKind::ActionVerified && s(&v.data, "request") == id)
                    .map(|v| format!("; effect: {}", s(&v.data, "effect")))
                    .unwrap_or_default();
                let args = events
                    .iter()
                    .find(|q| q.kind == EventKind::ActionRequested && s(&q.data, "request") == id)
                    .map(|q| q.data["args"].to_string())
                    .unwrap_or_default();
                format!("ran {} {args}{effect}", s(&e.data, "tool"))
            })
            .collect();
        let at = events.last().map(|e| e.at).unwrap_or(inc.updated_at);
        Some(Doc::from_finished(
            &inc.id,
            &inc.title,
            &report,
            &finished.data,
            executed,
            at,
        ))
    }
}
