//! Embedders: text in, one vector per text out.
//!
//! - [`Hashed`] (the default): word unigrams and bigrams plus character 3- to 5-grams, hashed
//!   into a fixed number of dimensions with a sign bit (the hashing trick), sublinear term
//!   frequency. Its vectors are counts, so the index weights each dimension by its inverse
//!   document frequency over the incidents it holds (TF-IDF). No network, no model.
//! - [`OpenAiEmbedder`]: the OpenAI-compatible `/v1/embeddings` endpoint.
//! - `Minilm` (cargo feature `minilm`): all-MiniLM-L6-v2 run by candle, see [`super::minilm`].

use super::MemoryError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::time::Duration;

/// How the index treats an embedder's vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighting {
    /// Dense semantic vectors: compared as they are.
    None,
    /// Term counts: each dimension is weighted by its inverse document frequency first.
    Idf,
}

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Names the embedder and its parameters; vectors from different names never mix.
    fn name(&self) -> String;
    fn weighting(&self) -> Weighting {
        Weighting::None
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError>;
}

/// Words that carry no meaning about an incident.
const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "has", "have",
    "in", "into", "is", "it", "its", "of", "on", "or", "that", "the", "their", "then", "there",
    "this", "to", "was", "were", "with", "we", "our", "us", "since", "now", "any", "some",
];

/// Hashed word and character n-grams (see the module doc).
#[derive(Debug, Clone)]
pub struct Hashed {
    dims: usize,
}

impl Hashed {
    pub fn new(dims: usize) -> Hashed {
        Hashed { dims: dims.max(16) }
    }

    /// The words that count: lowercase alphanumeric runs, without stop words and bare numbers.
    fn words(text: &str) -> Vec<String> {
        text.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !STOP.contains(w))
            .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    }

    /// Features with their weights, before hashing.
    fn features(text: &str) -> HashMap<String, f32> {
        let words = Hashed::words(text);
        let mut f: HashMap<String, f32> = HashMap::new();
        for w in &words {
            *f.entry(format!("w:{w}")).or_default() += 1.0;
            let chars: Vec<char> = format!("^{w}$").chars().collect();
            if chars.len() >= 5 {
                for n in 3..=5 {
                    for g in chars.windows(n) {
                        *f.entry(format!("c:{}", g.iter().collect::<String>()))
                            .or_default() += 0.2;
                    }
                }
            }
        }
        for pair in words.windows(2) {
            *f.entry(format!("b:{} {}", pair[0], pair[1])).or_default() += 0.5;
        }
        f
    }

    /// One text's vector: sublinear term frequency per feature, hashed with a sign.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        for (feature, tf) in Hashed::features(text) {
            let h = fnv1a(feature.as_bytes());
            let i = (h % self.dims as u64) as usize;
            let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
            v[i] += sign * (1.0 + tf.ln_1p());
        }
        v
    }
}

/// FNV-1a, 64 bit: stable across runs, platforms and Rust versions (vectors are persisted).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[async_trait]
impl Embedder for Hashed {
    fn name(&self) -> String {
        format!("hashed-tfidf-{}", self.dims)
    }

    fn weighting(&self) -> Weighting {
        Weighting::Idf
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

/// An OpenAI-compatible `/v1/embeddings` endpoint.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    model: String,
    key: Option<String>,
}

impl OpenAiEmbedder {
    /// `base_url` like `https://api.openai.com/v1`; the key is read from `key_env` if set.
    pub fn new(
        base_url: &str,
        model: &str,
        key_env: &str,
        timeout: Duration,
    ) -> Result<OpenAiEmbedder, MemoryError> {
        if base_url.trim().is_empty() {
            return Err(MemoryError::Config(
                "the openai embedder needs a base URL: set [memory] base_url or [llm] base_url"
                    .into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| MemoryError::Config(format!("HTTP client: {e}")))?;
        Ok(OpenAiEmbedder {
            http,
            url: format!("{}/embeddings", base_url.trim_end_matches('/')),
            model: model.to_string(),
            key: (!key_env.is_empty())
                .then(|| std::env::var(key_env).ok())
                .flatten()
                .filter(|k| !k.is_empty()),
        })
    }
}

#[derive(serde::Deserialize)]
struct EmbeddingsReply {
    data: Vec<EmbeddingItem>,
}

#[derive(serde::Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn name(&self) -> String {
        format!("openai-{}", self.model)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let mut req = self
            .http
            .post(&self.url)
            .json(&serde_json::json!({"model": self.model, "input": texts}));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| {
            MemoryError::Embed(if e.is_timeout() {
                format!("{} did not answer in time: {e}", self.url)
            } else {
                format!("{} could not be reached: {e}", self.url)
            })
        })?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| MemoryError::Embed(format!("{}: reading the reply: {e}", self.url)))?;
        if !status.is_success() {
            let short: String = body.chars().take(300).collect();
            return Err(MemoryError::Embed(format!(
                "{} answered {status}: {short}",
                self.url
            )));
        }
        let mut reply: EmbeddingsReply = serde_json::from_str(&body).map_err(|e| {
            MemoryError::Embed(format!(
                "{} sent a malformed embeddings reply: {e}",
                self.url
            ))
        })?;
        if reply.data.len() != texts.len() {
            return Err(MemoryError::Embed(format!(
                "{} returned {} embeddings for {} texts",
                self.url,
                reply.data.len(),
                texts.len()
            )));
        }
        reply.data.sort_by_key(|d| d.index.unwrap_or(0));
        let dims = reply.data[0].embedding.len();
        if dims == 0 || reply.data.iter().any(|d| d.embedding.len() != dims) {
            return Err(MemoryError::Embed(format!(
                "{} returned empty or unequal embeddings",
                self.url
            )));
        }
        Ok(reply.data.into_iter().map(|d| d.embedding).collect())
    }
}

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn related_reports_are_closer_than_unrelated_ones() {
        let h = Hashed::new(4096);
        let a = h.vector("checkout requests hang: a lock held by an idle transaction");
        let b = h.vector("payments hang waiting on a row lock; idle in transaction session");
        let c = h.vector("the disk of the upload host is full");
        assert!(
            cosine(&a, &b) > cosine(&a, &c) + 0.1,
            "{} vs {}",
            cosine(&a, &b),
            cosine(&a, &c)
        );
    }

    #[test]
    fn vectors_are_stable_and_ignore_numbers_and_stop_words() {
        let h = Hashed::new(1024);
        assert_eq!(
            h.vector("CPU at 97 percent"),
            h.vector("cpu at the 12 percent")
        );
        // FNV-1a's published 64-bit test vectors: persisted vectors depend on them.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert!(h.vector("").iter().all(|x| *x == 0.0));
    }
}
