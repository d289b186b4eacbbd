//! What the tools answered, read back from the conversation: the report, the host snapshot, each
//! database's views, the traces and the fleet.

use super::{FLEET_RED, FLEET_USE, fleet, postgres, traces};
use crate::agent::evidence::SeenCall;
use crate::collectors::outputs::UseSnapshot;
use crate::llm::{ChatRequest, Role};
use serde_json::Value;

/// What the fleet tools answered.
pub(super) fn fleet_evidence(seen: &[SeenCall]) -> fleet::FleetEvidence {
    let mut e = fleet::FleetEvidence::default();
    for c in seen {
        let Some(f) = c.result.as_ref().filter(|f| f.status == "ok") else {
            continue;
        };
        let v = serde_json::from_str::<Value>(&f.body)
            .ok()
            .map(|v| (f.call.clone(), v));
        match c.name.as_str() {
            FLEET_USE => e.instances = v,
            FLEET_RED => e.services = v,
            _ => {}
        }
    }
    e
}

pub(super) fn report_of(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .filter(|m| m.role == Role::User)
        .find_map(|m| {
            let c = m.content.as_deref()?;
            let start = c.find("<report>")? + "<report>".len();
            let end = c[start..].find("</report>")? + start;
            Some(c[start..end].trim().to_string())
        })
        .unwrap_or_default()
}

pub(super) fn calls_named<'a>(seen: &'a [SeenCall], name: &str) -> Vec<&'a SeenCall> {
    seen.iter().filter(|c| c.name == name).collect()
}

/// The snapshot (and the id of the call that took it), or why there is none.
pub(super) fn snapshot_of(seen: &[SeenCall]) -> Result<(String, UseSnapshot), String> {
    let call = seen
        .iter()
        .rev()
        .find(|c| c.name == "host.use_snapshot")
        .ok_or("host.use_snapshot was not called")?;
    let f = call
        .result
        .as_ref()
        .ok_or("host.use_snapshot has not answered")?;
    if f.status != "ok" {
        return Err(format!("host.use_snapshot failed: {}", f.body));
    }
    let snap = crate::agent::evidence::read_snapshot(&f.body)
        .map_err(|e| format!("the snapshot could not be read: {e}"))?;
    Ok((f.call.clone(), snap))
}

/// Databases offered through the postgres tools' `database` enum.
pub(super) fn offered_databases(req: &ChatRequest) -> Vec<String> {
    req.tools
        .iter()
        .find(|t| t.name == "postgres.top_queries")
        .and_then(|t| t.parameters.pointer("/properties/database/enum"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) const DB_TOOLS: [&str; 4] = [
    "postgres.top_queries",
    "postgres.activity",
    "postgres.blocking",
    "postgres.connections",
];

/// What the postgres tools said about one database, read from the conversation.
pub(super) fn db_evidence(seen: &[SeenCall], db: &str) -> postgres::DbEvidence {
    let mut e = postgres::DbEvidence {
        database: db.to_string(),
        ..Default::default()
    };
    for c in seen {
        let Some(f) = c.result.as_ref().filter(|f| f.status == "ok") else {
            continue;
        };
        let args: Value = serde_json::from_str(&c.arguments).unwrap_or(Value::Null);
        if args
            .get("database")
            .and_then(Value::as_str)
            .is_some_and(|d| d != db)
        {
            continue;
        }
        match c.name.as_str() {
            "postgres.top_queries" => e.top_queries = postgres::parse(&f.call, &f.body),
            "postgres.activity" => e.activity = postgres::parse(&f.call, &f.body),
            "postgres.blocking" => e.blocking = postgres::parse(&f.call, &f.body),
            "postgres.connections" => e.connections = postgres::parse(&f.call, &f.body),
            "postgres.explain" => e.explain = postgres::parse(&f.call, &f.body),
            "postgres.table_stats" => e.tables = postgres::parse(&f.call, &f.body),
            _ => {}
        }
    }
    e
}

/// What the traces tools said, read from the conversation; None when they were not offered.
pub(super) fn trace_evidence(seen: &[SeenCall], offered: bool) -> Option<traces::TraceEvidence> {
    if !offered {
        return None;
    }
    let mut e = traces::TraceEvidence::default();
    for c in seen {
        let Some(f) = c.result.as_ref().filter(|f| f.status == "ok") else {
            continue;
        };
        match c.name.as_str() {
            "traces.red" => {
                e.red = serde_json::from_str(&f.body)
                    .ok()
                    .map(|v| (f.call.clone(), v))
            }
            "traces.critical_path" => {
                e.path = serde_json::from_str(&f.body)
                    .ok()
                    .map(|v| (f.call.clone(), v))
            }
            "traces.errors" => {
                e.errors = serde_json::from_str(&f.body)
                    .ok()
                    .map(|v| (f.call.clone(), v))
            }
            _ => {}
        }
    }
    Some(e)
}
