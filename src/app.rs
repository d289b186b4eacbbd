//! The composition root: the one place that builds oncall's parts from its configuration.
//!
//! config → tools (collectors, actions, memory) → registry under the policy → (the server or
//! the CLI adds the store, the desk and the model). Modules below this one take what they need
//! as values or traits; none of them builds another's parts. The tool registry, in particular,
//! receives its tools here and never imports them.

use crate::actions::{CancelBackend, SignalProcess, TerminateBackend};
use crate::collectors::host::HostUseSnapshot;
use crate::collectors::postgres::{self as pg, Databases};
use crate::collectors::traces::store::SpanStore;
use crate::collectors::traces::{self as tr, Traces};
use crate::config::Config;
use crate::policy::rules::Policy;
use crate::registry::Registry;
use crate::tool::DynTool;
use std::sync::Arc;

/// Every built-in tool, the shipped actions and the shipped policy, in the order the model sees
/// them (the traces tools unavailable). For tests and library use; the binary uses
/// [`load_registry`], which reads the configured actions and policy and reports their errors.
pub fn builtin_registry(config: Arc<Config>) -> Registry {
    registry_with_span_store(config, None)
}

/// Like [`load_registry`]; if the configured actions or policy cannot be loaded, it logs why and
/// uses the shipped ones (the binary checks them at startup first).
pub fn registry_with_span_store(config: Arc<Config>, store: Option<Arc<SpanStore>>) -> Registry {
    load_registry(config.clone(), store.clone()).unwrap_or_else(|e| {
        tracing::error!("{e}; using the shipped actions and policy");
        let mut shipped = (*config).clone();
        shipped.actions.dir = None;
        shipped.policy.file = None;
        load_registry(Arc::new(shipped), store).unwrap_or_else(|e| {
            tracing::error!("{e}; no actions and no policy: only read tools run");
            Registry::from_tools(vec![])
        })
    })
}

/// Why the tools could not be loaded: a file of the team's, named with what is wrong in it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Action(#[from] crate::actions::declarative::ActionFileError),
    #[error("{file}: {name} is a built-in tool; choose another name")]
    ShadowsBuiltin { file: String, name: String },
    #[error("cannot read the policy {}: {source}", path.display())]
    PolicyUnreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] crate::policy::rules::PolicyFileError),
}

/// Every built-in tool plus the declarative actions (`[actions] dir`, else the shipped ones),
/// under the policy (`[policy] file`, else the shipped one) in `[policy] environment`. A broken
/// action file or policy is an error naming the file and the line or field.
pub fn load_registry(
    config: Arc<Config>,
    store: Option<Arc<SpanStore>>,
) -> Result<Registry, LoadError> {
    let actions = crate::actions::declarative::load(config.actions.dir.as_deref())?;
    let dbs = Databases::from_config(&config);
    let pg_pools = dbs.pools();
    let mut tools = builtin_tools(&config, dbs, store);
    let secrets = crate::actions::declarative::configured_secret_variables(&config);
    for a in actions {
        a.check_secrets(&secrets)?;
        let name = a.spec().name;
        if tools.iter().any(|t| t.spec().name == name) {
            return Err(LoadError::ShadowsBuiltin {
                file: a.file.to_string(),
                name: name.to_string(),
            });
        }
        tools.push(Box::new(a));
    }
    let (text, file) = match &config.policy.file {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| LoadError::PolicyUnreadable {
                path: p.clone(),
                source,
            })?,
            p.display().to_string(),
        ),
        None => (
            crate::policy::rules::DEFAULT.to_string(),
            "tools/policy.toml (built in)".to_string(),
        ),
    };
    let specs: Vec<_> = tools.iter().map(|t| t.spec()).collect();
    let policy = Policy::load(&text, &file, &specs)?;
    Ok(Registry::new(
        tools,
        Some(Arc::new(policy)),
        &config.policy.environment,
        pg_pools,
    ))
}

/// The built-in tools, in the order the model is offered them.
fn builtin_tools(
    config: &Arc<Config>,
    dbs: Databases,
    store: Option<Arc<SpanStore>>,
) -> Vec<Box<dyn DynTool>> {
    let traces = Traces {
        store,
        default_window_s: config.traces.window_s,
        backend: crate::collectors::traces::backend::Backend::from_settings(&config.traces)
            .map(Arc::new),
    };
    let prom = crate::collectors::prometheus::Prometheus::from_settings(&config.prometheus);
    vec![
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
    ]
}

use crate::llm::{ChatModel, LlmError};

/// The model the configuration asks for: the offline reasoner (the default, and `auto` without
/// an endpoint), an OpenAI-compatible endpoint, or recorded turns.
pub fn model(config: &Config) -> Result<Box<dyn ChatModel>, LlmError> {
    let l = &config.llm;
    Ok(match l.effective_provider() {
        crate::config::Provider::Offline | crate::config::Provider::Auto => Box::new(
            crate::reasoner::OfflineModel::new(config.thresholds.clone()),
        ),
        crate::config::Provider::Openai => Box::new(crate::llm::openai::OpenAiModel::new(l)?),
        crate::config::Provider::Replay => {
            Box::new(crate::llm::replay::ReplayModel::from_file(&l.replay_file)?)
        }
    })
}

/// `registry` with incident memory behind `memory.similar`.
pub fn with_memory(registry: Registry, memory: Arc<crate::memory::Memory>) -> Registry {
    registry.with_tool(Box::new(crate::memory::tool::SimilarTool {
        memory: Some(memory),
    }))
}

/// `registry` with the tools of the external MCP servers of `[[mcp.servers]]` (connected to at
/// once, each within its `timeout_s`). A server that cannot be reached is logged and left out;
/// the other toolsets and oncall's own tools are used.
pub async fn with_toolsets(mut registry: Registry, config: &Config) -> Registry {
    if config.mcp.servers.is_empty() {
        return registry;
    }
    let (tools, problems) = crate::toolsets::mcp::connect_all(&config.mcp.servers).await;
    for p in problems {
        tracing::warn!("{p}; its toolset is left out until oncall starts again");
    }
    for t in tools {
        if registry.spec(t.spec().name).is_some() {
            tracing::warn!(
                "the MCP tool {} has the name of a tool oncall has; it is left out",
                t.spec().name
            );
            continue;
        }
        registry = registry.with_tool(t);
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::ToolError;
    use serde_json::Value;
    use std::collections::HashSet;

    #[test]
    fn names_follow_area_verb_and_are_unique() {
        let reg = builtin_registry(Arc::new(Config::default()));
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
        let reg = builtin_registry(Arc::new(Config::default()));
        let err = reg.call("host.nope", Value::Null, None).await.unwrap_err();
        assert!(err.to_string().contains("host.use_snapshot"), "{err}");
    }

    #[tokio::test]
    async fn bad_arguments_come_back_as_a_clear_error() {
        let reg = builtin_registry(Arc::new(Config::default()));
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
