//! TEST DOUBLE: `ScriptedLlm` is a scripted OpenAI-compatible HTTP server inside a test (a paid
//! model cannot run here). It answers `POST /v1/chat/completions` with the next scripted reply
//! (or status, or delay) and records every request, so a test can check what the loop sent.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer of the test double.
#[derive(Clone)]
pub enum Scripted {
    Reply(Value),
    /// An error status with `Retry-After: 0`.
    Status(u16, Value),
    /// An error status with this `Retry-After` value.
    StatusAfter(u16, &'static str, Value),
    Delay(Duration, Value),
}

#[derive(Default)]
pub struct Script {
    pub queue: Mutex<VecDeque<Scripted>>,
    /// When the queue is empty: answer this status forever (a storm), or a plain final answer.
    pub forever: Mutex<Option<u16>>,
    pub seen: Mutex<Vec<Value>>,
    /// When each request arrived.
    pub at: Mutex<Vec<std::time::Instant>>,
}

/// A reply as a stream of chat-completion chunks (server-sent events): the text in pieces of
/// 7 characters (at most 100 pieces), each tool call's arguments in two pieces, the finish reason, then the usage.
fn streamed(v: &Value) -> Response {
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut chunks =
        vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})];
    let text: Vec<char> = msg["content"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .collect();
    for piece in text.chunks(7.max(text.len() / 100)) {
        let piece: String = piece.iter().collect();
        chunks.push(json!({"choices": [{"index": 0, "delta": {"content": piece}}]}));
    }
    for (i, c) in msg["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let args = c["function"]["arguments"].as_str().unwrap_or_default();
        let (a, b) = args.split_at(args.len() / 2);
        chunks.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": a}}]}}]}));
        chunks.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": b}}]}}]}));
    }
    chunks.push(
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}),
    );
    chunks.push(json!({"choices": [], "usage": v["usage"]}));
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], body).into_response()
}

async fn chat(State(s): State<Arc<Script>>, Json(body): Json<Value>) -> Response {
    let stream = body["stream"] == true;
    let reply = |v: Value| {
        if stream {
            streamed(&v)
        } else {
            Json(v).into_response()
        }
    };
    s.seen.lock().unwrap().push(body);
    s.at.lock().unwrap().push(std::time::Instant::now());
    let next = s.queue.lock().unwrap().pop_front();
    match next {
        Some(Scripted::Reply(v)) => reply(v),
        Some(Scripted::Status(code, v)) => {
            let mut r = (StatusCode::from_u16(code).unwrap(), Json(v)).into_response();
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
            r
        }
        Some(Scripted::StatusAfter(code, after, v)) => {
            let mut r = (StatusCode::from_u16(code).unwrap(), Json(v)).into_response();
            r.headers_mut()
                .insert("retry-after", after.parse().unwrap());
            r
        }
        Some(Scripted::Delay(d, v)) => {
            tokio::time::sleep(d).await;
            reply(v)
        }
        None => match *s.forever.lock().unwrap() {
            Some(code) => (
                StatusCode::from_u16(code).unwrap(),
                Json(json!({"error": {"message": "storm", "type": "server_error"}})),
            )
                .into_response(),
            None => reply(text_turn("Done.")),
        },
    }
}

pub struct ScriptedLlm {
    pub script: Arc<Script>,
    pub base_url: String,
}

impl ScriptedLlm {
    pub async fn start(turns: Vec<Scripted>) -> ScriptedLlm {
        let script = Arc::new(Script {
            queue: Mutex::new(turns.into()),
            ..Default::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ScriptedLlm {
            script,
            base_url: format!("http://{addr}/v1"),
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.script.seen.lock().unwrap().clone()
    }

    /// The tool messages of the n-th request.
    pub fn tool_messages(&self, n: usize) -> Vec<String> {
        self.requests()[n]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// A model turn that calls tools (names in dotted form; sent in the wire form).
pub fn tool_turn(calls: &[(&str, &str)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| json!({"id": format!("call_{i}_{name}"), "type": "function", "function": {"name": name.replace('.', "__"), "arguments": args}}))
        .collect();
    json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020}
    })
}

pub fn text_turn(text: &str) -> Value {
    json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 30, "total_tokens": 1230}
    })
}

/// Settings that drive the model loop against the double at `base_url` (no API key, short
/// timeouts, three attempts).
pub fn model_config(base_url: &str) -> oncall::config::Config {
    let mut c = oncall::config::Config::default();
    c.host.window_ms = 100;
    c.llm.provider = oncall::config::Provider::Openai;
    c.llm.base_url = base_url.to_string();
    c.llm.model = "scripted".into();
    c.llm.api_key_env = "ONCALL_TEST_NO_KEY".into();
    c.llm.timeout_s = 2;
    c.llm.deadline_s = 20;
    c.llm.max_attempts = 3;
    c
}
