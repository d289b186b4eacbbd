//! Token accounting with tiktoken: the model's encoding (from config, else from the model name,
//! else o200k_base), counts of texts and whole requests, and prices.
//!
//! Request counting follows OpenAI's published recipe for chat messages (3 tokens per message
//! plus its role and content, 3 to prime the reply); tool definitions are counted as their JSON.
//! Servers that report usage are believed over the estimate; the estimate is what budgets use
//! before a request is sent.

use super::{ChatRequest, LlmError};
use crate::config::LlmSettings;
use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::Tokenizer;

/// A tokenizer for one model.
pub struct TokenCounter {
    bpe: &'static CoreBPE,
    pub encoding: &'static str,
}

fn by_name(name: &str) -> Option<(Tokenizer, &'static str)> {
    Some(match name {
        "o200k_base" => (Tokenizer::O200kBase, "o200k_base"),
        "cl100k_base" => (Tokenizer::Cl100kBase, "cl100k_base"),
        "p50k_base" => (Tokenizer::P50kBase, "p50k_base"),
        "r50k_base" => (Tokenizer::R50kBase, "r50k_base"),
        _ => return None,
    })
}

fn label(t: Tokenizer) -> &'static str {
    match t {
        Tokenizer::O200kBase | Tokenizer::O200kHarmony => "o200k_base",
        Tokenizer::Cl100kBase => "cl100k_base",
        Tokenizer::P50kBase | Tokenizer::P50kEdit => "p50k_base",
        Tokenizer::R50kBase | Tokenizer::Gpt2 => "r50k_base",
    }
}

impl TokenCounter {
    /// The encoding named in config, else the model's, else o200k_base.
    pub fn for_settings(l: &LlmSettings) -> Result<TokenCounter, LlmError> {
        let (tok, name) = if l.encoding.trim().is_empty() {
            let t = tiktoken_rs::tokenizer::get_tokenizer(&l.model).unwrap_or(Tokenizer::O200kBase);
            (t, label(t))
        } else {
            by_name(l.encoding.trim()).ok_or_else(|| {
                LlmError::Config(format!(
                    "llm.encoding = {:?} is not known; use o200k_base, cl100k_base, p50k_base or r50k_base",
                    l.encoding
                ))
            })?
        };
        let bpe = tiktoken_rs::bpe_for_tokenizer(tok)
            .map_err(|e| LlmError::Config(format!("tokenizer {name}: {e}")))?;
        Ok(TokenCounter {
            bpe,
            encoding: name,
        })
    }

    /// Tokens in a text.
    pub fn count(&self, text: &str) -> usize {
        self.bpe.encode_with_special_tokens(text).len()
    }

    /// Estimated prompt tokens of a whole request.
    pub fn count_request(&self, req: &ChatRequest) -> usize {
        let mut n = 3; // reply priming
        for m in &req.messages {
            n += 4; // per-message overhead and role
            if let Some(c) = &m.content {
                n += self.count(c);
            }
            for c in &m.tool_calls {
                n += 3 + self.count(&c.name) + self.count(&c.arguments);
            }
        }
        if !req.tools.is_empty() {
            n += self.count(&serde_json::to_string(&req.tools).unwrap_or_default());
        }
        n
    }

    /// The first `max` tokens of a text, and whether it was cut.
    pub fn truncate(&self, text: &str, max: usize) -> (String, bool) {
        let toks = self.bpe.encode_with_special_tokens(text);
        if toks.len() <= max {
            return (text.to_string(), false);
        }
        let cut = self
            .bpe
            .decode(&toks[..max])
            .unwrap_or_else(|_| text.chars().take(max * 3).collect());
        (cut, true)
    }
}

/// Tokens of one model step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepTokens {
    pub step: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// `server` when the endpoint reported usage, `tiktoken` when oncall counted.
    pub counted_by: CountedBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountedBy {
    Server,
    Tiktoken,
}

/// Tokens of a whole investigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TokenReport {
    pub encoding: String,
    pub steps: Vec<StepTokens>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD, when prices are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl TokenReport {
    pub fn add(&mut self, s: StepTokens, l: &LlmSettings) {
        self.prompt_tokens += s.prompt_tokens;
        self.completion_tokens += s.completion_tokens;
        self.steps.push(s);
        if l.price_prompt_per_mtok > 0.0 || l.price_completion_per_mtok > 0.0 {
            let c = self.prompt_tokens as f64 / 1e6 * l.price_prompt_per_mtok
                + self.completion_tokens as f64 / 1e6 * l.price_completion_per_mtok;
            self.cost_usd = Some((c * 1e6).round() / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Message, ToolDef};

    fn counter(encoding: &str) -> TokenCounter {
        let l = LlmSettings {
            encoding: encoding.into(),
            ..LlmSettings::default()
        };
        TokenCounter::for_settings(&l).unwrap()
    }

    /// Known counts from OpenAI's tiktoken for these texts.
    #[test]
    fn counts_match_tiktoken_on_known_texts() {
        let c = counter("cl100k_base");
        assert_eq!(c.count("hello world"), 2);
        assert_eq!(c.count("tiktoken is great!"), 6);
        let o = counter("o200k_base");
        assert_eq!(o.count("hello world"), 2);
        assert_eq!(o.count(""), 0);
    }

    #[test]
    fn encoding_follows_the_model_unless_configured() {
        let l = LlmSettings {
            model: "gpt-4".into(),
            ..LlmSettings::default()
        };
        assert_eq!(
            TokenCounter::for_settings(&l).unwrap().encoding,
            "cl100k_base"
        );
        let l = LlmSettings {
            model: "some-local-gguf".into(),
            ..LlmSettings::default()
        };
        assert_eq!(
            TokenCounter::for_settings(&l).unwrap().encoding,
            "o200k_base"
        );
        let l = LlmSettings {
            encoding: "bogus".into(),
            ..LlmSettings::default()
        };
        assert!(TokenCounter::for_settings(&l).is_err());
    }

    #[test]
    fn request_count_covers_messages_and_tools() {
        let c = counter("cl100k_base");
        let bare = ChatRequest {
            messages: vec![Message::user("hello world")],
            tools: vec![],
            max_completion_tokens: 10,
        };
        assert_eq!(c.count_request(&bare), 3 + 4 + 2);
        let with_tools = ChatRequest {
            tools: vec![ToolDef {
                name: "host.use_snapshot".into(),
                description: "x".into(),
                parameters: serde_json::json!({}),
            }],
            ..bare.clone()
        };
        assert!(c.count_request(&with_tools) > c.count_request(&bare));
    }

    #[test]
    fn truncation_and_cost() {
        let c = counter("o200k_base");
        let (t, cut) = c.truncate("one two three four five six", 3);
        assert!(cut && c.count(&t) <= 3);
        let l = LlmSettings {
            price_prompt_per_mtok: 2.0,
            price_completion_per_mtok: 8.0,
            ..LlmSettings::default()
        };
        let mut r = TokenReport::default();
        r.add(
            StepTokens {
                step: 1,
                prompt_tokens: 1_000_000,
                completion_tokens: 500_000,
                counted_by: CountedBy::Server,
            },
            &l,
        );
        assert_eq!(r.cost_usd, Some(6.0));
    }
}
