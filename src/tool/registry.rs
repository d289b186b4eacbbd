//! The one explicit, ordered list of tools, and the only door to call them.
//!
//! Order matters: it is the order `oncall tools` lists and the model is offered. A call names a
//! tool and passes JSON arguments; read tools run at once; `write` and `live_action` tools run only
//! with an [`Approval`] that binds this tool and these exact arguments, is unexpired, and has not
//! been used before. The check lives here, below every caller, so no path (CLI, reasoner, model,
//! server) can reach a live action around it.

use super::{DynTool, ToolError, ToolSpec};
use crate::actions::{CancelBackend, SignalProcess, TerminateBackend};
use crate::collectors::host::HostUseSnapshot;
use crate::collectors::postgres::{self as pg, Databases};
use crate::collectors::traces::store::SpanStore;
use crate::collectors::traces::{self as tr, Traces};
use crate::config::Config;
use crate::policy::Approval;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The ordered tool list plus the memory of approvals already spent.
pub struct Registry {
    tools: Vec<Box<dyn DynTool>>,
    spent: Mutex<HashSet<String>>,
}

impl Registry {
    /// Every built-in tool, in the order the model sees them (the traces tools unavailable).
    pub fn builtin(config: Arc<Config>) -> Registry {
        Registry::with_span_store(config, None)
    }

    /// Every built-in tool, with the traces tools reading `store` when there is one.
    pub fn with_span_store(config: Arc<Config>, store: Option<Arc<SpanStore>>) -> Registry {
        let dbs = Databases::from_config(&config);
        let traces = Traces {
            store,
            default_window_s: config.traces.window_s,
        };
        Registry::from_tools(vec![
            Box::new(HostUseSnapshot::new(config.clone())),
            Box::new(pg::statements::TopQueriesTool { dbs: dbs.clone() }),
            Box::new(pg::activity::ActivityTool { dbs: dbs.clone() }),
            Box::new(pg::blocking::BlockingTool { dbs: dbs.clone() }),
            Box::new(pg::connections::ConnectionsTool { dbs: dbs.clone() }),
            Box::new(pg::tables::TableStatsTool { dbs: dbs.clone() }),
            Box::new(pg::explain::ExplainTool { dbs: dbs.clone() }),
            Box::new(pg::explain::ExplainAnalyzeTool { dbs: dbs.clone() }),
            Box::new(tr::RedTool {
                traces: traces.clone(),
            }),
            Box::new(tr::SlowestTool {
                traces: traces.clone(),
            }),
            Box::new(tr::CriticalPathTool {
                traces: traces.clone(),
            }),
            Box::new(tr::ErrorsTool { traces }),
            Box::new(crate::collectors::changes::RecentChangesTool {
                file: config.changes.file.clone(),
            }),
            Box::new(SignalProcess),
            Box::new(CancelBackend { dbs: dbs.clone() }),
            Box::new(TerminateBackend { dbs }),
        ])
    }

    /// A registry over a given list (tests use this for fakes).
    pub fn from_tools(tools: Vec<Box<dyn DynTool>>) -> Registry {
        Registry {
            tools,
            spent: Mutex::new(HashSet::new()),
        }
    }

    /// Specs of every tool, in registry order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    /// The spec of one tool.
    pub fn spec(&self, name: &str) -> Option<ToolSpec> {
        self.find(name).map(|t| t.spec())
    }

    fn find(&self, name: &str) -> Option<&dyn DynTool> {
        self.tools
            .iter()
            .find(|t| t.spec().name == name)
            .map(|t| t.as_ref())
    }

    /// Calls a tool by name. Tools that need approval are refused unless `approval` covers this
    /// exact call; an approval is spent by its first successful check.
    pub async fn call(
        &self,
        name: &str,
        args: Value,
        approval: Option<&Approval>,
    ) -> Result<Value, ToolError> {
        let tool = self.find(name).ok_or_else(|| ToolError::UnknownTool {
            name: name.to_string(),
            available: self
                .tools
                .iter()
                .map(|t| t.spec().name)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let spec = tool.spec();
        if spec.risk.needs_approval() {
            let approval = approval.ok_or_else(|| ToolError::ApprovalRequired {
                tool: spec.name.to_string(),
                risk: spec.risk,
            })?;
            approval
                .covers(spec.name, &args, chrono::Utc::now())
                .map_err(|why| ToolError::ApprovalMismatch {
                    tool: spec.name.to_string(),
                    why,
                })?;
            let mut spent = self.spent.lock().map_err(|_| ToolError::Failed {
                tool: spec.name.to_string(),
                message: "approval ledger unavailable".into(),
            })?;
            if !spent.insert(approval.id().to_string()) {
                return Err(ToolError::ApprovalMismatch {
                    tool: spec.name.to_string(),
                    why: format!(
                        "approval {} was already used (approvals run at most once)",
                        approval.id()
                    ),
                });
            }
        }
        tool.call_json(args).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_area_verb_and_are_unique() {
        let reg = Registry::builtin(Arc::new(Config::default()));
        let specs = reg.specs();
        let mut seen = HashSet::new();
        for s in &specs {
            let (area, verb) = s.name.split_once('.').expect("area.verb");
            assert!(
                !area.is_empty() && !verb.is_empty() && !verb.contains('.'),
                "{}",
                s.name
            );
            assert!(seen.insert(s.name), "duplicate tool {}", s.name);
            assert!(!s.description.is_empty());
            assert_eq!(s.parameters["type"], "object", "{}", s.name);
        }
    }

    #[tokio::test]
    async fn unknown_tool_lists_the_known_ones() {
        let reg = Registry::builtin(Arc::new(Config::default()));
        let err = reg.call("host.nope", Value::Null, None).await.unwrap_err();
        assert!(err.to_string().contains("host.use_snapshot"), "{err}");
    }

    #[tokio::test]
    async fn bad_arguments_come_back_as_a_clear_error() {
        let reg = Registry::builtin(Arc::new(Config::default()));
        let err = reg
            .call(
                "host.use_snapshot",
                serde_json::json!({"window_ms": "soon"}),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ToolError::BadArguments { .. }), "{err}");
        assert!(
            err.to_string().contains("window_ms") || err.to_string().contains("soon"),
            "{err}"
        );
        let err = reg
            .call("host.use_snapshot", serde_json::json!({"windw": 1}), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("windw"), "{err}");
    }
}
