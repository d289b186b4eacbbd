//! `[mcp]`: oncall as an MCP server (`oncall mcp`, `/mcp` under `oncall serve`), and the external
//! MCP servers whose tools join the registry as extra toolsets (`[[mcp.servers]]`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The Model Context Protocol, both ways.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct McpSettings {
    /// Serve MCP over Streamable HTTP at `/mcp` under `oncall serve` (behind the same bearer
    /// tokens and roles as the API).
    pub serve_http: bool,
    /// Seconds `start_investigation` waits for the round to finish (sending progress
    /// notifications) before it answers with the incident id and "still running"; a call may
    /// ask for less.
    pub wait_s: u64,
    /// External MCP servers whose tools join the registry as `<name>.<tool>`.
    pub servers: Vec<McpServerSettings>,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings {
            serve_http: true,
            wait_s: 120,
            servers: vec![],
        }
    }
}

/// One external MCP server: a command oncall starts (stdio) or a URL (Streamable HTTP).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerSettings {
    /// The toolset's name: its tools are offered as `<name>.<tool>` (letters, digits, `_`, `-`).
    pub name: String,
    /// Start this program and speak MCP over its stdin and stdout: `["python3", "server.py"]`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Or connect to this Streamable HTTP endpoint: `http://127.0.0.1:9000/mcp`.
    #[serde(default)]
    pub url: String,
    /// HTTP headers to send, each naming the environment variable that holds its value:
    /// `{ Authorization = "K8S_MCP_AUTH" }`. The values never appear in a log or a prompt.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variables to pass to the command, each naming the variable of oncall's own
    /// environment that holds its value (the command gets nothing else of it but `PATH`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `true`: its tools only read, and run freely like oncall's own read tools. `false` (the
    /// default): each is a live action, run only with a human approver's approval.
    #[serde(default)]
    pub read_only: bool,
    /// Or only these of its tools (their names as the server gives them) are reads; the others
    /// are live actions. Either way, a tool the server itself marks destructive (or not
    /// read-only) stays a live action.
    #[serde(default)]
    pub read_tools: Vec<String>,
    /// Seconds to connect, and for each call; a server slower than this degrades its own
    /// toolset only.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_timeout_s() -> u64 {
    10
}

impl McpServerSettings {
    /// What is wrong with this entry, if anything.
    pub fn problem(&self) -> Option<String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && !self.name.contains("__")
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        const RESERVED: [&str; 10] = [
            "board", "memory", "host", "postgres", "traces", "fleet", "changes", "deploy", "flag",
            "circuit",
        ];
        let name_ok = name_ok
            && !self.name.starts_with(['_', '-'])
            && !self.name.ends_with(['_', '-'])
            && !RESERVED.contains(&self.name.as_str());
        if !name_ok {
            return Some(format!(
                "mcp.servers name {:?}: use 1-32 letters, digits, `_` or `-`, not at either end, no `__`, and not an area of oncall's own (board, memory, host, postgres, traces, fleet, changes, deploy, flag, circuit); it prefixes the toolset's tools",
                self.name
            ));
        }
        match (self.command.is_empty(), self.url.trim().is_empty()) {
            (true, true) => {
                return Some(format!(
                    "mcp.servers {:?}: give `command` (a program speaking MCP on stdio) or `url` (a Streamable HTTP endpoint)",
                    self.name
                ));
            }
            (false, false) => {
                return Some(format!(
                    "mcp.servers {:?}: give `command` or `url`, not both",
                    self.name
                ));
            }
            _ => {}
        }
        if !(self.url.is_empty()
            || self.url.starts_with("http://")
            || self.url.starts_with("https://"))
        {
            return Some(format!(
                "mcp.servers {:?}: url {:?} must start with http:// or https://",
                self.name, self.url
            ));
        }
        if !(1..=300).contains(&self.timeout_s) {
            return Some(format!(
                "mcp.servers {:?}: timeout_s {} is out of range (1-300)",
                self.name, self.timeout_s
            ));
        }
        // oncall's own secrets are not for other programs.
        for var in self.headers.values().chain(self.env.values()) {
            if var.starts_with("ONCALL_") {
                return Some(format!(
                    "mcp.servers {:?}: {var} is oncall's own variable; give the server a variable of its own",
                    self.name
                ));
            }
        }
        if !self.headers.is_empty() && self.url.starts_with("http://") {
            let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| self.url.starts_with(p));
            if !local {
                return Some(format!(
                    "mcp.servers {:?}: headers carry credentials; use https:// for {}",
                    self.name, self.url
                ));
            }
        }
        if !self.headers.is_empty() && self.url.is_empty() {
            return Some(format!(
                "mcp.servers {:?}: headers are sent over HTTP only; this server is a command",
                self.name
            ));
        }
        None
    }
}
