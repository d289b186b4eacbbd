//! One tool of an external MCP server as a registry tool: its name under the toolset, its risk
//! (what the configuration trusts, made stricter by the server's own marks), its description
//! and schema bounded, its answer cut.

use super::conn::Toolset;
use super::{MAX_ANSWER_BYTES, MAX_DESCRIPTION, MAX_SCHEMA_BYTES};
use crate::config::McpServerSettings;
use crate::tool::{DynTool, RiskClass, ToolError, ToolSpec};
use async_trait::async_trait;
use rmcp::model::{CallToolResult, Tool as RemoteTool};
use serde_json::{Value, json};
use std::sync::Arc;

/// The registry name of a server's tool: `<toolset>.<tool>`, the tool's name kept to letters,
/// digits, `_` and `-` (anything else becomes `_`, and never two `_` in a row), short enough that
/// the name a model's API sees (`.` as `__`) stays within 64 characters.
pub fn tool_name(toolset: &str, remote: &str) -> String {
    let clean: String = remote
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60usize.saturating_sub(toolset.len()))
        .collect();
    // `__` stands for `.` in a model's function names: a run of `_` becomes one.
    let mut clean = clean;
    while clean.contains("__") {
        clean = clean.replace("__", "_");
    }
    format!("{toolset}.{clean}")
}

/// One tool of an external server, as the registry holds it.
pub struct McpTool {
    toolset: Arc<Toolset>,
    remote: String,
    name: &'static str,
    description: &'static str,
    parameters: Value,
    /// Whether it runs freely as a read (see [`reads`]).
    reads: bool,
}

/// Whether a server's tool is a read: the configuration must say so (`read_tools` naming it, or
/// `read_only` for all), and the server's own word can only make it stricter: a tool it marks
/// destructive or not read-only stays a live action.
fn reads(settings: &McpServerSettings, t: &RemoteTool) -> bool {
    let trusted = if settings.read_tools.is_empty() {
        settings.read_only
    } else {
        settings.read_tools.iter().any(|n| n == t.name.as_ref())
    };
    let said_risky = t
        .annotations
        .as_ref()
        .is_some_and(|a| a.destructive_hint == Some(true) || a.read_only_hint == Some(false));
    trusted && !said_risky
}

impl McpTool {
    pub(super) fn new(toolset: Arc<Toolset>, t: &RemoteTool) -> McpTool {
        let name = tool_name(toolset.name(), &t.name);
        let said = crate::redact::redact(t.description.as_deref().unwrap_or(""));
        let said: String = said.chars().take(MAX_DESCRIPTION).collect();
        let reads = reads(&toolset.settings, t);
        let access = if reads {
            "reads"
        } else {
            "a live action: runs only with a human approver's approval"
        };
        let description = format!(
            "[from the MCP server `{}`; {access}] {}",
            toolset.name(),
            said.trim()
        );
        let schema = Value::Object((*t.input_schema).clone());
        let parameters = if serde_json::to_vec(&schema).map_or(usize::MAX, |b| b.len())
            <= MAX_SCHEMA_BYTES
            && schema.get("type").and_then(Value::as_str) == Some("object")
        {
            schema
        } else {
            json!({"type": "object", "description": "arguments as the server's own documentation gives them"})
        };
        // Names and descriptions live as long as the registry (the tool contract's names are
        // `'static`); a server adds at most MAX_TOOLS of them, once per start.
        McpTool {
            remote: t.name.to_string(),
            name: Box::leak(name.into_boxed_str()),
            description: Box::leak(description.into_boxed_str()),
            parameters,
            reads,
            toolset,
        }
    }

    fn risk(&self) -> RiskClass {
        if self.reads {
            RiskClass::Read
        } else {
            RiskClass::LiveAction
        }
    }

    fn failed(&self, message: String) -> ToolError {
        ToolError::Failed {
            tool: self.name.to_string(),
            message,
        }
    }
}

/// A call's answer as evidence: its text as JSON when it parses as an object or array, else the
/// structured content when the server gives one, else the text; cut at [`MAX_ANSWER_BYTES`].
pub(super) fn answer(result: CallToolResult) -> Value {
    let mut texts = vec![];
    for block in &result.content {
        match block.as_text() {
            Some(t) => texts.push(t.text.clone()),
            None => texts.push("[non-text content omitted]".to_string()),
        }
    }
    let mut text = texts.join("\n");
    if text.len() > MAX_ANSWER_BYTES {
        let mut cut = MAX_ANSWER_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[answer cut at 256 KiB]");
    }
    let structured = result
        .structured_content
        .filter(|s| serde_json::to_vec(s).is_ok_and(|b| b.len() <= MAX_ANSWER_BYTES));
    match (serde_json::from_str::<Value>(&text), structured) {
        (Ok(v), _) if v.is_object() || v.is_array() => v,
        (_, Some(s)) => s,
        _ => json!({ "text": text }),
    }
}

#[async_trait]
impl DynTool for McpTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name,
            description: self.description,
            risk: self.risk(),
            parameters: self.parameters.clone(),
            unavailable: self.toolset.cooling_down(),
            version: 1,
        }
    }

    async fn call_json(&self, args: Value) -> Result<Value, ToolError> {
        let args = match args {
            Value::Null => serde_json::Map::new(),
            Value::Object(o) => o,
            other => {
                return Err(ToolError::BadArguments {
                    tool: self.name.to_string(),
                    message: format!("arguments must be a JSON object, not {other}"),
                });
            }
        };
        let result = self
            .toolset
            .call(&self.remote, args)
            .await
            .map_err(|m| self.failed(m))?;
        if result.is_error == Some(true) {
            let said = answer(result);
            return Err(self.failed(format!(
                "the MCP server `{}` answered with an error: {}",
                self.toolset.name(),
                said.get("text")
                    .and_then(Value::as_str)
                    .map_or_else(|| said.to_string(), str::to_string)
            )));
        }
        Ok(answer(result))
    }

    fn dry_run(&self, args: &Value) -> Result<Value, ToolError> {
        if self.risk() == RiskClass::Read {
            return Err(self.failed("this tool only reads; it has no dry run".into()));
        }
        Ok(json!({
            "mcp_server": self.toolset.name(),
            "via": if self.toolset.settings.url.is_empty() { "stdio" } else { "streamable http" },
            "tool": self.remote,
            "arguments": args,
        }))
    }
}
