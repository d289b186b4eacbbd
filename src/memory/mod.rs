//! Incident memory: every resolved incident is embedded and kept, and a new incident is shown the
//! past incidents that looked like it, with their cause and what fixed them.
//!
//! - [`doc`]: what is remembered of an incident (report, confirmed cause, evidence, remediation).
//! - [`embed`]: text to vectors: hashed n-grams with TF-IDF (default, offline), the
//!   OpenAI-compatible `/v1/embeddings` endpoint, or all-MiniLM-L6-v2 (feature `minilm`).
//! - [`exact`]: the embedded default index: exact cosine search in process.
//! - `qdrant` (feature `qdrant`): the same search in a Qdrant server or cluster.
//! - [`tool`]: `memory.similar`, the tool the agent calls early in an investigation.
//! - recall@k of each embedder over the eval suite lives with the eval: `crate::eval::recall`.
//!
//! The incident store is the record: each remembered incident is a row (document and vector,
//! per embedder) in the same SQLite file or PostgreSQL database as the incidents, so memory
//! survives restarts and a changed embedder re-embeds the stored documents.

pub mod doc;
pub mod embed;
pub mod exact;
#[cfg(feature = "minilm")]
pub mod minilm;
#[cfg(feature = "qdrant")]
pub mod qdrant;
pub mod tool;

pub use doc::Doc;
pub use embed::{Embedder, Hashed, Weighting};

use crate::config::{Config, EmbedderKind, MemoryBackend};
use crate::incidents::{MemoryRow, Store};
use async_trait::async_trait;
use serde::Serialize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Why memory could not remember or answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum MemoryError {
    #[error("memory is misconfigured: {0}")]
    Config(String),
    #[error("embedding failed: {0}")]
    Embed(String),
    #[error("the incident store failed: {0}")]
    Store(String),
    #[error("the vector index failed: {0}")]
    Index(String),
}

/// One similar past incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub incident: String,
    /// Cosine similarity, 1 = the same text.
    pub score: f32,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub cause: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// What fixed it (actions run and their effect), or what was proposed.
    pub fixed_by: Vec<String>,
    pub resolved_at: chrono::DateTime<chrono::Utc>,
}

impl Hit {
    fn of(doc: &Doc, score: f32) -> Hit {
        Hit {
            incident: doc.incident.clone(),
            score: (score * 1000.0).round() / 1000.0,
            title: doc.title.clone(),
            category: doc.category.clone(),
            component: doc.component.clone(),
            cause: doc.cause.clone(),
            evidence: doc.evidence.iter().take(3).cloned().collect(),
            fixed_by: doc.remediation.iter().take(3).cloned().collect(),
            resolved_at: doc.resolved_at,
        }
    }
}

/// Where vectors are searched. `weights`, when given, scale each dimension of both sides
/// (the IDF of count vectors) before the cosine.
#[async_trait]
#[allow(clippy::len_without_is_empty)] // an async count; emptiness is `len() == 0`
pub trait Index: Send + Sync {
    fn name(&self) -> String;
    async fn put(&self, doc: &Doc, vector: &[f32]) -> Result<(), MemoryError>;
    async fn search(
        &self,
        query: &[f32],
        weights: Option<Arc<Vec<f32>>>,
        k: usize,
    ) -> Result<Vec<(Doc, f32)>, MemoryError>;
    async fn len(&self) -> Result<usize, MemoryError>;
}

/// Document frequencies per dimension, for the IDF of count vectors.
#[derive(Debug, Default)]
struct Idf {
    docs: usize,
    df: Vec<u32>,
    /// `ln((1 + N) / (1 + df)) + 1` per dimension, recomputed after each change.
    weights: Option<Arc<Vec<f32>>>,
}

impl Idf {
    fn add(&mut self, v: &[f32]) {
        if self.df.len() < v.len() {
            self.df.resize(v.len(), 0);
        }
        for (i, x) in v.iter().enumerate() {
            if *x != 0.0 {
                self.df[i] += 1;
            }
        }
        self.docs += 1;
        let n = self.docs as f32;
        self.weights = Some(Arc::new(
            self.df.iter().map(|d| idf_weight(n, *d as f32)).collect(),
        ));
    }
}

/// The inverse document frequency of a dimension non-zero in `df` of `docs` vectors.
fn idf_weight(docs: f32, df: f32) -> f32 {
    ((1.0 + docs) / (1.0 + df)).ln() + 1.0
}

/// The IDF weights of a set of count vectors, as memory computes them incrementally (tests and
/// other indexes compare against it).
pub fn idf_weights(vectors: &[Vec<f32>]) -> Vec<f32> {
    let dims = vectors.first().map(Vec::len).unwrap_or(0);
    let n = vectors.len() as f32;
    (0..dims)
        .map(|i| {
            let df = vectors
                .iter()
                .filter(|v| v.get(i).is_some_and(|x| *x != 0.0))
                .count();
            idf_weight(n, df as f32)
        })
        .collect()
}

/// Incident memory: an embedder, an index, and the store that keeps the record.
pub struct Memory {
    embedder: Arc<dyn Embedder>,
    index: Box<dyn Index>,
    store: Option<Arc<dyn Store>>,
    idf: RwLock<Idf>,
    min_score: f32,
}

/// The embedder `[memory] embedder` names.
pub fn embedder(config: &Config) -> Result<Arc<dyn Embedder>, MemoryError> {
    let m = &config.memory;
    match m.embedder {
        EmbedderKind::Hashed => Ok(Arc::new(Hashed::new(m.hashed_dims))),
        EmbedderKind::Openai => {
            let base = if m.base_url.is_empty() {
                &config.llm.base_url
            } else {
                &m.base_url
            };
            let key = if m.api_key_env.is_empty() {
                &config.llm.api_key_env
            } else {
                &m.api_key_env
            };
            Ok(Arc::new(embed::OpenAiEmbedder::new(
                base,
                &m.model,
                key,
                Duration::from_secs(m.timeout_s.max(1)),
            )?))
        }
        #[cfg(feature = "minilm")]
        EmbedderKind::Minilm => Ok(Arc::new(minilm::Minilm::load(&m.minilm_dir)?)),
        #[cfg(not(feature = "minilm"))]
        EmbedderKind::Minilm => Err(MemoryError::Config(
            "[memory] embedder = \"minilm\" needs a build with the `minilm` feature: \
             `scripts/fetch-minilm.sh && cargo build --release --features minilm`"
                .into(),
        )),
    }
}

impl Memory {
    /// Memory held in this process only (CLI runs without a store, the recall evaluation).
    pub fn in_process(embedder: Arc<dyn Embedder>, min_score: f32) -> Memory {
        let weighting = embedder.weighting();
        Memory {
            embedder,
            index: Box::new(exact::Exact::new(weighting)),
            store: None,
            idf: Default::default(),
            min_score,
        }
    }

    /// Memory as `[memory]` configures it, kept in `store`: loads the remembered incidents of
    /// the configured embedder and embeds those only remembered under another one.
    pub async fn open(config: &Config, store: Arc<dyn Store>) -> Result<Memory, MemoryError> {
        let embedder = embedder(config)?;
        let index: Box<dyn Index> = match config.memory.backend {
            MemoryBackend::Exact => Box::new(exact::Exact::new(embedder.weighting())),
            #[cfg(feature = "qdrant")]
            MemoryBackend::Qdrant => Box::new(
                qdrant::QdrantIndex::connect(
                    &config.memory,
                    &embedder.name(),
                    embedder.weighting(),
                )
                .await?,
            ),
            #[cfg(not(feature = "qdrant"))]
            MemoryBackend::Qdrant => {
                return Err(MemoryError::Config(
                    "[memory] backend = \"qdrant\" needs a build with the `qdrant` feature: \
                     `cargo build --release --features qdrant`"
                        .into(),
                ));
            }
        };
        let mem = Memory {
            embedder,
            index,
            store: Some(store.clone()),
            idf: Default::default(),
            min_score: config.memory.min_score,
        };
        mem.load(store.as_ref()).await?;
        Ok(mem)
    }

    async fn load(&self, store: &dyn Store) -> Result<(), MemoryError> {
        let name = self.embedder.name();
        let rows = store
            .memory_rows()
            .await
            .map_err(|e| MemoryError::Store(e.to_string()))?;
        let mut have = std::collections::HashSet::new();
        let mut stale: Vec<Doc> = vec![];
        for r in &rows {
            let Ok(doc) = serde_json::from_str::<Doc>(&r.doc) else {
                tracing::warn!(incident = %r.incident, "a memory row holds an unreadable document; skipped");
                continue;
            };
            if r.embedder == name {
                match decode(&r.vector) {
                    Some(v) => {
                        self.index_put(&doc, &v).await?;
                        have.insert(r.incident.clone());
                    }
                    None => stale.push(doc),
                }
            } else {
                stale.push(doc);
            }
        }
        stale.retain(|d| !have.contains(&d.incident));
        stale.dedup_by(|a, b| a.incident == b.incident);
        if !stale.is_empty() {
            tracing::info!(
                count = stale.len(),
                embedder = %name,
                "embedding remembered incidents for the configured embedder"
            );
        }
        for doc in stale {
            self.remember(doc).await?;
        }
        Ok(())
    }

    async fn index_put(&self, doc: &Doc, v: &[f32]) -> Result<(), MemoryError> {
        self.index.put(doc, v).await?;
        if self.embedder.weighting() == Weighting::Idf
            && let Ok(mut idf) = self.idf.write()
        {
            idf.add(v);
        }
        Ok(())
    }

    fn weights(&self) -> Option<Arc<Vec<f32>>> {
        if self.embedder.weighting() != Weighting::Idf {
            return None;
        }
        self.idf.read().ok().and_then(|i| i.weights.clone())
    }

    /// Embeds and keeps one resolved incident (replacing what was kept of it before).
    pub async fn remember(&self, doc: Doc) -> Result<(), MemoryError> {
        let text = crate::redact::redact(&doc.text());
        let v = self
            .embedder
            .embed(&[text])
            .await?
            .pop()
            .ok_or_else(|| MemoryError::Embed("the embedder returned no vector".into()))?;
        if let Some(store) = &self.store {
            let row = MemoryRow {
                incident: doc.incident.clone(),
                embedder: self.embedder.name(),
                doc: serde_json::to_string(&doc)
                    .map_err(|e| MemoryError::Store(format!("document: {e}")))?,
                vector: encode(&v),
                created_at: chrono::Utc::now(),
            };
            store
                .memory_put(&row)
                .await
                .map_err(|e| MemoryError::Store(e.to_string()))?;
        }
        self.index_put(&doc, &v).await
    }

    /// The past incidents most similar to `text`, best first, at most `k`, none below
    /// `[memory] min_score`.
    pub async fn similar(&self, text: &str, k: usize) -> Result<Vec<Hit>, MemoryError> {
        let text = crate::redact::redact(text);
        let q = self
            .embedder
            .embed(&[text])
            .await?
            .pop()
            .ok_or_else(|| MemoryError::Embed("the embedder returned no vector".into()))?;
        let found = self.index.search(&q, self.weights(), k).await?;
        Ok(found
            .iter()
            .filter(|(_, s)| *s >= self.min_score)
            .map(|(d, s)| Hit::of(d, *s))
            .collect())
    }

    /// How many incidents are remembered.
    #[allow(clippy::len_without_is_empty)]
    pub async fn len(&self) -> Result<usize, MemoryError> {
        self.index.len().await
    }

    /// `embedder name / index name`, for answers and logs.
    pub fn describe(&self) -> String {
        format!("{} in {}", self.embedder.name(), self.index.name())
    }
}

/// A vector as text for the store: hex of little-endian f32 when dense; `s<dims>:` then hex of
/// (u32 dimension, f32 value) pairs when at most a quarter of it is non-zero (hashed vectors).
pub fn encode(v: &[f32]) -> String {
    let nz: Vec<(usize, f32)> = v
        .iter()
        .enumerate()
        .filter(|(_, x)| **x != 0.0)
        .map(|(i, x)| (i, *x))
        .collect();
    if nz.len() * 4 <= v.len() {
        let mut bytes = Vec::with_capacity(nz.len() * 8);
        for (i, x) in nz {
            bytes.extend_from_slice(&(i as u32).to_le_bytes());
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        return format!("s{}:{}", v.len(), hex::encode(bytes));
    }
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    hex::encode(bytes)
}

/// The inverse of [`encode`]; None for text that is not one.
pub fn decode(s: &str) -> Option<Vec<f32>> {
    let f32_at = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    if let Some(rest) = s.strip_prefix('s') {
        let (dims, body) = rest.split_once(':')?;
        let dims: usize = dims.parse().ok().filter(|d| *d <= 1 << 20)?;
        let bytes = hex::decode(body).ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        let mut v = vec![0f32; dims];
        for c in bytes.chunks_exact(8) {
            let i = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
            *v.get_mut(i)? = f32_at(&c[4..]);
        }
        return Some(v);
    }
    let bytes = hex::decode(s).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(bytes.chunks_exact(4).map(f32_at).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_hex() {
        let v = vec![0.0, -1.5, 3.25e-7, f32::MAX];
        assert_eq!(decode(&encode(&v)), Some(v));
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz000000"), None);
        // Mostly zeros: stored sparse, read back equal.
        let mut h = vec![0f32; 4096];
        h[7] = 1.5;
        h[4095] = -0.25;
        let text = encode(&h);
        assert!(text.starts_with("s4096:") && text.len() < 50, "{text}");
        assert_eq!(decode(&text), Some(h));
        assert_eq!(decode("s8:0900000000000000"), None, "dimension 9 of 8");
        assert_eq!(decode("s8:01"), None);
    }
}
