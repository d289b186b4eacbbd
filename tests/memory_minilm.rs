#![cfg(feature = "minilm")]
//! The all-MiniLM-L6-v2 embedder on the real model: vector shape, meaning (a related pair of
//! incident reports scores above an unrelated one) and batching. Needs the model files, which
//! `scripts/fetch-minilm.sh` puts in `models/all-MiniLM-L6-v2`; without them each test says so
//! and passes.
//!
//! Timings: `cargo test --release --features minilm --test memory_minilm -- --ignored --nocapture`.

use oncall::memory::Embedder;
use oncall::memory::embed::cosine;
use oncall::memory::minilm::{DIMS, Minilm};
use std::path::PathBuf;
use std::time::Instant;

fn model() -> Option<Minilm> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").is_file() {
        eprintln!(
            "skipped: {} holds no model: run scripts/fetch-minilm.sh",
            dir.display()
        );
        return None;
    }
    match Minilm::load(&dir) {
        Ok(m) => Some(m),
        Err(e) => panic!("the model in {} does not load: {e}", dir.display()),
    }
}

fn texts(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

const CHECKOUT: &str = "checkout hangs waiting on a row lock";
const PAYMENTS: &str = "payments stuck: sessions blocked by a lock held in an idle transaction";
const DISK: &str = "the upload disk is full";

#[tokio::test]
async fn vectors_are_unit_length_and_related_reports_score_higher() {
    let Some(m) = model() else { return };
    assert_eq!(m.name(), "minilm-l6-v2");
    assert_eq!(m.weighting(), oncall::memory::Weighting::None);

    let long = "connection pool exhausted after deploy ".repeat(200);
    let v = m
        .embed(&texts(&[CHECKOUT, PAYMENTS, DISK, "", &long]))
        .await
        .expect("embedding works");
    assert_eq!(v.len(), 5);
    for x in &v {
        assert_eq!(x.len(), DIMS);
        assert_eq!(DIMS, 384);
        let norm = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        assert!(x.iter().all(|a| a.is_finite()));
    }
    let related = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    println!("related {related:.3}, unrelated {unrelated:.3}");
    assert!(
        related > unrelated + 0.1,
        "related {related} should beat unrelated {unrelated}"
    );
    assert!(m.embed(&[]).await.expect("no texts, no vectors").is_empty());
}

#[tokio::test]
async fn a_batch_gives_the_vectors_of_single_calls() {
    let Some(m) = model() else { return };
    let four = texts(&[
        CHECKOUT,
        PAYMENTS,
        DISK,
        "p99 latency of the orders API tripled after the 14:05 deploy; CPU is flat",
    ]);
    let batch = m.embed(&four).await.expect("batch");
    assert_eq!(batch.len(), 4);
    for (i, t) in four.iter().enumerate() {
        let single = m
            .embed(std::slice::from_ref(t))
            .await
            .expect("single")
            .pop()
            .expect("one vector");
        let diff = single
            .iter()
            .zip(&batch[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "text {i}: batch and single differ by {diff}");
    }
}

#[tokio::test]
#[ignore = "timing only: run with --ignored --nocapture"]
async fn timings() {
    let start = Instant::now();
    let Some(m) = model() else { return };
    println!("load: {:?}", start.elapsed());
    let base = [
        CHECKOUT,
        PAYMENTS,
        DISK,
        "orders API p99 tripled after deploy",
    ];
    let warm = m.embed(&texts(&base)).await.expect("warm-up");
    println!("{CHECKOUT:?} starts {:?}", &warm[0][..6]);
    for n in [1usize, 4, 32] {
        let batch: Vec<String> = (0..n)
            .map(|i| format!("{} (case {i})", base[i % base.len()]))
            .collect();
        let runs = 3;
        let start = Instant::now();
        for _ in 0..runs {
            m.embed(&batch).await.expect("embed");
        }
        println!("{n} sentences: {:?} per call", start.elapsed() / runs);
    }
}
