//! The embedded default index: every vector in memory, searched exactly (cosine against each).
//! A team has thousands of incidents, not billions: at 4096 dimensions a search over 10 000 of
//! them takes milliseconds (`cargo bench --bench memory`), and exact means no recall lost to an
//! approximate structure.

use super::{Doc, Index, MemoryError, Weighting};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Default)]
struct State {
    docs: Vec<Doc>,
    vectors: Vec<Vec<f32>>,
    by_incident: HashMap<String, usize>,
    /// The vectors scaled by `weights` and normalized to length 1, kept sparse (hashed
    /// vectors are mostly zeros), and the weights used.
    unit: Vec<Sparse>,
    unit_for: Option<Arc<Vec<f32>>>,
    unit_valid: bool,
}

pub struct Exact {
    weighting: Weighting,
    state: RwLock<State>,
}

impl Exact {
    pub fn new(weighting: Weighting) -> Exact {
        Exact {
            weighting,
            state: Default::default(),
        }
    }
}

fn poisoned() -> MemoryError {
    MemoryError::Index("the in-process index's lock was poisoned".into())
}

/// The non-zero entries of a vector: (dimension, value).
type Sparse = Vec<(u32, f32)>;

fn sparse(v: &[f32]) -> Sparse {
    v.iter()
        .enumerate()
        .filter(|(_, x)| **x != 0.0)
        .map(|(i, x)| (i as u32, *x))
        .collect()
}

/// `v` scaled by `w` (when given) and normalized; zero stays zero. The Qdrant index re-ranks
/// with it too, so both give the same scores.
pub(crate) fn unit(v: &[f32], w: Option<&[f32]>) -> Vec<f32> {
    let mut out: Vec<f32> = match w {
        Some(w) => v
            .iter()
            .enumerate()
            .map(|(i, x)| x * w.get(i).copied().unwrap_or(1.0))
            .collect(),
        None => v.to_vec(),
    };
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut out {
            *x /= norm;
        }
    }
    out
}

#[async_trait]
impl Index for Exact {
    fn name(&self) -> String {
        "the exact in-process index".into()
    }

    async fn put(&self, doc: &Doc, vector: &[f32]) -> Result<(), MemoryError> {
        let mut st = self.state.write().map_err(|_| poisoned())?;
        if let Some(dims) = st.vectors.first().map(Vec::len)
            && dims != vector.len()
        {
            return Err(MemoryError::Index(format!(
                "a vector of {} dimensions does not fit an index of {dims}",
                vector.len()
            )));
        }
        match st.by_incident.get(&doc.incident).copied() {
            Some(i) => {
                st.docs[i] = doc.clone();
                st.vectors[i] = vector.to_vec();
            }
            None => {
                let i = st.docs.len();
                st.by_incident.insert(doc.incident.clone(), i);
                st.docs.push(doc.clone());
                st.vectors.push(vector.to_vec());
            }
        }
        st.unit_valid = false;
        Ok(())
    }

    async fn search(
        &self,
        query: &[f32],
        weights: Option<Arc<Vec<f32>>>,
        k: usize,
    ) -> Result<Vec<(Doc, f32)>, MemoryError> {
        let weights = if self.weighting == Weighting::Idf {
            weights
        } else {
            None
        };
        let fresh = {
            let st = self.state.read().map_err(|_| poisoned())?;
            st.unit_valid
                && match (&st.unit_for, &weights) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        };
        if !fresh {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            let w = weights.as_deref().map(Vec::as_slice);
            st.unit = st.vectors.iter().map(|v| sparse(&unit(v, w))).collect();
            st.unit_for = weights.clone();
            st.unit_valid = true;
        }
        let st = self.state.read().map_err(|_| poisoned())?;
        let q = unit(query, weights.as_deref().map(Vec::as_slice));
        let mut scored: Vec<(usize, f32)> = st
            .unit
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let dot: f32 = d
                    .iter()
                    .map(|(j, x)| x * q.get(*j as usize).copied().unwrap_or(0.0))
                    .sum();
                (i, dot)
            })
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Ok(vec![]);
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(scored
            .into_iter()
            .map(|(i, s)| (st.docs[i].clone(), s))
            .collect())
    }

    async fn len(&self) -> Result<usize, MemoryError> {
        Ok(self.state.read().map_err(|_| poisoned())?.docs.len())
    }
}
