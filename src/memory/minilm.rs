//! all-MiniLM-L6-v2 run by candle on the CPU (cargo feature `minilm`).
//!
//! A 6-layer BERT that maps a text to 384 dimensions; sentence-transformers trained it so that
//! texts with the same meaning land close together, which is what incident memory needs from
//! reports that describe the same fault in different words.
//!
//! - The model is read from a folder holding `model.safetensors`, `config.json` and
//!   `tokenizer.json` (`[memory] minilm_dir`, `models/all-MiniLM-L6-v2` by default), which
//!   `scripts/fetch-minilm.sh` fills. Nothing is fetched at run time.
//! - Embedding is the sentence-transformers recipe: tokenize (truncated to [`MAX_TOKENS`]),
//!   BERT forward, mean of the token vectors weighted by the attention mask (so padding never
//!   counts: the shipped `tokenizer.json` pads to 128, here the batch is padded to its longest
//!   text only), then L2 normalization, so the cosine of two vectors is their dot product.
//! - The forward pass is CPU-heavy: it runs on tokio's blocking pool, never on a runtime thread.

use super::{Embedder, MemoryError};
use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use std::path::Path;
use std::sync::Arc;
use tokenizers::{PaddingStrategy, Tokenizer};

/// The longest input in tokens (special tokens included); longer texts are cut. The limit
/// sentence-transformers uses for this model.
pub const MAX_TOKENS: usize = 256;

/// Dimensions of one vector.
pub const DIMS: usize = 384;

/// Texts per forward pass: bounds the memory of one pass (attention is quadratic in length).
const BATCH: usize = 32;

/// The files the model folder must hold.
const FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// all-MiniLM-L6-v2 (see the module doc). Cheap to share: the model sits behind an `Arc`.
#[derive(Clone)]
pub struct Minilm {
    inner: Arc<Inner>,
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl Minilm {
    /// Loads the model from `dir` (see the module doc for the files it needs).
    pub fn load(dir: &Path) -> Result<Minilm, MemoryError> {
        for f in FILES {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(MemoryError::Config(format!(
                    "the minilm embedder needs {}, which is missing: run scripts/fetch-minilm.sh \
                     (or point [memory] minilm_dir at a folder holding {})",
                    p.display(),
                    FILES.join(", ")
                )));
            }
        }
        let bad = |f: &str, e: &dyn std::fmt::Display| {
            MemoryError::Config(format!(
                "the minilm embedder could not load {}: {e}; run scripts/fetch-minilm.sh again \
                 after removing the folder",
                dir.join(f).display()
            ))
        };

        let config: Config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| bad("config.json", &e))
            .and_then(|s| serde_json::from_str(&s).map_err(|e| bad("config.json", &e)))?;
        if config.hidden_size != DIMS || config.num_hidden_layers != 6 {
            return Err(bad(
                "config.json",
                &format!(
                    "it describes a model of {} dimensions and {} layers, not all-MiniLM-L6-v2 \
                     ({DIMS} dimensions, 6 layers)",
                    config.hidden_size, config.num_hidden_layers
                ),
            ));
        }

        let device = Device::Cpu;
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| bad("model.safetensors", &e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DTYPE, &device)
            .map_err(|e| bad("model.safetensors", &e))?;
        let model = BertModel::load(vb, &config).map_err(|e| bad("model.safetensors", &e))?;

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| bad("tokenizer.json", &e))?;
        let mut truncation = tokenizer.get_truncation().cloned().unwrap_or_default();
        truncation.max_length = MAX_TOKENS;
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| bad("tokenizer.json", &e))?;
        // Pad each batch to its longest text only (the file pads every text to 128 tokens).
        let mut padding = tokenizer.get_padding().cloned().unwrap_or_default();
        padding.strategy = PaddingStrategy::BatchLongest;
        tokenizer.with_padding(Some(padding));

        Ok(Minilm {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                device,
            }),
        })
    }
}

impl Inner {
    /// Vectors of `texts` (at most [`BATCH`] of them: one forward pass).
    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| MemoryError::Embed(format!("minilm: tokenizing failed: {e}")))?;
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        if n != texts.len() || len == 0 || encodings.iter().any(|e| e.get_ids().len() != len) {
            return Err(MemoryError::Embed(format!(
                "minilm: the tokenizer returned {n} encodings of unequal or zero length for {} texts",
                texts.len()
            )));
        }
        let flat = |f: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        self.forward(
            flat(tokenizers::Encoding::get_ids),
            flat(tokenizers::Encoding::get_type_ids),
            flat(tokenizers::Encoding::get_attention_mask),
            (n, len),
        )
        .map_err(|e| MemoryError::Embed(format!("minilm: the forward pass failed: {e}")))
    }

    /// BERT forward, masked mean pooling, L2 normalization.
    fn forward(
        &self,
        ids: Vec<u32>,
        type_ids: Vec<u32>,
        mask: Vec<u32>,
        shape: (usize, usize),
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        // (batch, tokens, DIMS)
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        // (batch, tokens, 1): 1 for a real token, 0 for padding.
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
        let counts = weights.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

#[async_trait]
impl Embedder for Minilm {
    fn name(&self) -> String {
        "minilm-l6-v2".into()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let inner = self.inner.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(BATCH) {
                out.extend(inner.embed_batch(chunk)?);
            }
            Ok(out)
        })
        .await
        .map_err(|e| MemoryError::Embed(format!("minilm: the embedding task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_names_the_file_and_the_fetch_script() {
        let dir = std::env::temp_dir().join("oncall-minilm-missing-model-dir");
        let Err(MemoryError::Config(msg)) = Minilm::load(&dir) else {
            panic!("loading from a missing folder must fail as a config error");
        };
        assert!(msg.contains("model.safetensors"), "{msg}");
        assert!(msg.contains("scripts/fetch-minilm.sh"), "{msg}");
    }
}
