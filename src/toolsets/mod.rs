//! Tools from outside oncall. [`mcp`]: the tools of external MCP servers (`[[mcp.servers]]`),
//! each server a toolset whose tools join the registry as `<name>.<tool>`, under the same policy,
//! redaction and token budget as oncall's own.

pub mod mcp;
