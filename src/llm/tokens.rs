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
    /// Prompt tokens the endpoint served from its prompt cache, where it reports them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_prompt_tokens: u64,
    /// `server` when the endpoint reported usage, `tiktoken` when oncall counted.
    pub counted_by: CountedBy,
    /// HTTP calls this step made (failed attempts included); 0 for the offline reasoner.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calls: u32,
    /// Milliseconds this step waited for its reasoner, retries and backoff included.
    #[serde(default)]
    pub ms: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountedBy {
    Server,
    Tiktoken,
}

/// What one investigation cost: the tokens of every step, the model's HTTP calls, the time spent
/// waiting for it, the whole run's wall time and, where prices are configured, the money.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TokenReport {
    pub encoding: String,
    pub steps: Vec<StepTokens>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the endpoint's prompt cache (where the endpoint reports them).
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// HTTP calls to the model endpoint, failed attempts included (the offline reasoner makes none).
    #[serde(default)]
    pub model_calls: u32,
    /// Of those, the ones that failed (timeouts, 429, 5xx, malformed replies).
    #[serde(default)]
    pub failed_calls: u32,
    /// Milliseconds spent waiting for the model endpoint, retries and backoff included.
    #[serde(default)]
    pub model_ms: u64,
    /// Milliseconds the whole investigation took, tools included.
    #[serde(default)]
    pub wall_ms: u64,
    /// USD, when prices are configured; only the endpoint's tokens are priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl TokenReport {
    /// Adds a step that reached its reasoner; `calls` and `failed` count the HTTP calls it took.
    pub fn add(&mut self, s: StepTokens, l: &LlmSettings) {
        self.prompt_tokens += s.prompt_tokens;
        self.completion_tokens += s.completion_tokens;
        self.cached_prompt_tokens += s.cached_prompt_tokens;
        self.steps.push(s);
        self.price(l);
    }

    /// Counts HTTP calls to the model endpoint and the time they took (called for every step,
    /// the ones that failed for good included).
    pub fn calls(&mut self, calls: u32, failed: u32, ms: u64) {
        self.model_calls += calls;
        self.failed_calls += failed;
        self.model_ms += ms;
    }

    fn price(&mut self, l: &LlmSettings) {
        if l.price_prompt_per_mtok <= 0.0 && l.price_completion_per_mtok <= 0.0 {
            return;
        }
        // Only the endpoint's steps are billed (the offline reasoner's make no calls).
        let billed = self.steps.iter().filter(|s| s.calls > 0);
        let (mut prompt, mut cached, mut completion) = (0, 0, 0);
        for s in billed {
            prompt += s.prompt_tokens;
            cached += s.cached_prompt_tokens.min(s.prompt_tokens);
            completion += s.completion_tokens;
        }
        let cached_price = if l.price_cached_prompt_per_mtok > 0.0 {
            l.price_cached_prompt_per_mtok
        } else {
            l.price_prompt_per_mtok
        };
        let c = (prompt - cached) as f64 / 1e6 * l.price_prompt_per_mtok
            + cached as f64 / 1e6 * cached_price
            + completion as f64 / 1e6 * l.price_completion_per_mtok;
        self.cost_usd = Some((c * 1e6).round() / 1e6);
    }

    /// One line for people: calls, tokens, cache, cost and time.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} prompt + {} completion tokens",
            thousands(self.prompt_tokens),
            thousands(self.completion_tokens)
        );
        if self.cached_prompt_tokens > 0 {
            s += &format!(" ({} cached)", thousands(self.cached_prompt_tokens));
        }
        if self.model_calls > 0 {
            s += &format!(", {} model call(s)", self.model_calls);
            if self.failed_calls > 0 {
                s += &format!(" ({} failed)", self.failed_calls);
            }
            s += &format!(" taking {:.1} s", self.model_ms as f64 / 1000.0);
        }
        if let Some(c) = self.cost_usd {
            s += &format!(", ${c:.4}");
        }
        if self.wall_ms > 0 {
            s += &format!(", {:.1} s in all", self.wall_ms as f64 / 1000.0);
        }
        s
    }
}

/// 12345 -> "12,345".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
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
        let step = StepTokens {
            step: 1,
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            cached_prompt_tokens: 0,
            counted_by: CountedBy::Server,
            calls: 1,
            ms: 900,
        };
        r.add(step, &l);
        r.calls(1, 0, 900);
        assert_eq!(r.cost_usd, Some(6.0));
        // The offline reasoner's steps (no HTTP calls) are counted but cost nothing.
        r.add(StepTokens { calls: 0, ..step }, &l);
        assert_eq!(r.cost_usd, Some(6.0));
        assert_eq!(r.prompt_tokens, 2_000_000);
        // Cached prompt tokens at their own price, when one is set.
        let l = LlmSettings {
            price_cached_prompt_per_mtok: 0.5,
            ..l
        };
        let mut r = TokenReport::default();
        r.add(
            StepTokens {
                cached_prompt_tokens: 600_000,
                ..step
            },
            &l,
        );
        r.calls(3, 2, 4_100);
        r.wall_ms = 5_300;
        assert_eq!(
            r.cost_usd,
            Some(5.1),
            "0.4 M at 2, 0.6 M cached at 0.5, 0.5 M at 8"
        );
        assert_eq!(
            r.summary(),
            "1,000,000 prompt + 500,000 completion tokens (600,000 cached), 3 model call(s) (2 failed) taking 4.1 s, $5.1000, 5.3 s in all"
        );
    }
}
