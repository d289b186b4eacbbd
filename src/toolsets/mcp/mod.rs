//! External MCP servers as toolsets: oncall is their MCP client (rmcp).
//!
//! Each `[[mcp.servers]]` entry is a program oncall starts (stdio) or a Streamable HTTP URL.
//! At start oncall connects to every one at once (each within its `timeout_s`) and lists its
//! tools; each becomes a registry tool named `<name>.<tool>`. What such a server says about
//! itself is untrusted: its descriptions are redacted and cut short, its schemas bounded. The
//! configuration decides what a tool may do (`read_only = true`, or `read_tools`, makes reads;
//! everything else is a live action that runs only with a human approver's approval, as the
//! registry and the policy see to for oncall's own actions); the server's own marks can only
//! make a tool stricter.
//!
//! A slow or dead server degrades its own toolset only: a call that times out or finds the
//! connection gone fails with a message naming the server, the toolset is withdrawn from the
//! model for [`COOL_DOWN`], and the next call after that connects again.
//!
//! - `conn`: one server's connection (stdio child or Streamable HTTP), made again after a
//!   failure, with its stderr logged in bounds;
//! - `tool`: one of its tools as a registry tool (name, risk, bounded answer).

mod conn;
mod tool;

use crate::config::McpServerSettings;
use crate::tool::DynTool;
use conn::{Conn, Toolset};
use std::sync::Arc;
use std::time::Duration;
pub use tool::{McpTool, tool_name};

/// How long a toolset whose server failed is withdrawn from the model.
pub const COOL_DOWN: Duration = Duration::from_secs(30);
/// The longest description of an external tool shown to the model.
const MAX_DESCRIPTION: usize = 600;
/// The largest argument schema of an external tool accepted as given (bytes of JSON).
const MAX_SCHEMA_BYTES: usize = 8 * 1024;
/// The most tools one server may add.
const MAX_TOOLS: usize = 64;
/// The largest answer kept from one call (bytes of text), before the evidence cap.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a toolset could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolsetError {
    #[error("MCP server `{server}`: cannot start {program:?}: {reason}")]
    Spawn {
        server: String,
        program: String,
        reason: String,
    },
    #[error("MCP server `{server}`: {what}")]
    Connect { server: String, what: String },
    #[error("MCP server `{server}` did not answer within {seconds} s")]
    Timeout { server: String, seconds: u64 },
}

/// Connects to every configured server at once and lists its tools. A server that cannot be
/// reached, or answers late, is reported and left out; the others are used.
pub async fn connect_all(
    servers: &[McpServerSettings],
) -> (Vec<Box<dyn DynTool>>, Vec<ToolsetError>) {
    let listed = futures::future::join_all(servers.iter().cloned().map(|s| async move {
        let set = Arc::new(Toolset::new(s));
        let client = set.connect().await?;
        let listing = tokio::time::timeout(set.timeout(), client.list_all_tools()).await;
        let tools = match listing {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Err(ToolsetError::Connect {
                    server: set.name().to_string(),
                    what: format!("cannot list its tools: {e}"),
                });
            }
            Err(_) => {
                return Err(ToolsetError::Timeout {
                    server: set.name().to_string(),
                    seconds: set.settings.timeout_s,
                });
            }
        };
        *set.conn.lock().await = Some(Conn {
            client: Some(client),
            runtime: tokio::runtime::Handle::current(),
        });
        if tools.len() > MAX_TOOLS {
            tracing::warn!(
                "MCP server `{}` offers {} tools; the first {MAX_TOOLS} are used",
                set.name(),
                tools.len()
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Box<dyn DynTool>> = vec![];
        for t in tools.iter().take(MAX_TOOLS) {
            if seen.insert(tool_name(set.name(), &t.name)) {
                out.push(Box::new(McpTool::new(set.clone(), t)));
            }
        }
        Ok(out)
    }))
    .await;
    let mut tools = vec![];
    let mut problems = vec![];
    for r in listed {
        match r {
            Ok(t) => tools.extend(t),
            Err(e) => problems.push(e),
        }
    }
    (tools, problems)
}

#[cfg(test)]
mod tests {
    use super::tool::answer;
    use super::*;
    use rmcp::model::CallToolResult;
    use serde_json::json;

    #[test]
    fn names_keep_to_a_safe_alphabet_under_their_toolset() {
        assert_eq!(tool_name("k8s", "get_pods"), "k8s.get_pods");
        assert_eq!(tool_name("k8s", "pods/list all"), "k8s.pods_list_all");
        assert_eq!(tool_name("k8s", "a..b__c"), "k8s.a_b_c");
        let long = tool_name("x", &"a".repeat(100));
        assert!(crate::llm::openai::wire_name(&long).len() <= 64, "{long}");
    }

    #[test]
    fn an_answer_prefers_structure_then_json_text_then_text() {
        let r = CallToolResult::success(vec![rmcp::model::ContentBlock::text(r#"{"pods": 3}"#)]);
        assert_eq!(answer(r), json!({"pods": 3}));
        let r = CallToolResult::success(vec![rmcp::model::ContentBlock::text("all good")]);
        assert_eq!(answer(r), json!({"text": "all good"}));
        let big = "x".repeat(MAX_ANSWER_BYTES + 10);
        let r = CallToolResult::success(vec![rmcp::model::ContentBlock::text(big)]);
        let text = answer(r)["text"].as_str().unwrap().to_string();
        assert!(
            text.ends_with("[answer cut at 256 KiB]"),
            "{}",
            &text[text.len() - 40..]
        );
    }

    #[tokio::test]
    async fn a_server_that_cannot_start_is_reported_and_left_out() {
        let s = McpServerSettings {
            name: "ghost".into(),
            command: vec!["/nonexistent/mcp-server".into()],
            url: String::new(),
            headers: Default::default(),
            env: Default::default(),
            read_only: true,
            read_tools: vec![],
            timeout_s: 2,
        };
        let (tools, problems) = connect_all(&[s]).await;
        assert!(tools.is_empty());
        assert_eq!(problems.len(), 1);
        let msg = problems[0].to_string();
        assert!(
            msg.contains("ghost") && msg.contains("/nonexistent/mcp-server"),
            "{msg}"
        );
    }
}
