//! The Tool contract: what the model (or the offline reasoner) can call.
//!
//! A tool has a name `area.verb`, a one-line description written for the model, typed arguments
//! whose JSON schema comes from schemars (their doc comments are what the model reads), a risk
//! class, and a typed output that serializes to compact evidence. [`crate::registry`] holds the one
//! ordered list of tools and is the only way to call them; it refuses live actions that lack an
//! approval bound to their exact arguments. This module never decides *whether* an action is
//! wise: that is the policy's job.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How much harm a tool can do, which decides whether it runs freely.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskClass {
    /// Only reads; runs freely.
    Read,
    /// Changes or executes something that is not a live-incident action (e.g. EXPLAIN ANALYZE);
    /// needs an approval.
    Write,
    /// Acts on production (rollback, flag off, circuit-break, kill); always needs an approval from
    /// a human approver who is not the requester.
    LiveAction,
}

impl RiskClass {
    /// Whether a call of this class must carry an approval.
    pub fn needs_approval(self) -> bool {
        !matches!(self, RiskClass::Read)
    }
}

/// Why a tool call did not produce output. Every variant reads as feedback the caller can act on,
/// because for the model these messages are the tool result.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ToolError {
    #[error("unknown tool `{name}`; available tools: {available}")]
    UnknownTool { name: String, available: String },
    #[error("bad arguments for `{tool}`: {message}")]
    BadArguments { tool: String, message: String },
    #[error(
        "`{tool}` is a {risk:?} tool and needs an approved request from a human approver; it was not run"
    )]
    ApprovalRequired { tool: String, risk: RiskClass },
    #[error("the approval presented does not cover this call of `{tool}`: {why}; it was not run")]
    ApprovalMismatch { tool: String, why: String },
    #[error("`{tool}` is forbidden by the policy ({why}); it was not run")]
    Forbidden { tool: String, why: String },
    #[error("`{tool}` failed: {message}")]
    Failed { tool: String, message: String },
}

/// The description of a tool that is shown to the model and listed by `oncall tools`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = Tool)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub risk: RiskClass,
    /// JSON schema of the arguments.
    pub parameters: Value,
    /// Whether the tool can work with the current configuration (e.g. a database is configured).
    /// Unavailable tools are listed but not offered to the model.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unavailable: bool,
    /// The version of the output's shape; recorded eval cases name it, and a change makes the
    /// loader ask for a new recording instead of replaying stale shapes.
    pub version: u32,
}

/// A typed tool. Implement this; the registry erases the types.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// `area.verb`, e.g. `host.use_snapshot`.
    const NAME: &'static str;
    /// One line for the model: what the tool measures and when to use it.
    const DESCRIPTION: &'static str;
    const RISK: RiskClass;
    /// Bump when the output's shape changes (recorded eval cases depend on it).
    const VERSION: u32 = 1;
    type Args: DeserializeOwned + JsonSchema + Send;
    type Output: Serialize + Send;

    async fn call(&self, args: Self::Args) -> Result<Self::Output, ToolError>;

    /// Whether the tool can work with the current configuration.
    fn available(&self) -> bool {
        true
    }

    /// Adjusts the generated schema to the configuration (e.g. the names of configured databases).
    fn patch_schema(&self, _schema: &mut Value) {}

    /// For actions: the arguments a request binds, so that its approval covers exactly what will
    /// be acted on. A tool whose target can change under the same arguments (a pid reused by
    /// another process) adds what pins it down, and refuses arguments that no longer match or
    /// that name a target it never acts on. Runs when a request is filed and before a dry run;
    /// the default binds the arguments as given.
    fn bind(&self, args: Value) -> Result<Value, ToolError> {
        Ok(args)
    }

    /// For actions: exactly what a call with these arguments would do, without doing it.
    fn dry_run(&self, _args: &Self::Args) -> Option<Value> {
        None
    }

    /// For actions: how to measure what a call with these arguments changed.
    fn effect(&self, _args: &Self::Args) -> Option<EffectCheck> {
        None
    }

    /// Starts measuring with the default arguments ahead of the call, so a one-shot
    /// investigation does not wait for the sampling window after the model asks. A tool that
    /// cannot does nothing; a prefetched answer is used only by a call with default arguments.
    fn prefetch(&self) {}
}

/// How an action's effect is measured: a read tool run before and after it, and the values to
/// compare (labels to JSON pointers into that tool's answer).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectCheck {
    pub tool: String,
    #[serde(default = "empty_object")]
    pub args: Value,
    /// Labels to JSON pointers, e.g. `"p99 ms" = "/rows/0/window/p99_ms"`.
    pub measure: std::collections::BTreeMap<String, String>,
    /// Seconds to wait after the action before measuring again.
    #[serde(default)]
    pub settle_s: u64,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// The type-erased face of a [`Tool`], as the registry stores it.
#[async_trait]
pub trait DynTool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    /// See [`Tool::prefetch`].
    fn prefetch_now(&self) {}
    async fn call_json(&self, args: Value) -> Result<Value, ToolError>;
    /// For actions: how to measure what a call with these arguments changed.
    fn effect(&self, _args: &Value) -> Option<EffectCheck> {
        None
    }
    /// The arguments a request for this call binds (see [`Tool::bind`]).
    fn bind(&self, args: Value) -> Result<Value, ToolError> {
        Ok(args)
    }
    /// What a call would do, checked but not run (actions); an error for tools without one.
    fn dry_run(&self, _args: &Value) -> Result<Value, ToolError> {
        Err(ToolError::Failed {
            tool: self.spec().name.into(),
            message: "this tool has no dry run (only actions do)".into(),
        })
    }
}

#[async_trait]
impl<T: Tool> DynTool for T {
    fn prefetch_now(&self) {
        self.prefetch();
    }

    fn spec(&self) -> ToolSpec {
        let mut parameters = schema_for::<T::Args>();
        self.patch_schema(&mut parameters);
        ToolSpec {
            name: T::NAME,
            description: T::DESCRIPTION,
            risk: T::RISK,
            parameters,
            unavailable: !self.available(),
            version: T::VERSION,
        }
    }

    async fn call_json(&self, args: Value) -> Result<Value, ToolError> {
        // A missing argument object means "all defaults".
        let args = if args.is_null() {
            Value::Object(Default::default())
        } else {
            args
        };
        let typed: T::Args = serde_json::from_value(args).map_err(|e| ToolError::BadArguments {
            tool: T::NAME.into(),
            message: e.to_string(),
        })?;
        let out = self.call(typed).await?;
        serde_json::to_value(out).map_err(|e| ToolError::Failed {
            tool: T::NAME.into(),
            message: format!("output could not be serialized: {e}"),
        })
    }

    fn bind(&self, args: Value) -> Result<Value, ToolError> {
        Tool::bind(self, args)
    }

    fn dry_run(&self, args: &Value) -> Result<Value, ToolError> {
        let args = if args.is_null() {
            Value::Object(Default::default())
        } else {
            args.clone()
        };
        let typed: T::Args = serde_json::from_value(args).map_err(|e| ToolError::BadArguments {
            tool: T::NAME.into(),
            message: e.to_string(),
        })?;
        Tool::dry_run(self, &typed).ok_or_else(|| ToolError::Failed {
            tool: T::NAME.into(),
            message: "this tool has no dry run (only actions do)".into(),
        })
    }

    fn effect(&self, args: &Value) -> Option<EffectCheck> {
        let typed: T::Args = serde_json::from_value(args.clone()).ok()?;
        Tool::effect(self, &typed)
    }
}

/// The JSON schema of a tool's arguments, without the `$schema` and `title` noise.
pub fn schema_for<A: JsonSchema>() -> Value {
    let schema = schemars::schema_for!(A);
    let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    v
}

/// Checks a numeric argument against its range, with the message every tool gives:
/// "`name` must be between A and B, got V".
pub fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    tool: &str,
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ToolError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ToolError::BadArguments {
            tool: tool.into(),
            message: format!(
                "{name} must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        })
    }
}

/// A tool that takes no arguments uses this.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}
