//! `oncall mcp`: oncall as an MCP server on stdin and stdout, for an MCP client that starts it
//! (an IDE agent, a desktop assistant). It opens the same incident store, audit log and tools as
//! `oncall serve` (as a replica of its own, so both can run on one data directory), and serves
//! until the client closes the stream. Stdout carries only MCP messages; logs go to stderr.
//!
//! The person is who their token says, as over HTTP: `oncall token add NAME --role ROLE` makes
//! one, and the MCP client passes it in the variable `--token-env` names. So a request filed
//! from here is theirs, and the approval desk keeps them from approving it.

use super::{CliError, Context, McpArgs, Outcome};
use crate::server::auth::{Principal, authenticate};
use crate::server::{AppState, mcp};
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(args: McpArgs, ctx: &Context) -> Outcome {
    let var = &args.token_env;
    let token = std::env::var(var)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CliError::usage(format!(
                "oncall mcp needs your token in {var}: make one with `oncall token add NAME --role responder` and set {var} in the MCP client's env"
            ))
        })?;
    let mut cfg = (*ctx.config).clone();
    // A replica of its own: its investigations are its own to resume or mark interrupted.
    let host = crate::server::replica_name(&cfg.server);
    cfg.server.replica = Some(format!("{host}-mcp-{}", std::process::id()));
    let cfg = Arc::new(cfg);
    ctx.runtime
        .block_on(async {
            let st = AppState::start(cfg, None)
                .await
                .map_err(|e| CliError::failed(e.to_string()))?;
            let mut headers = axum::http::HeaderMap::new();
            let bearer = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| CliError::usage(format!("{var} does not hold a token")))?;
            headers.insert(axum::http::header::AUTHORIZATION, bearer);
            let caller = match authenticate(&st, &headers, None).await {
                Ok(Principal::Person(c)) => c,
                Ok(Principal::Ingest(name)) => {
                    return Err(CliError::usage(format!(
                        "the token in {var} is {name}'s ingest token: it may only send traces; use a person's token"
                    )));
                }
                Err(_) => {
                    return Err(CliError::usage(format!(
                        "the token in {var} is not one this store knows (revoked, or made for another data directory)"
                    )));
                }
            };
            eprintln!(
                "oncall mcp: serving MCP on stdio as {} ({}); no MCP call can run an action",
                caller.name,
                crate::incidents::role_str(caller.role)
            );
            mcp::serve_stdio(st, caller)
                .await
                .map_err(|e| CliError::failed(e.to_string()))
        })
        .map(|()| ExitCode::SUCCESS)
}
