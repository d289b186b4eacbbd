//! External MCP servers as toolsets: oncall is their MCP client (rmcp).
//!
//! Each `[[mcp.servers]]` entry is a program oncall starts (stdio) or a Streamable HTTP URL.
//! At start oncall connects to every one at once (each within its `timeout_s`) and lists its
//! tools; each becomes a registry tool named `<name>.<tool>`. What such a server says about
//! itself is untrusted: its descriptions are redacted and cut short, its schemas bounded, its
//! annotations ignored. Only the configuration decides what a tool may do: `read_only = true`
//! makes its tools read tools; otherwise each is a live action that runs only with a human
//! approver's approval (the registry and the policy see to that, as for oncall's own actions).
//!
//! A slow or dead server degrades its own toolset only: a call that times out or finds the
//! connection gone fails with a message naming the server, the toolset is withdrawn from the
//! model for [`COOL_DOWN`], and the next call after that connects again.

use crate::config::McpServerSettings;
use crate::tool::{DynTool, RiskClass, ToolError, ToolSpec};
use async_trait::async_trait;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool as RemoteTool};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

type Client = RunningService<RoleClient, ()>;

/// One connection, dropped inside the runtime it was made in (its transport cleans up there).
struct Conn {
    client: Option<Client>,
    runtime: tokio::runtime::Handle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        drop(self.client.take());
    }
}

/// One external server: its settings, its connection (made again after a failure) and when it
/// last failed.
pub struct Toolset {
    settings: McpServerSettings,
    conn: tokio::sync::Mutex<Option<Conn>>,
    failed_at: Mutex<Option<Instant>>,
}

impl Toolset {
    fn new(settings: McpServerSettings) -> Toolset {
        Toolset {
            settings,
            conn: tokio::sync::Mutex::new(None),
            failed_at: Mutex::new(None),
        }
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_s.max(1))
    }

    /// Whether the server failed less than [`COOL_DOWN`] ago.
    fn cooling_down(&self) -> bool {
        self.failed_at
            .lock()
            .map(|f| f.is_some_and(|at| at.elapsed() < COOL_DOWN))
            .unwrap_or(false)
    }

    fn mark(&self, failed: bool) {
        if let Ok(mut f) = self.failed_at.lock() {
            *f = failed.then(Instant::now);
        }
    }

    async fn connect(&self) -> Result<Client, ToolsetError> {
        let s = &self.settings;
        let connecting = async {
            if s.command.is_empty() {
                self.connect_http().await
            } else {
                self.connect_stdio().await
            }
        };
        tokio::time::timeout(self.timeout(), connecting)
            .await
            .map_err(|_| ToolsetError::Timeout {
                server: s.name.clone(),
                seconds: s.timeout_s,
            })?
    }

    async fn connect_stdio(&self) -> Result<Client, ToolsetError> {
        let s = &self.settings;
        let mut cmd = tokio::process::Command::new(&s.command[0]);
        cmd.args(&s.command[1..]);
        // The server gets what a program needs to run, and the variables its entry names;
        // none of oncall's own secrets.
        cmd.env_clear();
        for keep in ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"] {
            if let Ok(v) = std::env::var(keep) {
                cmd.env(keep, v);
            }
        }
        for (name, var) in &s.env {
            if let Ok(v) = std::env::var(var) {
                cmd.env(name, v);
            }
        }
        let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| ToolsetError::Spawn {
                server: s.name.clone(),
                program: s.command[0].clone(),
                reason: e.to_string(),
            })?;
        // What the server says on stderr goes to oncall's log, redacted, under its name: read to
        // the end (a chatty server never blocks on a full pipe), each line cut at 1000
        // characters, at most 20 lines a second.
        if let Some(stderr) = stderr {
            tokio::spawn(forward_stderr(s.name.clone(), stderr));
        }
        ().serve(transport)
            .await
            .map_err(|e| ToolsetError::Connect {
                server: s.name.clone(),
                what: format!("the MCP handshake failed: {e}"),
            })
    }

    async fn connect_http(&self) -> Result<Client, ToolsetError> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let s = &self.settings;
        let bad = |what: String| ToolsetError::Connect {
            server: s.name.clone(),
            what,
        };
        let mut headers = std::collections::HashMap::new();
        for (header, var) in &s.headers {
            let value = std::env::var(var).map_err(|_| {
                bad(format!(
                    "header {header} names the variable {var}, which is not set"
                ))
            })?;
            let name = reqwest::header::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| bad(format!("{header:?} is not an HTTP header name")))?;
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| bad(format!("the value of {var} is not a valid {header} header")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let config =
            StreamableHttpClientTransportConfig::with_uri(s.url.as_str()).custom_headers(headers);
        let transport = StreamableHttpClientTransport::from_config(config);
        ().serve(transport)
            .await
            .map_err(|e| bad(format!("the MCP handshake with {} failed: {e}", s.url)))
    }

    /// Calls `tool` on the server, connecting first when there is no live connection. One
    /// deadline covers the wait for the connection, the connecting and the call; calls run side
    /// by side on one connection.
    async fn call(
        &self,
        tool: &str,
        args: serde_json::Map<String, Value>,
    ) -> Result<CallToolResult, String> {
        let late = || {
            self.mark(true);
            format!(
                "MCP server `{}` did not answer within {} s; its toolset is withdrawn for {} s",
                self.name(),
                self.settings.timeout_s,
                COOL_DOWN.as_secs()
            )
        };
        let deadline = tokio::time::Instant::now() + self.timeout();
        let peer = tokio::time::timeout_at(deadline, self.peer())
            .await
            .map_err(|_| late())??;
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        match tokio::time::timeout_at(deadline, peer.call_tool(params)).await {
            Ok(Ok(result)) => {
                self.mark(false);
                Ok(result)
            }
            Ok(Err(e)) => {
                // A protocol error leaves the connection usable; anything else is dropped.
                if !matches!(e, rmcp::ServiceError::McpError(_)) {
                    *self.conn.lock().await = None;
                    self.mark(true);
                }
                Err(crate::redact::redact(&format!(
                    "MCP server `{}`: {e}",
                    self.name()
                )))
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(late())
            }
        }
    }

    /// The live connection's peer, connecting first when there is none.
    async fn peer(&self) -> Result<rmcp::service::Peer<RoleClient>, String> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref().and_then(|c| c.client.as_ref())
            && !c.is_transport_closed()
        {
            return Ok(c.peer().clone());
        }
        *guard = None;
        let client = self.connect().await.map_err(|e| {
            self.mark(true);
            crate::redact::redact(&e.to_string())
        })?;
        let peer = client.peer().clone();
        *guard = Some(Conn {
            client: Some(client),
            runtime: tokio::runtime::Handle::current(),
        });
        Ok(peer)
    }
}

/// Logs what a stdio server writes on stderr: bounded lines, at most 20 a second (the rest
/// counted and said once a second).
async fn forward_stderr(server: String, mut stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let mut line: Vec<u8> = vec![];
    let (mut window, mut said, mut dropped) = (Instant::now(), 0u32, 0u64);
    let mut say = |text: &[u8]| {
        if window.elapsed() >= Duration::from_secs(1) {
            if dropped > 0 {
                tracing::info!(mcp_server = %server, "({dropped} more stderr lines not logged)");
            }
            (window, said, dropped) = (Instant::now(), 0, 0);
        }
        if said >= 20 {
            dropped += 1;
            return;
        }
        said += 1;
        let text = String::from_utf8_lossy(text);
        let cut: String = text.chars().take(1000).collect();
        tracing::info!(mcp_server = %server, "{}", crate::redact::redact(&cut));
    };
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                say(&line);
                line.clear();
            } else if line.len() < 4096 {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        say(&line);
    }
}

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
    fn new(toolset: Arc<Toolset>, t: &RemoteTool) -> McpTool {
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
fn answer(result: CallToolResult) -> Value {
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
    use super::*;

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
