//! Incident memory in a Qdrant server or cluster (cargo feature `qdrant`), through qdrant-client's
//! gRPC API (`[memory] qdrant_url`, port 6334 by default).
//!
//! One collection per embedder: `{[memory] collection}_{embedder name}` (the name reduced to
//! letters, digits, `-` and `_`), so vectors of different embedders never mix. It is created on
//! the first `put`, with the dimensions of that first vector and cosine distance. Each incident
//! is one point: its id is the first 8 bytes of the SHA-256 of the incident id (so remembering an
//! incident again replaces it) and its payload is the [`Doc`] as JSON (so a search returns whole
//! documents and needs nothing else).
//!
//! Results equal those of the exact in-process index ([`super::exact`]):
//! - Dense embedders ([`Weighting::None`]): an exact (brute-force, `exact = true`) cosine search
//!   in Qdrant; the score is Qdrant's cosine.
//! - Count vectors ([`Weighting::Idf`]): the weights change with every remembered incident, so
//!   the points keep the raw vectors and the weighting happens at search time. Qdrant is asked
//!   for `max(4k, 32)` candidates with the query scaled by the squared weights (`q∘w∘w`): its
//!   cosine with a stored `v` has the exact numerator `⟨v∘w, q∘w⟩` and differs from the true score
//!   only by `|v|` standing for `|v∘w|`. The candidates come back with their vectors and are
//!   re-ranked by the cosine of `v∘w` and `q∘w`, the formula of the exact index, and the best `k`
//!   returned. A candidate set smaller than the collection can in principle miss an incident the
//!   exact index would rank in the top `k`; with at most 32 incidents it is the whole collection.
//!
//! Ties in score are ordered by incident id (the exact index orders them by insertion).

use super::exact::unit;
use super::{Doc, Index, MemoryError, Weighting};
use crate::config::MemorySettings;
use async_trait::async_trait;
use qdrant_client::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, Distance, PointStruct, QueryPointsBuilder,
    ScoredPoint, SearchParamsBuilder, UpsertPointsBuilder, VectorParamsBuilder, vector_output,
    vectors_config,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long establishing the gRPC connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to answer the health check when connecting.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// gRPC status codes (tonic is not a direct dependency).
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAUTHENTICATED: i32 = 16;
/// The fewest candidates fetched for an exact re-rank.
const MIN_CANDIDATES: usize = 32;

/// Incident memory in one Qdrant collection (see the module doc).
pub struct QdrantIndex {
    client: Qdrant,
    url: String,
    collection: String,
    weighting: Weighting,
    /// The collection's vector size, once it is known to exist.
    dims: OnceCell<u64>,
}

/// `name` reduced to the characters a collection name may safely hold.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "default".into() } else { s }
}

/// The collection that holds `embedder`'s vectors.
pub fn collection_name(settings: &MemorySettings, embedder: &str) -> String {
    format!("{}_{}", sanitize(&settings.collection), sanitize(embedder))
}

/// The point id of an incident: the first 8 bytes of the SHA-256 of its id.
pub fn point_id(incident: &str) -> u64 {
    let digest = Sha256::digest(incident.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// A client error with its causes (a transport error's cause says "connection refused").
fn describe(e: &QdrantError) -> String {
    let mut out = match e {
        QdrantError::ResponseError { status } => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    };
    let mut source = std::error::Error::source(e);
    if let QdrantError::ResponseError { status } = e {
        source = std::error::Error::source(status);
    }
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The query Qdrant is asked for candidates with: `q∘w∘w` (see the module doc).
fn probe(q: &[f32], w: &[f32]) -> Vec<f32> {
    q.iter()
        .enumerate()
        .map(|(i, x)| {
            let wi = w.get(i).copied().unwrap_or(1.0);
            x * wi * wi
        })
        .collect()
}

/// How many candidates are fetched to re-rank for the best `k`.
fn candidates(k: usize) -> usize {
    k.saturating_mul(4).max(MIN_CANDIDATES)
}

/// Best first; equal scores by incident id.
fn order(found: &mut [(Doc, f32)]) {
    found.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| a.0.incident.cmp(&b.0.incident))
    });
}

/// The best `k` of `candidates` by the cosine of `v∘w` and `q∘w`.
fn rerank(query: &[f32], w: &[f32], candidates: Vec<(Doc, Vec<f32>)>, k: usize) -> Vec<(Doc, f32)> {
    let q = unit(query, Some(w));
    let mut scored: Vec<(Doc, f32)> = candidates
        .into_iter()
        .map(|(doc, v)| {
            let d = unit(&v, Some(w));
            let s = d.iter().zip(&q).map(|(a, b)| a * b).sum();
            (doc, s)
        })
        .collect();
    order(&mut scored);
    scored.truncate(k);
    scored
}

impl QdrantIndex {
    /// Connects to `[memory] qdrant_url` (with the API key from the variable
    /// `qdrant_api_key_env` names, when it is set) and checks that the server answers. The
    /// collection of `embedder` is used if it exists, otherwise created by the first `put`.
    pub async fn connect(
        settings: &MemorySettings,
        embedder: &str,
        weighting: Weighting,
    ) -> Result<QdrantIndex, MemoryError> {
        let url = settings.qdrant_url.trim().to_string();
        if url.is_empty() {
            return Err(MemoryError::Config(
                "[memory] backend = \"qdrant\" needs [memory] qdrant_url (Qdrant's gRPC URL, \
                 e.g. http://127.0.0.1:6334)"
                    .into(),
            ));
        }
        let api_key = if settings.qdrant_api_key_env.is_empty() {
            None
        } else {
            std::env::var(&settings.qdrant_api_key_env)
                .ok()
                .filter(|k| !k.trim().is_empty())
        };
        // The client's own compatibility check blocks a thread and prints to stdout: the
        // health check below replaces it.
        let client = Qdrant::from_url(&url)
            .api_key(api_key)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .skip_compatibility_check()
            .build()
            .map_err(|e| {
                MemoryError::Config(format!(
                    "[memory] qdrant_url = {url:?} is not a usable URL: {}",
                    describe(&e)
                ))
            })?;
        let hint = if url.trim_end_matches('/').ends_with(":6333") {
            " (6333 is Qdrant's REST port; qdrant_url wants the gRPC port, usually 6334)"
        } else {
            ""
        };
        let health = match tokio::time::timeout(HEALTH_TIMEOUT, client.health_check()).await {
            Ok(Ok(h)) => h,
            Ok(Err(QdrantError::ResponseError { status }))
                if matches!(
                    status.code() as i32,
                    GRPC_PERMISSION_DENIED | GRPC_UNAUTHENTICATED
                ) =>
            {
                return Err(MemoryError::Index(format!(
                    "the Qdrant server at {url} refused the API key ({}): {}",
                    if settings.qdrant_api_key_env.is_empty() {
                        "no [memory] qdrant_api_key_env set".to_string()
                    } else {
                        format!("from ${}", settings.qdrant_api_key_env)
                    },
                    status.message()
                )));
            }
            Ok(Err(e)) => {
                let d = describe(&e);
                let why = if d.contains("ConnectionRefused") {
                    " (connection refused)"
                } else {
                    ""
                };
                return Err(MemoryError::Index(format!(
                    "no Qdrant server answered at {url}{why}{hint}: {d}"
                )));
            }
            Err(_) => {
                return Err(MemoryError::Index(format!(
                    "the Qdrant server at {url} did not answer within {}s{hint}",
                    HEALTH_TIMEOUT.as_secs()
                )));
            }
        };
        let index = QdrantIndex {
            client,
            url,
            collection: collection_name(settings, embedder),
            weighting,
            dims: OnceCell::new(),
        };
        index.existing().await?;
        tracing::info!(
            url = %index.url,
            collection = %index.collection,
            server = %health.version,
            "incident memory in Qdrant"
        );
        Ok(index)
    }

    /// The collection's name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    fn err(&self, what: &str, e: &QdrantError) -> MemoryError {
        MemoryError::Index(format!(
            "Qdrant at {} ({what}, collection {}): {}",
            self.url,
            self.collection,
            describe(e)
        ))
    }

    /// The vector size of the collection if it exists (and remembers it).
    async fn existing(&self) -> Result<Option<u64>, MemoryError> {
        if let Some(d) = self.dims.get() {
            return Ok(Some(*d));
        }
        let dims = self.read_dims().await?;
        if let Some(d) = dims {
            let _ = self.dims.set(d);
        }
        Ok(dims)
    }

    /// Asks the server for the collection's vector size; None when it does not exist.
    async fn read_dims(&self) -> Result<Option<u64>, MemoryError> {
        let exists = self
            .client
            .collection_exists(self.collection.as_str())
            .await
            .map_err(|e| self.err("checking the collection", &e))?;
        if !exists {
            return Ok(None);
        }
        let info = self
            .client
            .collection_info(self.collection.as_str())
            .await
            .map_err(|e| self.err("reading the collection", &e))?;
        let params = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        let dims = match params {
            Some(vectors_config::Config::Params(p)) => {
                if p.distance != Distance::Cosine as i32 {
                    return Err(MemoryError::Index(format!(
                        "the Qdrant collection {} at {} does not use cosine distance; \
                         drop it or set another [memory] collection",
                        self.collection, self.url
                    )));
                }
                p.size
            }
            _ => {
                return Err(MemoryError::Index(format!(
                    "the Qdrant collection {} at {} does not hold one unnamed dense vector per \
                     point; drop it or set another [memory] collection",
                    self.collection, self.url
                )));
            }
        };
        Ok(Some(dims))
    }

    /// The collection's vector size, creating the collection for `dims` if it does not exist.
    async fn ensure(&self, dims: usize) -> Result<u64, MemoryError> {
        let dims = *self
            .dims
            .get_or_try_init(|| async {
                if let Some(d) = self.read_dims().await? {
                    return Ok(d);
                }
                let created = self
                    .client
                    .create_collection(
                        CreateCollectionBuilder::new(self.collection.as_str()).vectors_config(
                            VectorParamsBuilder::new(dims as u64, Distance::Cosine),
                        ),
                    )
                    .await;
                match created {
                    Ok(_) => {
                        tracing::info!(
                            collection = %self.collection,
                            dims,
                            "created the Qdrant collection"
                        );
                        Ok(dims as u64)
                    }
                    // Another process may have created it meanwhile.
                    Err(e) => match self.read_dims().await {
                        Ok(Some(d)) => Ok(d),
                        _ => Err(self.err("creating the collection", &e)),
                    },
                }
            })
            .await?;
        Ok(dims)
    }

    fn doc_of(&self, p: &mut ScoredPoint) -> Result<Doc, MemoryError> {
        doc_of(p).map_err(|e| {
            MemoryError::Index(format!(
                "a point of the Qdrant collection {} at {} holds no readable incident: {e}",
                self.collection, self.url
            ))
        })
    }
}

/// The payload that holds `doc`: the document as JSON.
fn payload_of(doc: &Doc) -> Result<Payload, MemoryError> {
    let json = serde_json::to_value(doc)
        .map_err(|e| MemoryError::Index(format!("document of {}: {e}", doc.incident)))?;
    Payload::try_from(json)
        .map_err(|e| MemoryError::Index(format!("document of {}: {e}", doc.incident)))
}

/// The document a returned point holds (its payload is taken).
fn doc_of(p: &mut ScoredPoint) -> Result<Doc, serde_json::Error> {
    let payload = Payload::from(std::mem::take(&mut p.payload));
    serde_json::from_value(serde_json::Value::from(payload))
}

/// The dense vector of a point returned with its vectors.
fn dense(p: &ScoredPoint) -> Option<Vec<f32>> {
    match p.vectors.as_ref()?.get_vector()? {
        vector_output::Vector::Dense(d) => Some(d.data),
        _ => None,
    }
}

#[async_trait]
impl Index for QdrantIndex {
    fn name(&self) -> String {
        format!("Qdrant collection {} at {}", self.collection, self.url)
    }

    async fn put(&self, doc: &Doc, vector: &[f32]) -> Result<(), MemoryError> {
        if vector.is_empty() {
            return Err(MemoryError::Index(
                "an empty vector cannot be indexed".into(),
            ));
        }
        let dims = self.ensure(vector.len()).await?;
        if dims != vector.len() as u64 {
            return Err(MemoryError::Index(format!(
                "a vector of {} dimensions does not fit the Qdrant collection {} ({dims})",
                vector.len(),
                self.collection
            )));
        }
        let point = PointStruct::new(point_id(&doc.incident), vector.to_vec(), payload_of(doc)?);
        self.client
            .upsert_points(
                UpsertPointsBuilder::new(self.collection.as_str(), vec![point]).wait(true),
            )
            .await
            .map_err(|e| self.err("storing an incident", &e))?;
        Ok(())
    }

    async fn search(
        &self,
        query: &[f32],
        weights: Option<Arc<Vec<f32>>>,
        k: usize,
    ) -> Result<Vec<(Doc, f32)>, MemoryError> {
        if k == 0 {
            return Ok(vec![]);
        }
        let Some(dims) = self.existing().await? else {
            return Ok(vec![]);
        };
        if dims != query.len() as u64 {
            return Err(MemoryError::Index(format!(
                "a query of {} dimensions does not fit the Qdrant collection {} ({dims})",
                query.len(),
                self.collection
            )));
        }
        let weights = if self.weighting == Weighting::Idf {
            weights
        } else {
            None
        };
        let base = |v: Vec<f32>, limit: usize| {
            QueryPointsBuilder::new(self.collection.as_str())
                .query(v)
                .limit(limit as u64)
                .with_payload(true)
                .params(SearchParamsBuilder::default().exact(true))
        };
        match weights {
            None => {
                let found = self
                    .client
                    .query(base(query.to_vec(), k))
                    .await
                    .map_err(|e| self.err("searching", &e))?;
                let mut out = Vec::with_capacity(found.result.len());
                for mut p in found.result {
                    let doc = self.doc_of(&mut p)?;
                    out.push((doc, p.score));
                }
                order(&mut out);
                out.truncate(k);
                Ok(out)
            }
            Some(w) => {
                let found = self
                    .client
                    .query(base(probe(query, &w), candidates(k)).with_vectors(true))
                    .await
                    .map_err(|e| self.err("searching", &e))?;
                let mut pool = Vec::with_capacity(found.result.len());
                for mut p in found.result {
                    let v = dense(&p).ok_or_else(|| {
                        MemoryError::Index(format!(
                            "Qdrant at {} returned a point of {} without its dense vector",
                            self.url, self.collection
                        ))
                    })?;
                    let doc = self.doc_of(&mut p)?;
                    pool.push((doc, v));
                }
                Ok(rerank(query, &w, pool, k))
            }
        }
    }

    async fn len(&self) -> Result<usize, MemoryError> {
        if self.existing().await?.is_none() {
            return Ok(0);
        }
        let counted = self
            .client
            .count(CountPointsBuilder::new(self.collection.as_str()).exact(true))
            .await
            .map_err(|e| self.err("counting points", &e))?;
        Ok(counted.result.map(|r| r.count as usize).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::embed::{Embedder, Hashed};
    use crate::memory::exact::Exact;

    fn doc(i: usize, text: &str) -> Doc {
        Doc {
            incident: format!("inc-{i:03}"),
            title: text.split('.').next().unwrap_or(text).to_string(),
            report: text.to_string(),
            category: None,
            component: None,
            cause: String::new(),
            evidence: vec![],
            remediation: vec![],
            resolved_at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
        }
    }

    /// What the server sends back: the payload as a map of values and the vector, in the
    /// current (`vector`) or the deprecated (`data`) field.
    #[test]
    #[allow(deprecated)]
    fn a_point_gives_back_its_document_and_vector() {
        use qdrant_client::qdrant::vectors_output::VectorsOptions;
        use qdrant_client::qdrant::{DenseVector, VectorOutput, VectorsOutput};
        let mut d = doc(
            7,
            "checkout: CPU saturated. p99 latency tripled after the deploy",
        );
        d.category = Some("host.cpu_saturation".into());
        d.evidence = vec!["load 14 on 2 cores".into(), "run queue 9".into()];
        d.remediation = vec!["rolled back: p99 180 ms".into()];
        let vectors = [
            VectorOutput {
                vector: Some(vector_output::Vector::Dense(DenseVector {
                    data: vec![0.5, -1.0, 0.0],
                })),
                ..Default::default()
            },
            VectorOutput {
                data: vec![0.5, -1.0, 0.0],
                ..Default::default()
            },
        ];
        for v in vectors {
            let mut p = ScoredPoint {
                payload: payload_of(&d).unwrap().into(),
                score: 0.5,
                vectors: Some(VectorsOutput {
                    vectors_options: Some(VectorsOptions::Vector(v)),
                }),
                ..Default::default()
            };
            assert_eq!(dense(&p), Some(vec![0.5, -1.0, 0.0]));
            assert_eq!(doc_of(&mut p).unwrap(), d);
        }
        let mut empty = ScoredPoint::default();
        assert_eq!(dense(&empty), None);
        assert!(doc_of(&mut empty).is_err());
    }

    #[test]
    fn names_and_ids_are_stable() {
        let s = MemorySettings::default();
        assert_eq!(
            collection_name(&s, "hashed-tfidf-4096"),
            "oncall_incidents_hashed-tfidf-4096"
        );
        assert_eq!(
            collection_name(&s, "openai-org/model:v1.5"),
            "oncall_incidents_openai-org_model_v1_5"
        );
        assert_eq!(point_id("inc-1"), point_id("inc-1"));
        assert_ne!(point_id("inc-1"), point_id("inc-2"));
        // Pinned: the ids of points already stored must never change.
        assert_eq!(point_id("inc-1"), 1_758_102_266_104_707_716);
        assert_eq!(candidates(1), 32);
        assert_eq!(candidates(20), 80);
    }

    /// The re-rank is the exact index's formula: over the same vectors it gives the same order
    /// and scores. And the `q∘w∘w` probe, standing in for Qdrant's cosine, puts the exact top k
    /// among its candidates for a corpus larger than the candidate set.
    #[tokio::test]
    async fn rerank_matches_the_exact_index_and_the_probe_finds_the_top() {
        let services = [
            "checkout",
            "payments",
            "search",
            "auth",
            "inventory",
            "billing",
            "gateway",
            "mailer",
        ];
        let faults = [
            "CPU saturation after a deploy, p99 latency up",
            "memory leak, pods OOM killed every hour",
            "disk full on the data volume, writes failing",
            "connection pool exhausted, timeouts to postgres",
            "TLS certificate expired, handshake errors",
            "DNS resolution failures after a resolver change",
            "slow queries after a missing index migration",
            "file descriptor leak, too many open files",
            "retry storm amplifying an upstream brownout",
            "clock skew breaking token validation",
        ];
        let mut texts = vec![];
        for (i, s) in services.iter().enumerate() {
            for (j, f) in faults.iter().enumerate() {
                if (i + j) % 2 == 0 {
                    texts.push(format!("{s} incident. {s}: {f}. Seen on {s}-{j} hosts."));
                }
            }
        }
        let emb = Hashed::new(4096);
        let vectors = emb.embed(&texts).await.unwrap();
        let docs: Vec<Doc> = texts.iter().enumerate().map(|(i, t)| doc(i, t)).collect();
        let w = Arc::new(crate::memory::idf_weights(&vectors));
        let exact = Exact::new(Weighting::Idf);
        for (d, v) in docs.iter().zip(&vectors) {
            exact.put(d, v).await.unwrap();
        }
        let queries = [
            "payments latency high, CPU pegged since the deploy",
            "auth tokens rejected, clock skew suspected",
            "search pods keep getting OOM killed",
            "postgres timeouts from billing, pool exhausted",
        ];
        let qs = emb
            .embed(&queries.iter().map(|q| q.to_string()).collect::<Vec<_>>())
            .await
            .unwrap();
        let k = 5;
        assert!(
            docs.len() > candidates(k),
            "the corpus must exceed the candidate set"
        );
        for q in &qs {
            let want = exact.search(q, Some(w.clone()), k).await.unwrap();
            // All points as candidates: the re-rank alone.
            let all: Vec<(Doc, Vec<f32>)> = docs.iter().cloned().zip(vectors.clone()).collect();
            let got = rerank(q, &w, all, k);
            assert_eq!(want.len(), got.len());
            for ((a, sa), (b, sb)) in want.iter().zip(&got) {
                assert_eq!(a.incident, b.incident);
                assert!((sa - sb).abs() < 1e-5, "{sa} vs {sb}");
            }
            // Candidates as Qdrant would pick them: cosine of the stored vector and the probe.
            let p = unit(&probe(q, &w), None);
            let mut by_probe: Vec<(usize, f32)> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (i, unit(v, None).iter().zip(&p).map(|(a, b)| a * b).sum()))
                .collect();
            by_probe.sort_by(|a, b| b.1.total_cmp(&a.1));
            let pool: Vec<(Doc, Vec<f32>)> = by_probe
                .iter()
                .take(candidates(k))
                .map(|(i, _)| (docs[*i].clone(), vectors[*i].clone()))
                .collect();
            let got = rerank(q, &w, pool, k);
            let want_ids: Vec<&str> = want.iter().map(|(d, _)| d.incident.as_str()).collect();
            let got_ids: Vec<&str> = got.iter().map(|(d, _)| d.incident.as_str()).collect();
            assert_eq!(want_ids, got_ids);
        }
    }
}
