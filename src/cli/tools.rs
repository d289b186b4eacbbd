//! `oncall tools`: every tool the model is offered, with its risk class and JSON schema.

use super::{CliError, Context, Outcome, ToolsArgs};
use std::process::ExitCode;

pub fn run(args: ToolsArgs, ctx: &Context) -> Outcome {
    // Registry tools measure or act on systems; board tools only touch the investigation's own
    // hypothesis board. The model is offered both.
    let mut listed: Vec<serde_json::Value> = ctx
        .registry
        .specs()
        .into_iter()
        .map(|s| serde_json::json!({"name": s.name, "kind": "system", "risk": s.risk, "version": s.version, "description": s.description, "parameters": s.parameters}))
        .collect();
    // External MCP servers' tools, as an investigation would be offered them.
    let (external, problems) = ctx
        .runtime
        .block_on(crate::toolsets::mcp::connect_all(&ctx.config.mcp.servers));
    for p in &problems {
        eprintln!("warning: {p}; its toolset is left out");
    }
    listed.extend(external.iter().map(|t| t.spec()).map(|s| {
        serde_json::json!({"name": s.name, "kind": "mcp", "risk": s.risk, "version": s.version, "description": s.description, "parameters": s.parameters})
    }));
    // Closed inside the runtime that opened them.
    ctx.runtime.block_on(async move { drop(external) });
    listed.extend(crate::agent::board_tools::defs().into_iter().map(|d| {
        serde_json::json!({"name": d.name, "kind": "board", "risk": "read", "description": d.description, "parameters": d.parameters})
    }));
    if args.json {
        let s = serde_json::to_string_pretty(&listed)
            .map_err(|e| CliError::failed(format!("cannot encode the tool list: {e}")))?;
        println!("{s}");
    } else {
        for t in &listed {
            let risk = t["risk"].as_str().unwrap_or_default();
            let kind = match t["kind"].as_str() {
                Some("board") => ", board",
                Some("mcp") => ", external MCP",
                _ => "",
            };
            println!("{}  [{risk}{kind}]", t["name"].as_str().unwrap_or_default());
            println!("  {}", t["description"].as_str().unwrap_or_default());
            println!("  args: {}", t["parameters"]);
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}
