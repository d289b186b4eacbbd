//! Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp's server),
//! through async-openai.
//!
//! Requests and replies travel as raw JSON (async-openai's bring-your-own-types calls), because
//! OpenAI-compatible servers differ in small ways that a strict decoder rejects (a missing
//! `object`, a tool call without `type`, arguments sent as an object). This module reads such
//! replies tolerantly and calls anything it cannot read malformed. Tool names are sent with `.`
//! written as `__` (the API allows only `[a-zA-Z0-9_-]`) and mapped back on the way in.
//!
//! One retry policy, in one place: async-openai's own retry layer is replaced by its plain
//! transport ([`super::transport`], which also keeps the endpoint's `Retry-After`), so each
//! attempt is one HTTP call and the agent's policy
//! ([`super::retry`]: bounded attempts, backoff with jitter, the step's deadline, then the
//! offline reasoner) decides every retry.

use super::transport::Throttled;
use super::{
    ChatModel, ChatReply, ChatRequest, LlmError, Message, Role, TextSink, ToolCallRequest, Usage,
};
use crate::config::LlmSettings;
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

/// The most text and call arguments a streamed reply may carry (1 MiB).
const MAX_STREAMED: usize = 1 << 20;

/// An OpenAI-compatible model.
pub struct OpenAiModel {
    client: Client<OpenAIConfig>,
    model: String,
    temperature: f32,
    timeout_s: u64,
    max_tokens_field: String,
    stream: bool,
}

/// `host.use_snapshot` -> `host__use_snapshot`.
pub fn wire_name(name: &str) -> String {
    name.replace('.', "__")
}

/// `host__use_snapshot` (or the dotted form, from models that send it back) -> `host.use_snapshot`.
pub fn tool_name(wire: &str) -> String {
    wire.replace("__", ".")
}

impl OpenAiModel {
    pub fn new(l: &LlmSettings) -> Result<OpenAiModel, LlmError> {
        let key = std::env::var(&l.api_key_env).unwrap_or_default();
        let mut config = OpenAIConfig::new()
            .with_api_base(l.base_url.trim_end_matches('/'))
            .with_api_key(key);
        for (k, v) in &l.extra_headers {
            config = config
                .with_header(
                    reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| LlmError::Config(format!("llm.extra_headers.{k}: {e}")))?,
                    v.clone(),
                )
                .map_err(|e| LlmError::Config(format!("llm.extra_headers.{k}: {e}")))?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(l.timeout_s))
            .connect_timeout(Duration::from_secs(l.timeout_s.min(10)))
            .build()
            .map_err(|e| LlmError::Config(format!("HTTP client: {e}")))?;
        Ok(OpenAiModel {
            client: Client::with_config(config)
                .with_http_client(http.clone())
                .with_http_service(super::transport::Transport::new(http)),
            model: l.model.clone(),
            temperature: l.temperature,
            timeout_s: l.timeout_s,
            max_tokens_field: l.max_tokens_field.clone(),
            stream: l.stream,
        })
    }

    fn body(&self, req: &ChatRequest) -> Value {
        let messages: Vec<Value> = req.messages.iter().map(message_json).collect();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            self.max_tokens_field.as_str(): req.max_completion_tokens,
            "temperature": self.temperature,
            "stream": false,
        });
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": wire_name(&t.name), "description": t.description, "parameters": t.parameters}}))
                .collect();
            body["tool_choice"] = json!("auto");
        }
        body
    }
}

fn message_json(m: &Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Tool => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
        Role::Assistant => {
            let mut v = json!({"role": "assistant", "content": m.content});
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": wire_name(&c.name), "arguments": echo_arguments(&c.arguments)}}))
                    .collect();
            }
            v
        }
    }
}

/// The arguments of an earlier call as they are sent back in the history. A call the model cut
/// off mid-JSON is sent back as `{}`: servers such as llama.cpp parse every call in the history
/// and refuse the whole request otherwise. The tool error already told the model what was wrong.
fn echo_arguments(args: &str) -> String {
    if serde_json::from_str::<Value>(args).is_ok() {
        args.to_string()
    } else {
        "{}".to_string()
    }
}

/// Reads a chat-completion reply tolerantly.
pub fn parse_reply(v: &Value) -> Result<ChatReply, LlmError> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| LlmError::Malformed(format!("no choices in the reply: {}", snippet(v))))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| LlmError::Malformed("the first choice has no message".into()))?;
    let content = msg
        .get("content")
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty());
    let mut tool_calls = vec![];
    if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
        for (i, c) in calls.iter().enumerate() {
            let f = c.get("function").unwrap_or(c);
            let Some(name) = f.get("name").and_then(Value::as_str) else {
                return Err(LlmError::Malformed(format!(
                    "tool call {i} has no function name"
                )));
            };
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "{}".into(),
                Some(other) => other.to_string(),
            };
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_{i}"));
            tool_calls.push(ToolCallRequest {
                id,
                name: tool_name(name),
                arguments,
            });
        }
    }
    let usage = v.get("usage").and_then(|u| {
        Some(Usage {
            prompt_tokens: u.get("prompt_tokens")?.as_u64()?,
            completion_tokens: u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            cached_tokens: cached_tokens(v),
        })
    });
    Ok(ChatReply {
        content,
        tool_calls,
        usage,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Prompt tokens the endpoint served from its cache, in the dialects that say so: OpenAI's and
/// vLLM's `usage.prompt_tokens_details.cached_tokens`, DeepSeek's `usage.prompt_cache_hit_tokens`,
/// llama.cpp's `timings.cache_n`.
fn cached_tokens(v: &Value) -> u64 {
    [
        &v["usage"]["prompt_tokens_details"]["cached_tokens"],
        &v["usage"]["prompt_cache_hit_tokens"],
        &v["timings"]["cache_n"],
    ]
    .into_iter()
    .find_map(Value::as_u64)
    .unwrap_or(0)
}

fn snippet(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

fn map_error(e: OpenAIError, timeout_s: u64) -> LlmError {
    match e {
        OpenAIError::ApiError(r) => {
            let status = r.status_code.as_u16();
            let message = r.api_error.message.clone();
            match status {
                429 => LlmError::RateLimited {
                    message,
                    retry_after: None,
                },
                500..=599 => LlmError::Server {
                    status,
                    message,
                    retry_after: None,
                },
                _ => LlmError::Refused { status, message },
            }
        }
        OpenAIError::Boxed(b) => match b.downcast::<Throttled>() {
            Ok(t) if t.status == 429 => LlmError::RateLimited {
                message: t.message,
                retry_after: Some(t.retry_after),
            },
            Ok(t) => LlmError::Server {
                status: t.status,
                message: t.message,
                retry_after: Some(t.retry_after),
            },
            Err(other) => LlmError::Unreachable(other.to_string()),
        },
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout(timeout_s),
        OpenAIError::Reqwest(e) => LlmError::Unreachable(e.to_string()),
        OpenAIError::JSONDeserialize(e, body) => LlmError::Malformed(format!(
            "{e}; body starts: {}",
            body.chars().take(120).collect::<String>()
        )),
        other => LlmError::Unreachable(other.to_string()),
    }
}

#[async_trait]
impl ChatModel for OpenAiModel {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn retries_itself(&self) -> bool {
        // One HTTP call per attempt: the agent's retry policy is the only one.
        false
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        let body = self.body(req);
        let reply: Value = self
            .client
            .chat()
            .create_byot(body)
            .await
            .map_err(|e| map_error(e, self.timeout_s))?;
        self.read(req, &reply)
    }

    async fn complete_streaming(
        &self,
        req: &ChatRequest,
        on_text: TextSink<'_>,
    ) -> Result<ChatReply, LlmError> {
        if !self.stream {
            return self.complete(req).await;
        }
        let mut body = self.body(req);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let mut chunks = self
            .client
            .chat()
            .create_stream_byot::<Value, Value>(body)
            .await
            .map_err(|e| map_error(e, self.timeout_s))?;
        let mut assembled = super::stream::Assembled::default();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| map_error(e, self.timeout_s))?;
            if let Some(text) = assembled.add(&chunk) {
                on_text(&text);
            }
            // A reply is a few thousand tokens at most: an endless one is abandoned, not kept.
            if assembled.len() > MAX_STREAMED {
                return Err(LlmError::Malformed(format!(
                    "the streamed reply passed {} KiB; abandoned",
                    MAX_STREAMED / 1024
                )));
            }
        }
        self.read(req, &assembled.reply())
    }
}

impl OpenAiModel {
    /// A whole reply, read tolerantly, with calls written as text read as calls.
    fn read(&self, req: &ChatRequest, reply: &Value) -> Result<ChatReply, LlmError> {
        let mut parsed = parse_reply(reply)?;
        // A server without a tool-call parser for its model hands the calls back as text.
        if parsed.tool_calls.is_empty()
            && let Some(text) = &parsed.content
        {
            let offered: Vec<String> = req.tools.iter().map(|t| t.name.clone()).collect();
            let cut_off = parsed.finish_reason.as_deref() == Some("length");
            if let Some(calls) = super::text_calls::parse(text, &offered, cut_off) {
                parsed.tool_calls = calls;
                parsed.content = None;
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_off_call_is_echoed_as_valid_json() {
        let m = Message::assistant(
            None,
            vec![ToolCallRequest {
                id: "a".into(),
                name: "host.use_snapshot".into(),
                arguments: "{\"top\": 1, \"window_ms\": 10".into(),
            }],
        );
        assert_eq!(
            message_json(&m)["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        let ok = Message::assistant(
            None,
            vec![ToolCallRequest {
                id: "b".into(),
                name: "x".into(),
                arguments: "{\"top\":1}".into(),
            }],
        );
        assert_eq!(
            message_json(&ok)["tool_calls"][0]["function"]["arguments"],
            "{\"top\":1}"
        );
    }

    #[test]
    fn tool_names_round_trip_through_the_wire_form() {
        assert_eq!(wire_name("host.use_snapshot"), "host__use_snapshot");
        assert_eq!(tool_name("host__use_snapshot"), "host.use_snapshot");
        assert_eq!(tool_name("board.propose"), "board.propose");
    }

    #[test]
    fn tolerant_reply_parsing() {
        // No `object`, no `type`, arguments as an object, no id: still read.
        let v = json!({"choices": [{"message": {"content": "", "tool_calls": [{"function": {"name": "host__use_snapshot", "arguments": {"top": 3}}}]}, "finish_reason": "tool_calls"}]});
        let r = parse_reply(&v).unwrap();
        assert_eq!(r.tool_calls[0].name, "host.use_snapshot");
        assert_eq!(r.tool_calls[0].arguments, r#"{"top":3}"#);
        assert_eq!(r.tool_calls[0].id, "call_0");
        assert_eq!(r.content, None);
        // Prompt-cache hits in each dialect.
        let with = |usage_extra: (&str, Value), top_extra: Option<(&str, Value)>| {
            let mut v = json!({"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": 900, "completion_tokens": 5}});
            v["usage"][usage_extra.0] = usage_extra.1;
            if let Some((k, x)) = top_extra {
                v[k] = x;
            }
            parse_reply(&v).unwrap().usage.unwrap().cached_tokens
        };
        let details = json!({"cached_tokens": 768});
        assert_eq!(with(("prompt_tokens_details", details), None), 768);
        assert_eq!(with(("prompt_cache_hit_tokens", json!(640)), None), 640);
        let timings = ("timings", json!({"cache_n": 512}));
        assert_eq!(with(("total_tokens", json!(905)), Some(timings)), 512);
        assert_eq!(with(("total_tokens", json!(905)), None), 0);
        assert!(matches!(
            parse_reply(&json!({"error": "x"})),
            Err(LlmError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(&json!({"choices": [{"message": {"tool_calls": [{"function": {}}]}}]})),
            Err(LlmError::Malformed(_))
        ));
    }
}
