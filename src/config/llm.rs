//! `[llm]`: which reasoner drives an investigation, and how oncall talks to a model.

use serde::{Deserialize, Serialize};

/// Which model drives an investigation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// `openai` when `base_url` is set, else `offline`.
    Auto,
    /// The built-in reasoner: rules over the same tools, no network.
    Offline,
    /// Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server).
    Openai,
    /// Recorded model turns from `replay_file` (tests, eval).
    Replay,
}

/// How tool outputs reach the model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceMode {
    /// Compacted to the signals that matter, capped in tokens (the default).
    Compact,
    /// The unabridged output, still capped: the baseline that compact evidence is measured against.
    Raw,
}

/// Model settings. The API key is never stored here: `api_key_env` names the variable holding it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub provider: Provider,
    /// Base URL of the OpenAI-compatible API, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8080/v1` for llama.cpp's server.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable that holds the API key (may be unset for local servers).
    pub api_key_env: String,
    /// Extra HTTP headers sent with every request (e.g. an organization or a gateway key name).
    pub extra_headers: std::collections::BTreeMap<String, String>,
    /// Seconds one model request may take before it is abandoned and retried.
    pub timeout_s: u64,
    /// Seconds all attempts at one step may take together, retries and backoff included.
    pub deadline_s: u64,
    /// Seconds the model may take over one whole investigation, all steps together; then the
    /// offline reasoner finishes it, and the log says so.
    pub investigation_deadline_s: u64,
    /// Attempts per step before the endpoint counts as unavailable.
    pub max_attempts: u32,
    /// Model turns with tools; after this the tools are withdrawn and the model must answer.
    pub max_steps: u32,
    /// Completion tokens the model may write per turn.
    pub max_completion_tokens: u32,
    /// The model's context window in tokens; evidence caps and history compaction scale with it.
    pub context_window: u32,
    /// tiktoken encoding (`o200k_base`, `cl100k_base`); empty: derived from `model`, else o200k_base.
    pub encoding: String,
    /// USD per million prompt tokens (0: cost not shown).
    pub price_prompt_per_mtok: f64,
    /// USD per million completion tokens.
    pub price_completion_per_mtok: f64,
    /// USD per million prompt tokens served from the provider's prompt cache (0: priced as
    /// prompt tokens).
    pub price_cached_prompt_per_mtok: f64,
    /// Directory with prompt templates; missing files fall back to the compiled-in copies.
    pub prompts_dir: std::path::PathBuf,
    /// Recorded turns for the replay provider.
    pub replay_file: std::path::PathBuf,
    pub evidence: EvidenceMode,
    pub temperature: f32,
    /// Stream the model's replies, so its text reaches the event stream (the web page, API
    /// clients) as it is written; for endpoints that support `"stream": true`.
    pub stream: bool,
    /// The request field for the completion limit: `max_tokens` (widest support: llama.cpp,
    /// vLLM, Ollama, older OpenAI models) or `max_completion_tokens` (OpenAI's reasoning models).
    pub max_tokens_field: String,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            provider: Provider::Auto,
            base_url: String::new(),
            model: "gpt-4o-mini".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            extra_headers: Default::default(),
            timeout_s: 60,
            deadline_s: 180,
            investigation_deadline_s: 300,
            max_attempts: 3,
            max_steps: 8,
            max_completion_tokens: 1024,
            context_window: 128_000,
            encoding: String::new(),
            price_prompt_per_mtok: 0.0,
            price_completion_per_mtok: 0.0,
            price_cached_prompt_per_mtok: 0.0,
            prompts_dir: std::path::PathBuf::from("prompts"),
            replay_file: std::path::PathBuf::new(),
            evidence: EvidenceMode::Compact,
            temperature: 0.0,
            stream: false,
            max_tokens_field: "max_tokens".into(),
        }
    }
}

impl LlmSettings {
    /// The provider after resolving `auto`.
    pub fn effective_provider(&self) -> Provider {
        match self.provider {
            Provider::Auto if self.base_url.trim().is_empty() => Provider::Offline,
            Provider::Auto => Provider::Openai,
            p => p,
        }
    }
}
