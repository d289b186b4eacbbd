//! Tool calls written as text. An OpenAI-compatible server without a tool-call parser for its
//! model (llama.cpp or Ollama with a generic template, vLLM without `--tool-call-parser`) hands
//! back the model's calls as plain content: Hermes-style `<tool_call>{...}</tool_call>` blocks,
//! a bare `{"name": ..., "arguments": {...}}` object, one per line, or inside a JSON code fence.
//!
//! They are read as calls only while tools are offered, and only when the whole text is calls:
//! objects with a `name` and `arguments` (or `parameters`), or naming an offered tool. Anything
//! else stays the model's text. The agent then checks each call like any other: a name that is
//! no tool goes back to the model as an unknown-tool error, so a small model that invents a
//! tool hears which ones exist instead of ending the investigation with a call as its answer.

use super::ToolCallRequest;
use serde_json::Value;

/// The calls in `text`, if it is nothing but calls to the `offered` tools (dotted or wire names).
/// `cut_off`: the reply hit its token limit, so a last line that is the start of a call is kept
/// as a call with its cut arguments, for the agent to explain.
pub fn parse(text: &str, offered: &[String], cut_off: bool) -> Option<Vec<ToolCallRequest>> {
    if offered.is_empty() {
        return None;
    }
    let mut objects = vec![];
    let body = strip_fence(text.trim());
    if body.contains("<tool_call>") {
        for block in body.split("<tool_call>").skip(1) {
            let inner = block.split("</tool_call>").next().unwrap_or(block);
            objects.push(serde_json::from_str::<Value>(strip_fence(inner.trim())).ok()?);
        }
    } else if let Ok(v) = serde_json::from_str::<Value>(body) {
        match v {
            Value::Array(items) => objects.extend(items),
            v => objects.push(v),
        }
    } else {
        // One object per line (a model calling several tools in one turn).
        let lines: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => objects.push(v),
                Err(_) if cut_off && i + 1 == lines.len() && i > 0 => {
                    objects.push(cut_call(line)?);
                }
                Err(_) => return None,
            }
        }
    }
    if objects.is_empty() {
        return None;
    }
    let mut calls = vec![];
    for (i, o) in objects.iter().enumerate() {
        let f = o.get("function").unwrap_or(o);
        let wire = f.get("name")?.as_str()?;
        let name = super::openai::tool_name(wire);
        let shaped = f.get("arguments").or_else(|| f.get("parameters")).is_some();
        if !shaped && !offered.contains(&name) {
            return None;
        }
        let arguments = match f.get("arguments").or_else(|| f.get("parameters")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "{}".to_string(),
            Some(other) => other.to_string(),
        };
        calls.push(ToolCallRequest {
            id: format!("text_call_{i}"),
            name,
            arguments,
        });
    }
    Some(calls)
}

/// The start of a call cut off at the token limit: its name, and its arguments as far as they
/// got (not JSON, so the agent answers that the call was cut off).
fn cut_call(line: &str) -> Option<Value> {
    let after = line.split_once("\"name\"")?.1;
    let name = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?
        .split('"')
        .next()?;
    let arguments = line
        .split_once("\"arguments\"")
        .map(|(_, a)| a.trim_start().trim_start_matches(':').trim())
        .unwrap_or("{");
    Some(serde_json::json!({"name": name, "arguments": arguments}))
}

/// The inside of a ```json ... ``` fence, or the text itself.
fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> Vec<String> {
        vec!["host.use_snapshot".into(), "board.propose".into()]
    }

    fn names(c: Option<Vec<ToolCallRequest>>) -> Vec<(String, String)> {
        c.unwrap_or_default()
            .into_iter()
            .map(|c| (c.name, c.arguments))
            .collect()
    }

    #[test]
    fn the_shapes_models_write_calls_in() {
        let one = vec![("host.use_snapshot".to_string(), r#"{"top":3}"#.to_string())];
        for text in [
            r#"{"name": "host__use_snapshot", "arguments": {"top": 3}}"#,
            "```json\n{\"name\": \"host__use_snapshot\", \"arguments\": {\"top\": 3}}\n```",
            "<tool_call>\n{\"name\": \"host__use_snapshot\", \"arguments\": {\"top\": 3}}\n</tool_call>",
            r#"{"name": "host.use_snapshot", "parameters": {"top": 3}}"#,
            r#"{"function": {"name": "host__use_snapshot", "arguments": "{\"top\":3}"}}"#,
        ] {
            assert_eq!(names(parse(text, &offered(), false)), one, "{text}");
        }
        let two = "{\"name\": \"host__use_snapshot\", \"arguments\": {}}\n{\"name\": \"board__propose\", \"arguments\": {\"statement\": \"x\"}}";
        let calls = parse(two, &offered(), false).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].name, "board.propose");
        assert_ne!(calls[0].id, calls[1].id);
    }

    #[test]
    fn prose_unknown_tools_and_withdrawn_tools_stay_text() {
        for text in [
            "The CPU is saturated by the worker pool.",
            r#"{"name": "Ada", "role": "sre"}"#,
            r#"{"summary": "cpu"}"#,
            "{\"name\": \"host__use_snapshot\", \"arguments\": {}}\nand then I will look at disks",
        ] {
            assert!(parse(text, &offered(), false).is_none(), "{text}");
        }
        let call = r#"{"name": "host__use_snapshot", "arguments": {}}"#;
        assert!(
            parse(call, &[], false).is_none(),
            "no tools offered: an answer"
        );
        // A call-shaped object naming no tool is still a call: the agent answers it with an
        // unknown-tool error (and a live action would still need its approval).
        let invented = r#"{"name": "search_api_slow", "arguments": {"window_ms": 1000}}"#;
        assert_eq!(
            parse(invented, &offered(), false).unwrap()[0].name,
            "search_api_slow"
        );
    }

    #[test]
    fn a_reply_cut_at_the_token_limit_keeps_its_last_call_as_cut() {
        let text = "{\"name\": \"host__use_snapshot\", \"arguments\": {}}\n{\"name\": \"board__propose\", \"arguments\": {\"statement\": \"CPU satu";
        let calls = parse(text, &offered(), true).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].name, "board.propose");
        assert!(serde_json::from_str::<Value>(&calls[1].arguments).is_err());
        assert!(calls[1].arguments.starts_with("{\"statement\""));
        // Not cut off: a broken line is text, not a call.
        assert!(parse(text, &offered(), false).is_none());
    }
}
