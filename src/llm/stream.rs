//! A streamed chat completion put back together: the text deltas in order, each tool call's
//! name and argument pieces by their index, the finish reason, and the usage (and llama.cpp's
//! timings) from the last chunks. The result has the shape of a non-streamed reply, so one
//! reader ([`super::openai::parse_reply`]) serves both.

use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Default)]
struct Call {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// The chunks seen so far.
#[derive(Default)]
pub struct Assembled {
    content: String,
    calls: BTreeMap<u64, Call>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    timings: Option<Value>,
}

impl Assembled {
    /// Takes one chunk; returns the text it added, if any.
    pub fn add(&mut self, chunk: &Value) -> Option<String> {
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        if let Some(t) = chunk.get("timings").filter(|t| t.is_object()) {
            self.timings = Some(t.clone());
        }
        let choice = chunk.get("choices")?.get(0)?;
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_string());
        }
        let delta = choice.get("delta")?;
        for (n, piece) in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = piece
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(n as u64);
            let call = self.calls.entry(index).or_default();
            if let Some(id) = piece.get("id").and_then(Value::as_str) {
                call.id = Some(id.to_string());
            }
            let f = &piece["function"];
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                call.name.push_str(name);
            }
            if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                call.arguments.push_str(args);
            }
        }
        let text = delta.get("content").and_then(Value::as_str)?;
        if text.is_empty() {
            return None;
        }
        self.content.push_str(text);
        Some(text.to_string())
    }

    /// Bytes of text and tool-call arguments so far.
    pub fn len(&self) -> usize {
        self.content.len()
            + self
                .calls
                .values()
                .map(|c| c.name.len() + c.arguments.len())
                .sum::<usize>()
    }

    /// Whether nothing has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole reply, shaped as a non-streamed one.
    pub fn reply(self) -> Value {
        let calls: Vec<Value> = self
            .calls
            .into_values()
            .map(|c| {
                let mut v = json!({"type": "function", "function": {"name": c.name, "arguments": c.arguments}});
                if let Some(id) = c.id {
                    v["id"] = json!(id);
                }
                v
            })
            .collect();
        let mut message = json!({"role": "assistant", "content": self.content});
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        let mut v = json!({"choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}]});
        if let Some(u) = self.usage {
            v["usage"] = u;
        }
        if let Some(t) = self.timings {
            v["timings"] = t;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_tool_calls_are_put_back_together() {
        let mut a = Assembled::default();
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Measuring "}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "first."}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "host__use", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "_snapshot", "arguments": "{\"top\":"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "traces__red", "arguments": "{}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 3}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 512}}}),
        ];
        let texts: Vec<String> = chunks.iter().filter_map(|c| a.add(c)).collect();
        assert_eq!(texts, ["Measuring ", "first."]);
        let r = super::super::openai::parse_reply(&a.reply()).unwrap();
        assert_eq!(r.content.as_deref(), Some("Measuring first."));
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(r.tool_calls[0].id, "call_a");
        assert_eq!(r.tool_calls[0].name, "host.use_snapshot");
        assert_eq!(r.tool_calls[0].arguments, "{\"top\": 3}");
        assert_eq!(r.tool_calls[1].name, "traces.red");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        let u = r.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.cached_tokens), (900, 512));
    }
}
