//! oncall as an MCP server (rmcp): the same tools, investigations and approval flow as the API,
//! for any MCP client (an IDE agent, a desktop assistant, another agent).
//!
//! Two transports, one handler ([`OncallMcp`]): stdio for `oncall mcp` (the caller is the local
//! user, with the role `--role` gives), and Streamable HTTP at `/mcp` under `oncall serve`,
//! behind the same bearer tokens as the API (the caller is the token's holder).
//!
//! - `tools`: what an MCP client may call, by role. Every read tool of the registry (responder),
//!   `start_investigation` (responder), `get_board`, `get_postmortem`, `list_incidents`
//!   (viewer), and `request_action` (responder), which files an approval request and returns its
//!   id. No MCP call can run an action: there is no approve tool, and the registry refuses any
//!   call that is not a read without an approval.
//! - `resources`: incidents, their event logs and post-mortem drafts as `oncall://` resources.
//!
//! Everything returned is redacted and cut to the same token budget as a tool output shown to
//! the model.

mod resources;
mod tools;

use super::AppState;
use super::auth::Caller;
use crate::llm::tokens::TokenCounter;
use crate::policy::Role;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::Arc;

/// The MCP face of one oncall server (or of `oncall mcp`).
#[derive(Clone)]
pub struct OncallMcp {
    st: Arc<AppState>,
    /// The caller of every request on stdio; over HTTP, each request's token says.
    local: Option<Caller>,
    counter: Arc<TokenCounter>,
    /// Tool calls running at once, over every MCP client of this process.
    running: Arc<tokio::sync::Semaphore>,
}

/// The most MCP tool calls that run at once; more are refused at once ("busy").
const AT_ONCE: usize = 8;

/// Why MCP could not be served.
#[derive(Debug, thiserror::Error)]
pub enum McpServeError {
    #[error("the token counter for the output budget: {0}")]
    Counter(String),
    #[error("MCP over stdio: {0}")]
    Stdio(String),
}

impl OncallMcp {
    fn new(st: Arc<AppState>, local: Option<Caller>) -> Result<OncallMcp, McpServeError> {
        let counter = TokenCounter::for_settings(&st.config.llm)
            .map_err(|e| McpServeError::Counter(e.to_string()))?;
        Ok(OncallMcp {
            st,
            local,
            counter: Arc::new(counter),
            running: Arc::new(tokio::sync::Semaphore::new(AT_ONCE)),
        })
    }

    /// Who is calling: the local user on stdio, the token's holder over HTTP (the `/mcp` route's
    /// authentication put them in the request).
    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
        if let Some(c) = &self.local {
            return Ok(c.clone());
        }
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| ErrorData::invalid_request("no authenticated caller", None))
    }

    /// `text` redacted and cut to the budget of one tool output shown to the model.
    fn budgeted(&self, text: &str) -> String {
        let cap = crate::agent::evidence::cap_for(self.st.config.llm.context_window);
        // Cut by bytes first (a token is rarely more than 8 bytes), so a huge text is never
        // redacted or tokenized whole.
        let mut end = text.len().min(cap.saturating_mul(8));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let text = crate::redact::redact(&text[..end]);
        let (text, cut) = self.counter.truncate(&text, cap);
        if cut {
            format!("{text}\n[cut at {cap} tokens; the API has the whole of it]")
        } else {
            text
        }
    }
}

/// Whether `c` holds at least `min`, or the refusal that says what they hold and what it needs.
fn holds(c: &Caller, min: Role, what: &str) -> Result<(), String> {
    if c.role >= min {
        Ok(())
    } else {
        Err(format!(
            "{} holds the {} role; {what} needs {}",
            c.name,
            super::auth::role_name(c.role),
            super::auth::role_name(min)
        ))
    }
}

impl ServerHandler for OncallMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("oncall", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "oncall is a debugging copilot for incidents. Start with start_investigation (a \
             plain-words report of what is wrong); read its hypotheses and evidence with \
             get_board. Read tools measure hosts, databases and traces directly. Live actions \
             (rollback, kill, cancel) never run from here: request_action files a request that \
             a human approver decides.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let c = self.caller(&ctx)?;
        Ok(ListToolsResult::with_all_items(tools::listed(&self.st, &c)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let c = self.caller(&ctx)?;
        tools::call(self, &c, request, ctx).await.map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let _ = self.caller(&ctx)?;
        resources::list(&self.st).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let _ = self.caller(&ctx)?;
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let _ = self.caller(&ctx)?;
        resources::read(self, &request.uri).await.map(Into::into)
    }
}

/// The Streamable HTTP service for `/mcp`. Stateless (no session held by one replica), so any
/// replica behind a load balancer answers any request; an answer that sends progress first is an
/// event stream. The route's own authentication runs before it, so the Host check rmcp makes
/// for unauthenticated local servers is off.
pub fn http_service(
    st: Arc<AppState>,
) -> Result<
    rmcp::transport::StreamableHttpService<
        OncallMcp,
        rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
    >,
    McpServeError,
> {
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    let handler = OncallMcp::new(st.clone(), None)?;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(false)
        .with_max_request_body_bytes(st.config.server.max_body_bytes)
        .disable_allowed_hosts();
    Ok(rmcp::transport::StreamableHttpService::new(
        move || Ok(handler.clone()),
        Default::default(),
        config,
    ))
}

/// Serves MCP on stdin and stdout for `caller` until the client closes the stream.
pub async fn serve_stdio(st: Arc<AppState>, caller: Caller) -> Result<(), McpServeError> {
    use rmcp::ServiceExt;
    let handler = OncallMcp::new(st, Some(caller))?;
    let running = handler
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpServeError::Stdio(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| McpServeError::Stdio(e.to_string()))?;
    Ok(())
}
