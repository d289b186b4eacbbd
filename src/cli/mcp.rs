//! `oncall mcp`: oncall as an MCP server on stdin and stdout, for an MCP client that starts it
//! (an IDE agent, a desktop assistant). It opens the same incident store, audit log and tools as
//! `oncall serve` (as a replica of its own, so both can run on one data directory), and serves
//! until the client closes the stream. Stdout carries only MCP messages; logs go to stderr.

use super::{CliError, Context, McpArgs, Outcome};
use crate::server::auth::{Caller, parse_role};
use crate::server::{AppState, mcp};
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(args: McpArgs, ctx: &Context) -> Outcome {
    let role = parse_role(&args.role).map_err(|e| CliError::usage(e.to_string()))?;
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "local".into());
    let caller = Caller {
        name: args.name.unwrap_or_else(|| format!("mcp:{user}")),
        role,
    };
    let mut cfg = (*ctx.config).clone();
    // A replica of its own: its investigations are its own to resume or mark interrupted.
    let host = cfg
        .server
        .replica
        .clone()
        .unwrap_or_else(|| sysinfo::System::host_name().unwrap_or_else(|_| "oncall".into()));
    cfg.server.replica = Some(format!("{host}-mcp-{}", std::process::id()));
    let cfg = Arc::new(cfg);
    ctx.runtime
        .block_on(async {
            let st = AppState::start(cfg, None)
                .await
                .map_err(|e| CliError::failed(e.to_string()))?;
            eprintln!(
                "oncall mcp: serving MCP on stdio as {} ({}); no MCP call can run an action",
                caller.name, args.role
            );
            mcp::serve_stdio(st, caller)
                .await
                .map_err(|e| CliError::failed(e.to_string()))
        })
        .map(|()| ExitCode::SUCCESS)
}
