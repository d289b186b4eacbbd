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
use crate::policy::rules::{Actor, Effect, Policy};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The ordered tool list, the policy that decides what may run, and the memory of approvals
/// already spent.
pub struct Registry {
    tools: Vec<Box<dyn DynTool>>,
    spent: Mutex<HashSet<String>>,
    policy: Option<Arc<Policy>>,
    env: String,
    /// The PostgreSQL pools the database tools share, for `/metrics`.
    pg_pools: Vec<crate::pg::PoolGauge>,
}

impl Registry {
    /// Every built-in tool, the shipped actions and the shipped policy, in the order the model
    /// sees them (the traces tools unavailable). For tests and library use; the binary uses
    /// [`Registry::load`], which reads the configured actions and policy and reports their errors.
    pub fn builtin(config: Arc<Config>) -> Registry {
        Registry::with_span_store(config, None)
    }

    /// Like [`Registry::load`]; if the configured actions or policy cannot be loaded, it logs
    /// why and uses the shipped ones (the binary checks them at startup first).
    pub fn with_span_store(config: Arc<Config>, store: Option<Arc<SpanStore>>) -> Registry {
        Registry::load(config.clone(), store.clone()).unwrap_or_else(|e| {
            tracing::error!("{e}; using the shipped actions and policy");
            let mut shipped = (*config).clone();
            shipped.actions.dir = None;
            shipped.policy.file = None;
            Registry::load(Arc::new(shipped), store).unwrap_or_else(|e| {
                tracing::error!("{e}; no actions and no policy: only read tools run");
                Registry::from_tools(vec![])
            })
        })
    }

    /// Every built-in tool plus the declarative actions (`[actions] dir`, else the shipped ones),
    /// under the policy (`[policy] file`, else the shipped one) in `[policy] environment`. A
    /// broken action file or policy is an error naming the file and the line or field.
    pub fn load(config: Arc<Config>, store: Option<Arc<SpanStore>>) -> Result<Registry, String> {
        let actions = crate::actions::declarative::load(config.actions.dir.as_deref())
            .map_err(|e| e.to_string())?;
        let mut r = Registry::tools(config.clone(), store);
        let secrets = crate::actions::declarative::configured_secret_variables(&config);
        for a in actions {
            a.check_secrets(&secrets).map_err(|e| e.to_string())?;
            let name = a.spec().name;
            if r.find(name).is_some() {
                return Err(format!(
                    "{}: {name} is a built-in tool; choose another name",
                    a.file
                ));
            }
            r.tools.push(Box::new(a));
        }
        let (text, file) = match &config.policy.file {
            Some(p) => (
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read the policy {}: {e}", p.display()))?,
                p.display().to_string(),
            ),
            None => (
                crate::policy::rules::DEFAULT.to_string(),
                "tools/policy.toml (built in)".to_string(),
            ),
        };
        let policy = Policy::load(&text, &file, &r.specs()).map_err(|e| e.to_string())?;
        r.policy = Some(Arc::new(policy));
        r.env = config.policy.environment.clone();
        Ok(r)
    }

    /// The built-in tools alone, with no policy.
    fn tools(config: Arc<Config>, store: Option<Arc<SpanStore>>) -> Registry {
        let dbs = Databases::from_config(&config);
        let pg_pools = dbs.pools();
        let traces = Traces {
            store,
            default_window_s: config.traces.window_s,
            backend: crate::collectors::traces::backend::Backend::from_settings(&config.traces)
                .map(Arc::new),
        };
        let prom = crate::collectors::prometheus::Prometheus::from_settings(&config.prometheus);
        let mut r = Registry::from_tools(vec![
            Box::new(crate::memory::tool::SimilarTool { memory: None }),
            Box::new(
                crate::collectors::prometheus::instances::UseByInstanceTool {
                    prometheus: prom.clone(),
                    thresholds: config.thresholds.clone(),
                },
            ),
            Box::new(crate::collectors::prometheus::services::RedByServiceTool {
                prometheus: prom,
                thresholds: config.thresholds.clone(),
            }),
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
        ]);
        r.pg_pools = pg_pools;
        r
    }

    /// This registry with `tool` in place of the tool of the same name (or added at the end).
    pub fn with_tool(mut self, tool: Box<dyn DynTool>) -> Registry {
        let name = tool.spec().name;
        match self.tools.iter().position(|t| t.spec().name == name) {
            Some(i) => self.tools[i] = tool,
            None => self.tools.push(tool),
        }
        self
    }

    /// This registry with incident memory behind `memory.similar`.
    pub fn with_memory(self, memory: Arc<crate::memory::Memory>) -> Registry {
        self.with_tool(Box::new(crate::memory::tool::SimilarTool {
            memory: Some(memory),
        }))
    }

    /// A registry over a given list, with no policy file: reads run, everything else needs an
    /// approval (tests use this for fakes).
    pub fn from_tools(tools: Vec<Box<dyn DynTool>>) -> Registry {
        Registry {
            tools,
            spent: Mutex::new(HashSet::new()),
            policy: None,
            env: "production".into(),
            pg_pools: vec![],
        }
    }

    /// The PostgreSQL pools the database tools share (one per configured database).
    pub fn pg_pools(&self) -> Vec<crate::pg::PoolGauge> {
        self.pg_pools.clone()
    }

    /// The same tools under another policy (replay registries keep the live one's policy).
    pub fn with_policy_of(mut self, other: &Registry) -> Registry {
        self.policy = other.policy.clone();
        self.env = other.env.clone();
        self
    }

    /// The policy in force, if any, and the environment it is applied in.
    pub fn policy(&self) -> (Option<&Policy>, &str) {
        (self.policy.as_deref(), &self.env)
    }

    /// Starts a read tool measuring ahead of its call with default arguments (see
    /// [`super::Tool::prefetch`]); nothing for an unknown tool.
    pub fn prefetch(&self, name: &str) {
        if let Some(t) = self.find(name) {
            t.prefetch_now();
        }
    }

    /// The arguments a request for `name` binds: `args` with whatever pins the target down
    /// added (a process's start time and executable), or why they cannot be bound (see
    /// [`super::Tool::bind`]). The desk files requests with these, so approvals cover them.
    pub fn bind(&self, name: &str, args: Value) -> Result<Value, ToolError> {
        let tool = self.find(name).ok_or_else(|| self.unknown(name))?;
        tool.bind(args)
    }

    /// What an action would do with these arguments, checked but not run. The arguments are
    /// bound first, so the plan shows the target exactly as a request would bind it.
    pub fn dry_run(&self, name: &str, args: &Value) -> Result<Value, ToolError> {
        let tool = self.find(name).ok_or_else(|| self.unknown(name))?;
        let args = tool.bind(args.clone())?;
        tool.dry_run(&args)
    }

    /// How to measure what an action with these arguments changed, if it says.
    pub fn effect_of(&self, name: &str, args: &Value) -> Option<super::EffectCheck> {
        self.find(name)?.effect(args)
    }

    fn unknown(&self, name: &str) -> ToolError {
        ToolError::UnknownTool {
            name: name.to_string(),
            available: self
                .tools
                .iter()
                .map(|t| t.spec().name)
                .collect::<Vec<_>>()
                .join(", "),
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
        let tool = self.find(name).ok_or_else(|| self.unknown(name))?;
        let spec = tool.spec();
        // The policy, not the prompt, decides; without a policy file, risk decides.
        let effect = match &self.policy {
            Some(p) => {
                let d = p.decide(&spec, &self.env);
                if d.effect == Effect::Forbid {
                    return Err(ToolError::Forbidden {
                        tool: spec.name.to_string(),
                        why: match d.rule {
                            Some(r) => format!("{} line {} in {}", p.file, r.line, self.env),
                            None => format!(
                                "no rule in {} allows it in {}: denied by default",
                                p.file, self.env
                            ),
                        },
                    });
                }
                // Without an approval, the caller is the agent asking for it.
                if approval.is_none()
                    && d.effect == Effect::Approve
                    && let Err(r) = p.may_request(&spec, &self.env, "the agent", Actor::Agent)
                {
                    return Err(ToolError::Forbidden {
                        tool: spec.name.to_string(),
                        why: r.to_string(),
                    });
                }
                d.effect
            }
            None if spec.risk.needs_approval() => Effect::Approve,
            None => Effect::Allow,
        };
        if effect == Effect::Approve {
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
