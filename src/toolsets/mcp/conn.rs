//! One external server's connection: a child process speaking MCP on stdio, or a Streamable
//! HTTP endpoint; made at start, made again after a failure, with one deadline per call.

use super::{COOL_DOWN, ToolsetError};
use crate::config::McpServerSettings;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) type Client = RunningService<RoleClient, ()>;

/// One connection, dropped inside the runtime it was made in (its transport cleans up there).
pub(super) struct Conn {
    pub(super) client: Option<Client>,
    pub(super) runtime: tokio::runtime::Handle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        drop(self.client.take());
    }
}

/// One external server: its settings, its connection (made again after a failure) and when it
/// last failed.
pub(super) struct Toolset {
    pub(super) settings: McpServerSettings,
    pub(super) conn: tokio::sync::Mutex<Option<Conn>>,
    failed_at: Mutex<Option<Instant>>,
}

impl Toolset {
    pub(super) fn new(settings: McpServerSettings) -> Toolset {
        Toolset {
            settings,
            conn: tokio::sync::Mutex::new(None),
            failed_at: Mutex::new(None),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.settings.name
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_s.max(1))
    }

    /// Whether the server failed less than [`COOL_DOWN`] ago.
    pub(super) fn cooling_down(&self) -> bool {
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

    pub(super) async fn connect(&self) -> Result<Client, ToolsetError> {
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
    pub(super) async fn call(
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
