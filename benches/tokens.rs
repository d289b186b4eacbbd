//! Prompt tokens of one investigation with compact evidence beside the same investigation with
//! raw tool outputs, on the same recorded snapshots, counted with tiktoken (o200k_base).
//!
//! Run: `cargo bench --bench tokens`. Scenarios: this host as it is, and this host while
//! `oncall-fault cpu` busy-loops (so the snapshot holds a real finding). Each snapshot is taken
//! once and served to both runs by a fixed tool, so the only difference is the evidence mode.

use async_trait::async_trait;
use oncall::agent::events::Silent;
use oncall::collectors::host::{SnapshotArgs, UseSnapshot};
use oncall::config::{Config, EvidenceMode};
use oncall::reasoner::OfflineModel;
use oncall::reasoner::investigate;
use oncall::registry::Registry;
use oncall::tool::{RiskClass, Tool, ToolError};
use std::time::{Duration, Instant};

/// Serves one recorded snapshot as `host.use_snapshot`.
struct Fixed(UseSnapshot);

#[async_trait]
impl Tool for Fixed {
    const NAME: &'static str = "host.use_snapshot";
    const DESCRIPTION: &'static str =
        "USE method snapshot of this host (recorded for the benchmark).";
    const RISK: RiskClass = RiskClass::Read;
    type Args = SnapshotArgs;
    type Output = UseSnapshot;
    async fn call(&self, _args: SnapshotArgs) -> Result<UseSnapshot, ToolError> {
        Ok(self.0.clone())
    }
}

struct Row {
    scenario: &'static str,
    mode: &'static str,
    prompt: u64,
    completion: u64,
    steps: u32,
    evidence_tokens: usize,
    top: String,
    ms: f64,
}

fn run(
    rt: &tokio::runtime::Runtime,
    scenario: &'static str,
    snap: &UseSnapshot,
    mode: EvidenceMode,
) -> Row {
    let mut c = Config::default();
    c.llm.evidence = mode;
    let registry = Registry::from_tools(vec![Box::new(Fixed(snap.clone()))]);
    let model = OfflineModel::new(c.thresholds.clone());
    let started = Instant::now();
    let inv = rt
        .block_on(investigate(
            "the api is slow",
            &registry,
            &c,
            &model,
            &Silent,
        ))
        .expect("investigation");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let counter = oncall::llm::tokens::TokenCounter::for_settings(&c.llm).expect("tokenizer");
    let out = serde_json::to_value(snap).expect("snapshot json");
    let evidence =
        oncall::agent::evidence::render("host.use_snapshot", &out, mode, usize::MAX / 2, &counter);
    Row {
        scenario,
        mode: match mode {
            EvidenceMode::Compact => "compact",
            EvidenceMode::Raw => "raw",
        },
        prompt: inv.tokens.prompt_tokens,
        completion: inv.tokens.completion_tokens,
        steps: inv.steps,
        evidence_tokens: counter.count(&evidence),
        top: inv
            .hypotheses
            .first()
            .map(|h| format!("{} {:?} {:.2}", h.category, h.status, h.confidence))
            .unwrap_or_default(),
        ms,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = Config::default();
    let quiet =
        oncall::collectors::host::take(&c.host, &c.thresholds, Duration::from_millis(1000), 5);
    let hog = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-fault"))
        .args(["--name", "ledger-sync", "--seconds", "10", "cpu"])
        .stdout(std::process::Stdio::null())
        .spawn();
    std::thread::sleep(Duration::from_millis(1500));
    let busy =
        oncall::collectors::host::take(&c.host, &c.thresholds, Duration::from_millis(1000), 5);
    if let Ok(mut h) = hog {
        let _ = h.kill();
        let _ = h.wait();
    }
    let mut rows = vec![];
    for (name, snap) in [("quiet host", &quiet), ("CPU hog", &busy)] {
        rows.push(run(&rt, name, snap, EvidenceMode::Compact));
        rows.push(run(&rt, name, snap, EvidenceMode::Raw));
    }
    println!(
        "Prompt tokens of one offline investigation (\"the api is slow\"), tiktoken o200k_base,"
    );
    println!(
        "with the snapshot evidence compacted vs. raw. Same snapshot, same reasoner, same steps.\n"
    );
    println!(
        "| scenario | evidence | snapshot evidence tokens | prompt tokens (all steps) | completion tokens | steps | top hypothesis | loop ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            r.scenario, r.mode, r.evidence_tokens, r.prompt, r.completion, r.steps, r.top, r.ms
        );
    }
    println!();
    for pair in rows.chunks(2) {
        let (c, r) = (&pair[0], &pair[1]);
        println!(
            "{}: compact evidence is {:.1}x smaller than raw ({} vs {} tokens); the investigation's prompt tokens drop {:.0}% ({} vs {}), same top hypothesis: {}",
            c.scenario,
            r.evidence_tokens as f64 / c.evidence_tokens.max(1) as f64,
            c.evidence_tokens,
            r.evidence_tokens,
            100.0 * (1.0 - c.prompt as f64 / r.prompt.max(1) as f64),
            c.prompt,
            r.prompt,
            if c.top == r.top { "yes" } else { "NO" }
        );
    }
}
