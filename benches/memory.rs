//! Incident memory: what remembering and searching cost at a team's scale.
//!
//! Run: `cargo bench --bench memory`. Documents are synthetic incidents built from the eval
//! suite's vocabulary (reports, causes, evidence, remediation), each made distinct. Measured:
//! hashed TF-IDF embedding per document, exact search over 1 000 and 10 000 remembered incidents
//! (p50/p99 of 200 queries), remembering into the SQLite incident store (fsync per incident),
//! and opening memory again from that store (a restart).

use oncall::config::Config;
use oncall::memory::{Doc, Embedder, Hashed, Memory};
use std::sync::Arc;
use std::time::Instant;

const REPORTS: &[&str] = &[
    "checkout is slow since this morning",
    "the search api got slow a few minutes ago",
    "uploads fail with an error since a few minutes",
    "new connections to the broker are refused now and then",
    "checkout requests hang",
    "new requests fail to get a database connection",
    "checkout fails for customers",
    "the image service keeps getting slower and its memory climbs",
];
const CAUSES: &[(&str, &str, &str)] = &[
    (
        "host.cpu_saturation",
        "cpu",
        "ingest-worker runs busy threads; run queue 2.5 per core, PSI cpu 90%",
    ),
    (
        "db.lock_contention",
        "postgres:app",
        "billing-worker idle in transaction holds a row lock; 3 sessions wait",
    ),
    (
        "host.disk_full",
        "fs:/var/lib/uploads",
        "the upload filesystem is 100% full",
    ),
    (
        "db.slow_query",
        "postgres:app",
        "SELECT FROM orders WHERE customer_ref seq-scans 1M rows per call",
    ),
    (
        "dependency.errors",
        "service:payments",
        "provider.authorize fails: card network unavailable",
    ),
    (
        "host.memory_pressure",
        "memory",
        "thumbnailer grows 300 MiB/s; OOM within a minute",
    ),
    (
        "host.fd_exhaustion",
        "conn-broker",
        "conn-broker holds 250 of its 256 descriptors",
    ),
    (
        "db.connection_exhaustion",
        "postgres:app",
        "report-batch holds 16 of the 17 usable connections",
    ),
];

fn doc(i: usize) -> Doc {
    let (cat, comp, cause) = CAUSES[i % CAUSES.len()];
    Doc {
        incident: format!("2026-01-01-{i:05}"),
        title: REPORTS[i % REPORTS.len()].into(),
        report: format!(
            "{} (shard {} of region r{})",
            REPORTS[(i / 3) % REPORTS.len()],
            i % 97,
            i % 13
        ),
        category: Some(cat.into()),
        component: Some(comp.into()),
        cause: format!("{cause} on host web-{}", i % 211),
        evidence: vec![format!("c1 {cause}"), format!("c{} run {}", i % 7, i)],
        remediation: vec![format!("ran host.signal_process {{\"pid\": {}}}", 1000 + i)],
        resolved_at: chrono::Utc::now(),
    }
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config::default();
    let hashed = Hashed::new(config.memory.hashed_dims);
    let texts: Vec<String> = (0..2000).map(|i| doc(i).text()).collect();
    let t = Instant::now();
    for x in &texts {
        std::hint::black_box(hashed.vector(x));
    }
    let embed_us = t.elapsed().as_secs_f64() * 1e6 / texts.len() as f64;
    println!("| measure | value |\n| --- | ---: |");
    println!(
        "| hashed TF-IDF embedding, one incident ({} dims) | {embed_us:.0} µs |",
        config.memory.hashed_dims
    );
    for n in [1_000usize, 10_000] {
        let emb: Arc<dyn Embedder> = Arc::new(hashed.clone());
        let m = Memory::in_process(emb, -1.0);
        let t = Instant::now();
        rt.block_on(async {
            for i in 0..n {
                m.remember(doc(i)).await.expect("remember");
            }
        });
        let add_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut lat = vec![];
        rt.block_on(async {
            // The first search after the last remember builds the weighted copy of the index.
            let t = Instant::now();
            m.similar("checkout requests hang on a lock", 3)
                .await
                .expect("search");
            println!(
                "| first search after remembering {n} (builds the IDF-weighted index) | {:.1} ms |",
                t.elapsed().as_secs_f64() * 1e3
            );
            for q in 0..200 {
                let t = Instant::now();
                let hits = m
                    .similar(
                        &format!(
                            "{} {}",
                            REPORTS[q % REPORTS.len()],
                            CAUSES[q % CAUSES.len()].2
                        ),
                        3,
                    )
                    .await
                    .expect("search");
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(hits.len(), 3);
            }
        });
        println!("| remember {n} incidents in process | {add_ms:.0} ms |");
        println!(
            "| exact search over {n}: p50 / p99 | {:.2} / {:.2} ms |",
            pct(lat.clone(), 0.5),
            pct(lat, 0.99)
        );
    }
    // The store: remembering with an fsync per incident, and a restart.
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("oncall.db").display());
    let n = 2_000;
    rt.block_on(async {
        let store = oncall::incidents::open(&url).await.expect("store");
        let m = Memory::open(&config, store).await.expect("memory");
        let t = Instant::now();
        for i in 0..n {
            m.remember(doc(i)).await.expect("remember");
        }
        println!(
            "| remember into the SQLite store (fsync each), per incident | {:.2} ms |",
            t.elapsed().as_secs_f64() * 1e3 / n as f64
        );
        drop(m);
        let t = Instant::now();
        let store = oncall::incidents::open(&url).await.expect("store");
        let m = Memory::open(&config, store).await.expect("memory");
        assert_eq!(m.len().await.expect("len"), n);
        println!(
            "| open memory of {n} incidents from the store (restart) | {:.0} ms |",
            t.elapsed().as_secs_f64() * 1e3
        );
    });
    let db = std::fs::metadata(dir.path().join("oncall.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "| store size for {n} remembered incidents | {:.1} MiB |",
        db as f64 / (1 << 20) as f64
    );
}
