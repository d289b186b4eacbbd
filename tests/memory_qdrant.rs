#![cfg(feature = "qdrant")]
//! Incident memory in a real Qdrant server gives the results of the exact in-process index.
//!
//! Needs a Qdrant server: its gRPC URL in `QDRANT_TEST_URL` (e.g. `http://127.0.0.1:6334`).
//! Without one the test says so and passes: it never fakes a server. Each run uses collections
//! of its own and drops them at the end.
//!
//! `cargo test --features qdrant --test memory_qdrant -- --nocapture`

use oncall::config::MemorySettings;
use oncall::memory::exact::Exact;
use oncall::memory::qdrant::QdrantIndex;
use oncall::memory::{Doc, Embedder, Hashed, Index, MemoryError, Weighting};
use std::sync::Arc;

const SERVICES: [&str; 6] = [
    "checkout",
    "payments",
    "search",
    "auth",
    "inventory",
    "billing",
];

const FAULTS: [(&str, &str, &str); 6] = [
    (
        "host.cpu_saturation",
        "CPU saturated after the 14:02 deploy; p99 latency tripled, run queue above 8",
        "rolled back the deploy; p99 back to 180 ms",
    ),
    (
        "host.memory_leak",
        "RSS grows 40 MB a minute until the pods are OOM killed, every hour",
        "restarted the pods and pinned the previous image; RSS flat",
    ),
    (
        "host.disk_full",
        "the data volume is full, writes fail with ENOSPC, compaction stalled",
        "deleted old snapshots and grew the volume; writes resumed",
    ),
    (
        "db.connection_pool_exhausted",
        "connection pool exhausted, requests time out waiting for postgres connections",
        "raised the pool size and killed idle-in-transaction sessions",
    ),
    (
        "net.tls_certificate_expired",
        "TLS handshakes fail: the certificate of the internal gateway expired at midnight",
        "renewed the certificate and reloaded the gateway",
    ),
    (
        "net.dns_failure",
        "name resolution fails intermittently after the resolver change, SERVFAIL in logs",
        "reverted the resolver configuration",
    ),
];

fn corpus() -> Vec<Doc> {
    let mut docs = vec![];
    for (i, service) in SERVICES.iter().enumerate() {
        for (j, (category, symptom, fix)) in FAULTS.iter().enumerate() {
            let n = i * FAULTS.len() + j;
            docs.push(Doc {
                incident: format!("inc-{n:03}"),
                title: format!("{service}: {}", category.replace(['.', '_'], " ")),
                report: format!("{service} on-call page: {symptom} (seen on {service}-{j} hosts)"),
                category: Some(category.to_string()),
                component: (!n.is_multiple_of(3)).then(|| service.to_string()),
                cause: format!("{category} on {service}"),
                evidence: vec![format!("{service} dashboard: {symptom}")],
                remediation: if n.is_multiple_of(4) {
                    vec![]
                } else {
                    vec![fix.to_string()]
                },
                resolved_at: chrono::DateTime::from_timestamp(1_760_000_000 + n as i64 * 3600, 0)
                    .expect("a valid timestamp"),
            });
        }
    }
    docs
}

const QUERIES: [&str; 6] = [
    "payments latency high, CPU pegged since the deploy",
    "search pods keep getting OOM killed",
    "billing requests time out waiting for postgres",
    "certificate expired on the gateway, handshake errors",
    "auth: SERVFAIL resolving names",
    "inventory writes fail, volume full",
];

fn settings(url: &str, collection: &str) -> MemorySettings {
    MemorySettings {
        qdrant_url: url.to_string(),
        collection: collection.to_string(),
        ..MemorySettings::default()
    }
}

async fn assert_same(
    what: &str,
    exact: &dyn Index,
    qdrant: &dyn Index,
    queries: &[Vec<f32>],
    weights: Option<Arc<Vec<f32>>>,
) {
    for k in [1, 5, 40] {
        for (qi, q) in queries.iter().enumerate() {
            let want = exact
                .search(q, weights.clone(), k)
                .await
                .expect("exact search");
            let got = qdrant
                .search(q, weights.clone(), k)
                .await
                .expect("Qdrant search");
            let ids = |r: &[(Doc, f32)]| {
                r.iter()
                    .map(|(d, _)| d.incident.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                ids(&want),
                ids(&got),
                "{what}: query {qi} ({:?}), k = {k}",
                QUERIES[qi]
            );
            for ((a, sa), (b, sb)) in want.iter().zip(&got) {
                assert!(
                    (sa - sb).abs() < 1e-4,
                    "{what}: query {qi}, k = {k}, {}: exact {sa} vs Qdrant {sb}",
                    a.incident
                );
                assert_eq!(a, b, "{what}: the document comes back whole");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_matches_the_exact_index_and_persists() {
    let Ok(url) = std::env::var("QDRANT_TEST_URL") else {
        println!("skipped: no Qdrant server reachable at (unset) (set QDRANT_TEST_URL)");
        return;
    };
    let run = format!(
        "oncall_test_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let embedder = Hashed::new(4096);
    let idf_index =
        match QdrantIndex::connect(&settings(&url, &run), &embedder.name(), Weighting::Idf).await {
            Ok(i) => i,
            Err(MemoryError::Index(e)) => {
                println!("skipped: no Qdrant server reachable at {url} (set QDRANT_TEST_URL): {e}");
                return;
            }
            Err(e) => panic!("connecting to Qdrant at {url}: {e}"),
        };
    assert_eq!(idf_index.len().await.expect("len"), 0, "a fresh collection");
    assert_eq!(
        idf_index
            .search(&[1.0; 4096], None, 5)
            .await
            .expect("search before the collection exists"),
        vec![]
    );

    let docs = corpus();
    assert!(docs.len() > 32, "more incidents than the fewest candidates");
    let texts: Vec<String> = docs.iter().map(Doc::text).collect();
    let vectors = embedder.embed(&texts).await.expect("embed");
    let queries = embedder
        .embed(&QUERIES.map(String::from))
        .await
        .expect("embed queries");
    let weights = Some(Arc::new(oncall::memory::idf_weights(&vectors)));

    let exact = Exact::new(Weighting::Idf);
    for (d, v) in docs.iter().zip(&vectors) {
        exact.put(d, v).await.expect("exact put");
        idf_index.put(d, v).await.expect("Qdrant put");
    }
    // Remembering an incident again replaces it.
    idf_index
        .put(&docs[0], &vectors[0])
        .await
        .expect("Qdrant put again");
    assert_eq!(idf_index.len().await.expect("len"), docs.len());
    assert_same("IDF", &exact, &idf_index, &queries, weights.clone()).await;

    // Dense embedders: a plain cosine search (another embedder name, another collection).
    let plain = QdrantIndex::connect(&settings(&url, &run), "dense-test", Weighting::None)
        .await
        .expect("connect");
    let plain_exact = Exact::new(Weighting::None);
    for (d, v) in docs.iter().zip(&vectors) {
        plain_exact.put(d, v).await.expect("exact put");
        plain.put(d, v).await.expect("Qdrant put");
    }
    assert_same("cosine", &plain_exact, &plain, &queries, None).await;

    let wrong = idf_index.put(&docs[1], &[1.0, 2.0]).await;
    assert!(
        matches!(&wrong, Err(MemoryError::Index(e)) if e.contains("does not fit")),
        "{wrong:?}"
    );

    // The points outlive the connection.
    let collection = idf_index.collection().to_string();
    drop(idf_index);
    let again = QdrantIndex::connect(&settings(&url, &run), &embedder.name(), Weighting::Idf)
        .await
        .expect("reconnect");
    assert_eq!(again.collection(), collection);
    assert_eq!(again.len().await.expect("len"), docs.len());
    assert_same("IDF after reconnecting", &exact, &again, &queries, weights).await;

    let client = qdrant_client::Qdrant::from_url(&url)
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .skip_compatibility_check()
        .build()
        .expect("client");
    for c in [collection, plain.collection().to_string()] {
        client
            .delete_collection(c)
            .await
            .expect("drop the test collection");
    }
    println!(
        "Qdrant at {url}: {} incidents, {} queries, same order and scores as the exact index",
        docs.len(),
        QUERIES.len()
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    // Port 9 (discard) on loopback: nothing listens there.
    let url = "http://127.0.0.1:9";
    let err = match QdrantIndex::connect(&settings(url, "x"), "hashed", Weighting::Idf).await {
        Ok(_) => {
            println!("skipped: something answers gRPC at {url}");
            return;
        }
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(matches!(err, MemoryError::Index(_)), "{err:?}");
    assert!(text.contains(url), "names the URL: {text}");
}
