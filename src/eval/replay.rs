//! Replay: a tool registry that answers from a case's recordings.
//!
//! Every tool of the live registry is replaced by a replaying twin with the same name, schema
//! and risk class, so any investigation path works, not only the one that was recorded. A call
//! is matched by tool name, then by the recorded arguments it shares (a recording whose shared
//! arguments differ does not match); among equals, successive calls walk a time series in
//! recorded order. A call with nothing recorded answers "no data was recorded for this call",
//! never an invented value. Risky tools keep their risk class, so the registry still refuses
//! them without an approval.

use super::case::{Case, Recording};
use crate::registry::Registry;
use crate::tool::{DynTool, RiskClass, Tool, ToolError, ToolSpec};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Mutex;

/// What a replaying tool answers when nothing was recorded for a call.
pub const NO_DATA: &str = "no data was recorded for this call";

struct ReplayTool {
    spec: ToolSpec,
    recordings: Vec<Recording>,
    served: Mutex<usize>,
}

/// How well recorded args fit the call's args: None when a shared key differs.
fn fit(call: &Value, recorded: &Value) -> Option<usize> {
    let (Some(c), Some(r)) = (call.as_object(), recorded.as_object()) else {
        return Some(0);
    };
    let mut shared = 0;
    for (k, v) in c {
        if let Some(rv) = r.get(k) {
            if rv != v {
                return None;
            }
            shared += 1;
        }
    }
    Some(shared)
}

#[async_trait]
impl DynTool for ReplayTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call_json(&self, args: Value) -> Result<Value, ToolError> {
        let scored: Vec<(usize, &Recording)> = self
            .recordings
            .iter()
            .filter_map(|r| fit(&args, &r.args).map(|f| (f, r)))
            .collect();
        let best = scored.iter().map(|(f, _)| *f).max();
        let mut series: Vec<&Recording> = scored
            .iter()
            .filter(|(f, _)| Some(*f) == best)
            .map(|(_, r)| *r)
            .collect();
        series.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        if series.is_empty() {
            return Err(ToolError::Failed {
                tool: self.spec.name.to_string(),
                message: NO_DATA.into(),
            });
        }
        let mut served = self.served.lock().map_err(|_| ToolError::Failed {
            tool: self.spec.name.to_string(),
            message: "replay state unavailable".into(),
        })?;
        let pick = series[(*served).min(series.len() - 1)];
        *served += 1;
        Ok(pick.output.clone())
    }
}

/// `changes.recent` answered from the case's `context.recent_changes`, as of `observed_at`.
struct ChangesReplay {
    spec: ToolSpec,
    changes: Vec<crate::collectors::changes::Change>,
    now: chrono::DateTime<chrono::Utc>,
}

#[async_trait]
impl DynTool for ChangesReplay {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call_json(&self, args: Value) -> Result<Value, ToolError> {
        let tool = self.spec.name;
        let args = serde_json::from_value(args).map_err(|e| ToolError::BadArguments {
            tool: tool.into(),
            message: e.to_string(),
        })?;
        let a = crate::collectors::changes::answer(&self.changes, self.now, args, vec![])?;
        serde_json::to_value(a).map_err(|e| ToolError::Failed {
            tool: tool.into(),
            message: e.to_string(),
        })
    }
}

/// A registry that replays `case`, with the tool list (names, schemas, risks) of `live`.
pub fn registry(case: &Case, live: &Registry) -> Registry {
    let databases: Vec<Value> = case
        .recordings
        .iter()
        .filter(|r| r.tool.starts_with("postgres."))
        .filter_map(|r| r.args.get("database").cloned())
        .fold(vec![], |mut acc, d| {
            if !acc.contains(&d) {
                acc.push(d);
            }
            acc
        });
    let tools: Vec<Box<dyn DynTool>> = live
        .specs()
        .into_iter()
        .map(|mut spec| {
            let recordings: Vec<Recording> = case
                .recordings
                .iter()
                .filter(|r| r.tool == spec.name)
                .cloned()
                .collect();
            if spec.name == crate::collectors::changes::RecentChangesTool::NAME
                && recordings.is_empty()
                && !case.context.recent_changes.is_empty()
            {
                spec.unavailable = false;
                return Box::new(ChangesReplay {
                    spec,
                    changes: case.context.recent_changes.clone(),
                    now: case.observed_at,
                }) as Box<dyn DynTool>;
            }
            // Offer what was recorded; risky tools stay offered, so a request for one is filed.
            spec.unavailable = spec.risk == RiskClass::Read && recordings.is_empty();
            if let Some(p) = spec.parameters.pointer_mut("/properties/database")
                && !databases.is_empty()
            {
                p["enum"] = Value::Array(databases.clone());
            }
            Box::new(ReplayTool {
                spec,
                recordings,
                served: Mutex::new(0),
            }) as Box<dyn DynTool>
        })
        .collect();
    Registry::from_tools(tools).with_policy_of(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shared_args_decide_the_match() {
        assert_eq!(
            fit(
                &json!({"database": "app", "limit": 5}),
                &json!({"database": "app"})
            ),
            Some(1)
        );
        assert_eq!(
            fit(&json!({"database": "billing"}), &json!({"database": "app"})),
            None
        );
        assert_eq!(fit(&json!({}), &json!({"database": "app"})), Some(0));
    }
}
