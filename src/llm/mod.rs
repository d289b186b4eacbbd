//! Reasoners: whatever reads the evidence and moves hypotheses on the board.
//!
//! [`ChatModel`] is the one interface the investigation loop talks to, with three
//! implementations behind the `[llm] provider` switch:
//! - [`openai`]: any OpenAI-compatible chat-completions endpoint, through async-openai;
//! - [`crate::reasoner`]: the built-in reasoner, deterministic USE-method rules that call the same tools
//!   and board tools a model would (the default: no key, no network);
//! - [`replay`]: recorded model turns, for tests and the eval harness.
//!
//! [`tokens`] counts tokens with tiktoken and accounts for what an investigation cost (calls,
//! tokens, cache hits, time, money); [`retry`] retries transient failures with backoff and
//! jitter, never sooner than the endpoint's `Retry-After`, inside a deadline; [`transport`] is
//! the one HTTP call per attempt under async-openai, and keeps that `Retry-After`;
//! [`text_calls`] reads tool calls that a server without a parser for its model returns as text;
//! [`stream`] puts a streamed reply back together. A model only ever *asks* for tools: the agent runs
//! them through the registry, which is where live actions are refused.

pub mod openai;
pub mod replay;
pub mod retry;
pub mod stream;
pub mod text_calls;
pub mod tokens;
pub mod transport;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A tool call the model asked for. `arguments` is the raw JSON text, unparsed: a bad model may
/// send anything, and the loop answers bad arguments with a tool error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRequest>,
    /// For `Role::Tool`: the model's id of the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Message {
        Message {
            role: Role::System,
            content: Some(text.into()),
            tool_calls: vec![],
            tool_call_id: None,
        }
    }
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: Some(text.into()),
            tool_calls: vec![],
            tool_call_id: None,
        }
    }
    pub fn assistant(content: Option<String>, tool_calls: Vec<ToolCallRequest>) -> Message {
        Message {
            role: Role::Assistant,
            content,
            tool_calls,
            tool_call_id: None,
        }
    }
    pub fn tool(call_id: &str, text: impl Into<String>) -> Message {
        Message {
            role: Role::Tool,
            content: Some(text.into()),
            tool_calls: vec![],
            tool_call_id: Some(call_id.to_string()),
        }
    }
}

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// One request to a model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// Empty when the tools have been withdrawn and the model must answer.
    pub tools: Vec<ToolDef>,
    pub max_completion_tokens: u32,
}

/// Token usage as the server reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the endpoint's prompt cache, where it says.
    #[serde(default)]
    pub cached_tokens: u64,
}

/// One reply from a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatReply {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallRequest>,
    /// Server-reported usage, when the server reports it.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// `stop`, `tool_calls`, `length` (cut off at max tokens), ...
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// Why a model step failed. `transient` ones are retried.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LlmError {
    #[error("the model endpoint did not answer within {0} s")]
    Timeout(u64),
    #[error("the model endpoint is rate limiting (HTTP 429{}): {message}", wait_note(.retry_after))]
    RateLimited {
        message: String,
        /// The endpoint's `Retry-After` (or `retry-after-ms`): no retry comes sooner.
        retry_after: Option<Duration>,
    },
    #[error("the model endpoint failed with HTTP {status}{}: {message}", wait_note(.retry_after))]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "the model's time for this investigation ({0} s, llm.investigation_deadline_s) ran out"
    )]
    OutOfTime(u64),
    #[error("the model endpoint refused the request with HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("cannot reach the model endpoint: {0}")]
    Unreachable(String),
    #[error("the model's reply is malformed: {0}")]
    Malformed(String),
    #[error("no more recorded turns to replay (after {0})")]
    ReplayExhausted(usize),
    #[error("model configuration: {0}")]
    Config(String),
}

fn wait_note(after: &Option<Duration>) -> String {
    match after {
        Some(d) => format!(", asked to wait {:.0} s", d.as_secs_f64().ceil()),
        None => String::new(),
    }
}

impl LlmError {
    /// How long the endpoint asked to wait before the next attempt, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } | LlmError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether trying again may help.
    pub fn transient(&self) -> bool {
        matches!(
            self,
            LlmError::Timeout(_)
                | LlmError::RateLimited { .. }
                | LlmError::Server { .. }
                | LlmError::Unreachable(_)
                | LlmError::Malformed(_)
        )
    }
}

/// A chat model that may ask for tools.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// A short name for logs and answers (`offline`, `openai:gpt-4o-mini`, `replay:file`).
    fn name(&self) -> String;
    /// Whether this is the built-in reasoner (no fallback needed).
    fn is_offline(&self) -> bool {
        false
    }
    /// Whether the client already retries 429 and 5xx itself (then the loop does not multiply
    /// those retries; it still retries timeouts and malformed replies).
    fn retries_itself(&self) -> bool {
        false
    }
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, LlmError>;
    /// As [`ChatModel::complete`], handing `on_text` the reply's text as it is written, where
    /// the model streams (`[llm] stream = true` on an endpoint that supports it).
    async fn complete_streaming(
        &self,
        request: &ChatRequest,
        on_text: TextSink<'_>,
    ) -> Result<ChatReply, LlmError> {
        let _ = on_text;
        self.complete(request).await
    }
}

/// Where streamed text goes as it arrives.
pub type TextSink<'a> = &'a (dyn Fn(&str) + Send + Sync);
