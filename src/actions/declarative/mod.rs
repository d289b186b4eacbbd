//! Declarative actions: the stabilizers an SRE team adds without recompiling, one TOML file each
//! (`tools/*.toml`, everything but `policy.toml`).
//!
//! An action runs either a command or an HTTP request, built from a template. A command is an
//! argv list run directly, never through a shell; an HTTP request has a method, a URL, headers and
//! a JSON body. Every `{name}` in a template is an argument the file declares, with a type and,
//! for strings, a pattern the whole value must match. A value is checked before anything is built:
//! `deployment = "api; rm -rf /"` is refused because it does not match the pattern, not quoted
//! into a command. In URLs values are percent-encoded; in bodies they are JSON strings; in argv
//! each value stays inside its one argument. `${env:NAME}` takes a value from the environment at
//! run time (tokens in headers); dry runs show the reference, never the value.
//!
//! A command starts with an EMPTY environment plus what its file declares: `env` (fixed values,
//! which may use `{arg}` and `${env:NAME}`) and `pass_env` (variables copied from oncall's
//! environment when they are set), and `PATH=/usr/local/bin:/usr/bin:/bin` unless it declares
//! its own. oncall's token, its `ONCALL_*` settings, database passwords and DSNs never reach it:
//! naming one of them in `env` or `pass_env` is refused when the file is loaded.
//!
//! ```toml
//! name = "deploy.rollback"
//! description = "Roll a deployment back to its previous revision."
//! risk = "live_action"
//! [args.deployment]
//! description = "The deployment, e.g. \"storefront\"."
//! pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
//! [command]
//! argv = ["kubectl", "rollout", "undo", "deployment/{deployment}"]
//! pass_env = ["HOME", "KUBECONFIG"]
//! ```

mod parse;
mod render;
mod run;
mod secrets;

pub use secrets::{DEFAULT_PATH, configured_secret_variables, secret_variable};

use crate::tool::{DynTool, ToolError, ToolSpec};
use async_trait::async_trait;
use parse::{Arg, Template};
use serde_json::Value;
use std::path::Path;

/// The actions shipped with oncall (the files in `tools/`, compiled in).
pub const SHIPPED: [(&str, &str); 3] = [
    (
        "tools/deploy-rollback.toml",
        include_str!("../../../tools/deploy-rollback.toml"),
    ),
    (
        "tools/flag-disable.toml",
        include_str!("../../../tools/flag-disable.toml"),
    ),
    (
        "tools/circuit-open.toml",
        include_str!("../../../tools/circuit-open.toml"),
    ),
];

pub use crate::tool::EffectCheck as Effect;

/// One loaded action.
#[derive(Debug, Clone)]
pub struct Action {
    spec: ToolSpec,
    args: Vec<Arg>,
    template: Template,
    pub effect: Option<Effect>,
    pub file: String,
}

/// Why an action file was refused: its file, and the line or the field.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{file}: {message}")]
pub struct ActionFileError {
    pub file: String,
    pub message: String,
}

#[async_trait]
impl DynTool for Action {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call_json(&self, args: Value) -> Result<Value, ToolError> {
        self.run(args).await
    }

    fn dry_run(&self, args: &Value) -> Result<Value, ToolError> {
        self.plan(args)
    }

    fn effect(&self, _args: &Value) -> Option<Effect> {
        self.effect.clone()
    }
}

/// Loads every action file in `dir` (`*.toml` but `policy.toml`), or the shipped ones when `dir`
/// is None.
pub fn load(dir: Option<&Path>) -> Result<Vec<Action>, ActionFileError> {
    let files: Vec<(String, String)> = match dir {
        None => SHIPPED
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect(),
        Some(d) => {
            let mut v = vec![];
            let entries = std::fs::read_dir(d).map_err(|e| ActionFileError {
                file: d.display().to_string(),
                message: format!("cannot read the actions directory: {e}"),
            })?;
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml")
                    && p.file_name().is_some_and(|n| n != "policy.toml")
                {
                    let t = std::fs::read_to_string(&p).map_err(|e| ActionFileError {
                        file: p.display().to_string(),
                        message: e.to_string(),
                    })?;
                    v.push((p.display().to_string(), t));
                }
            }
            v.sort();
            v
        }
    };
    let mut out: Vec<Action> = vec![];
    for (f, t) in files {
        let a = Action::parse(&t, &f)?;
        if let Some(other) = out.iter().find(|o| o.spec.name == a.spec.name) {
            return Err(ActionFileError {
                file: f,
                message: format!("{} is already defined in {}", a.spec.name, other.file),
            });
        }
        out.push(a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::RiskClass;
    use serde_json::json;

    #[test]
    fn the_shipped_actions_load() {
        let a = load(None).expect("shipped actions load");
        let names: Vec<&str> = a.iter().map(|a| a.spec.name).collect();
        assert_eq!(names, ["deploy.rollback", "flag.disable", "circuit.open"]);
        assert!(a.iter().all(|a| a.spec.risk == RiskClass::LiveAction));
    }

    #[test]
    fn dry_runs_show_exactly_what_would_run() {
        let a = load(None).unwrap();
        let rb = &a[0];
        let p = rb
            .plan(&json!({"deployment": "storefront", "namespace": "shop"}))
            .unwrap();
        assert_eq!(
            p["argv"],
            json!([
                "kubectl",
                "rollout",
                "undo",
                "deployment/storefront",
                "--namespace",
                "shop"
            ])
        );
        let flag = &a[1];
        let p = flag
            .plan(&json!({"flag": "new-checkout", "reason": "oncall: errors after enabling"}))
            .unwrap();
        assert!(
            p["url"]
                .as_str()
                .unwrap()
                .ends_with("/flags/new-checkout/disable"),
            "{p}"
        );
        assert_eq!(
            p["headers"]["Authorization"], "Bearer ${env:ONCALL_FLAGS_TOKEN}",
            "secrets are shown as references"
        );
        assert_eq!(p["body"]["reason"], "oncall: errors after enabling");
    }

    #[test]
    fn injection_is_refused_before_anything_is_built() {
        let a = load(None).unwrap();
        for bad in [
            json!({"deployment": "api; rm -rf /"}),
            json!({"deployment": "api && curl evil"}),
            json!({"deployment": "$(reboot)"}),
            json!({"deployment": "--all"}),
            json!({"deployment": "api\nrm"}),
            json!({"deployment": "api", "namespace": "x --kubeconfig=/tmp/evil"}),
            json!({"deployment": "api", "extra": "1"}),
            json!({"deployment": 7}),
        ] {
            let e = a[0].plan(&bad).unwrap_err().to_string();
            assert!(e.contains("bad arguments"), "{bad}: {e}");
        }
        for bad in [
            json!({"flag": "../admin", "reason": "x"}),
            json!({"flag": "a?b=c", "reason": "x"}),
            json!({"flag": "ok", "reason": "x\r\nX-Evil: 1"}),
        ] {
            assert!(a[1].plan(&bad).is_err(), "{bad}");
        }
    }
}
