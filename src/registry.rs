//! The one explicit, ordered list of tools, and the only door to call them.
//!
//! Order matters: it is the order `oncall tools` lists and the model is offered. A call names a
//! tool and passes JSON arguments; read tools run at once; `write` and `live_action` tools run only
//! with an [`Approval`] that binds this tool and these exact arguments, is unexpired, and has not
//! been used before. The check lives here, below every caller, so no path (CLI, reasoner, model,
//! server) can reach a live action around it.

use crate::policy::Approval;
use crate::policy::rules::{Actor, Effect, Policy};
use crate::tool::{DynTool, ToolError, ToolSpec};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

fn names_of(tools: &[Box<dyn DynTool>]) -> Vec<&'static str> {
    tools.iter().map(|t| t.spec().name).collect()
}

/// The ordered tool list, the policy that decides what may run, and the memory of approvals
/// already spent.
pub struct Registry {
    tools: Vec<Box<dyn DynTool>>,
    /// Each tool's name, in the same order: finding a tool never builds the schemas.
    names: Vec<&'static str>,
    spent: Mutex<HashSet<String>>,
    policy: Option<Arc<Policy>>,
    env: String,
    /// The PostgreSQL pools the database tools share, for `/metrics`.
    pg_pools: Vec<crate::pg::PoolGauge>,
}

impl Registry {
    /// A registry over the given tools, under `policy` in `environment` (the composition root,
    /// [`crate::app`], builds the list; this module never imports a tool).
    pub fn new(
        tools: Vec<Box<dyn DynTool>>,
        policy: Option<Arc<Policy>>,
        environment: &str,
        pg_pools: Vec<crate::pg::PoolGauge>,
    ) -> Registry {
        Registry {
            names: names_of(&tools),
            tools,
            spent: Mutex::new(HashSet::new()),
            policy,
            env: environment.to_string(),
            pg_pools,
        }
    }

    /// This registry with `tool` in place of the tool of the same name (or added at the end).
    pub fn with_tool(mut self, tool: Box<dyn DynTool>) -> Registry {
        let name = tool.spec().name;
        match self.names.iter().position(|n| *n == name) {
            Some(i) => self.tools[i] = tool,
            None => {
                self.tools.push(tool);
                self.names.push(name);
            }
        }
        self
    }

    /// A registry over a given list, with no policy file: reads run, everything else needs an
    /// approval (tests use this for fakes).
    pub fn from_tools(tools: Vec<Box<dyn DynTool>>) -> Registry {
        Registry {
            names: names_of(&tools),
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
    /// [`crate::tool::Tool::prefetch`]); nothing for an unknown tool.
    pub fn prefetch(&self, name: &str) {
        if let Some(t) = self.find(name) {
            t.prefetch_now();
        }
    }

    /// The arguments a request for `name` binds: `args` with whatever pins the target down
    /// added (a process's start time and executable), or why they cannot be bound (see
    /// [`crate::tool::Tool::bind`]). The desk files requests with these, so approvals cover them.
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
    pub fn effect_of(&self, name: &str, args: &Value) -> Option<crate::tool::EffectCheck> {
        self.find(name)?.effect(args)
    }

    fn unknown(&self, name: &str) -> ToolError {
        ToolError::UnknownTool {
            name: name.to_string(),
            available: self.names.join(", "),
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
        let i = self.names.iter().position(|n| *n == name)?;
        self.tools.get(i).map(|t| t.as_ref())
    }

    /// Calls a tool by name. Tools that need approval are refused unless `approval` covers this
    /// exact call; an approval is spent by its first successful check.
    ///
    /// Each call is a `tool_call` span (tool name, whether it worked, milliseconds); its
    /// arguments and output stay out of the span.
    pub async fn call(
        &self,
        name: &str,
        args: Value,
        approval: Option<&Approval>,
    ) -> Result<Value, ToolError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "tool_call",
            tool = name,
            approved = approval.is_some(),
            ok = tracing::field::Empty,
            ms = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let out = self
            .call_checked(name, args, approval)
            .instrument(span.clone())
            .await;
        span.record("ok", out.is_ok());
        span.record("ms", started.elapsed().as_millis() as u64);
        out
    }

    async fn call_checked(
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
                    why: why.to_string(),
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
