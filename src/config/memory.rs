//! `[memory]`: incident memory, its embedder and where its vectors are kept.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which embedder turns an incident into a vector.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmbedderKind {
    /// Hashed word and character n-grams with TF-IDF weights: no network, no model download.
    #[default]
    Hashed,
    /// all-MiniLM-L6-v2 run locally by candle (cargo feature `minilm`; weights fetched by
    /// `scripts/fetch-minilm.sh`).
    Minilm,
    /// The OpenAI-compatible `/v1/embeddings` endpoint of `[llm]` (or `[memory] base_url`).
    Openai,
}

/// Where the vectors are kept and searched.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MemoryBackend {
    /// An exact in-process index, persisted in the incident store (the embedded default).
    #[default]
    Exact,
    /// A Qdrant server or cluster through qdrant-client (cargo feature `qdrant`).
    Qdrant,
}

/// Incident memory settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    pub embedder: EmbedderKind,
    pub backend: MemoryBackend,
    /// Dimensions of the hashed embedder (a power of two).
    pub hashed_dims: usize,
    /// Directory holding all-MiniLM-L6-v2's `model.safetensors`, `config.json` and `tokenizer.json`.
    pub minilm_dir: PathBuf,
    /// Embeddings endpoint base URL; empty: `[llm] base_url`.
    pub base_url: String,
    /// Embedding model for the `openai` embedder.
    pub model: String,
    /// Variable holding the embeddings API key; empty: `[llm] api_key_env`.
    pub api_key_env: String,
    /// Seconds one embeddings request may take.
    pub timeout_s: u64,
    /// Qdrant's gRPC URL, e.g. `http://127.0.0.1:6334`.
    pub qdrant_url: String,
    /// Variable holding Qdrant's API key (may be unset).
    pub qdrant_api_key_env: String,
    /// Qdrant collection; the embedder's name is appended (one collection per embedder).
    pub collection: String,
    /// Past incidents scoring below this cosine similarity are not shown as similar.
    pub min_score: f32,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            embedder: EmbedderKind::Hashed,
            backend: MemoryBackend::Exact,
            hashed_dims: 4096,
            minilm_dir: PathBuf::from("models/all-MiniLM-L6-v2"),
            base_url: String::new(),
            model: "text-embedding-3-small".into(),
            api_key_env: String::new(),
            timeout_s: 20,
            qdrant_url: "http://127.0.0.1:6334".into(),
            qdrant_api_key_env: "QDRANT_API_KEY".into(),
            collection: "oncall_incidents".into(),
            min_score: 0.2,
        }
    }
}
