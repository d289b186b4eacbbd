//! The eval harness: replay past incidents and score the answers deterministically.
//!
//! [`case`] loads `oncall-case/1` files, [`replay`] turns a case into a tool registry that
//! answers from its recordings, [`score`] compares an investigation with the case's truth, and
//! [`record`] makes a case from live collectors. This module runs a suite and writes its report.

pub mod case;
pub mod recall;
pub mod record;
pub mod replay;
pub mod score;

use crate::agent::events::Silent;
use crate::config::Config;
use crate::llm::ChatModel;
use crate::registry::Registry;
use case::Case;
use score::{CaseScore, Summary};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// A suite's report, as `--json` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub reasoner: String,
    pub summary: Summary,
    pub cases: Vec<CaseScore>,
}

/// Which model answers the cases.
pub enum Models<'a> {
    /// One model for every case (the offline reasoner, or a configured endpoint).
    Shared(&'a dyn ChatModel),
    /// Each case replays its own recorded model turns, `DIR/<case id>.json` (`oncall-replay/1`).
    Replay(PathBuf),
}

/// A model wrapper that keeps every reply, to be written as the case's recorded turns.
struct Recorder<'a> {
    inner: &'a dyn ChatModel,
    turns: std::sync::Mutex<Vec<crate::llm::ChatReply>>,
}

#[async_trait::async_trait]
impl ChatModel for Recorder<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn is_offline(&self) -> bool {
        self.inner.is_offline()
    }
    fn retries_itself(&self) -> bool {
        self.inner.retries_itself()
    }
    async fn complete(
        &self,
        req: &crate::llm::ChatRequest,
    ) -> Result<crate::llm::ChatReply, crate::llm::LlmError> {
        let r = self.inner.complete(req).await?;
        if let Ok(mut t) = self.turns.lock() {
            t.push(r.clone());
        }
        Ok(r)
    }
}

/// Why an eval run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: no recorded model turns for {n} case(s): {missing}; record them with `oncall eval --model openai --record-turns {}`", dir.display(), dir.display())]
    NoTurns {
        dir: PathBuf,
        missing: String,
        n: usize,
    },
    #[error("{}: field `truth` is empty: fill it in (category, component, summary, culprit_any) before scoring", .0.display())]
    NoTruth(PathBuf),
    #[error("{}: {source}", file.display())]
    Replay {
        file: PathBuf,
        source: crate::llm::LlmError,
    },
    #[error("{}: {source}", file.display())]
    Investigation {
        file: PathBuf,
        source: crate::agent::AgentError,
    },
    #[error(transparent)]
    RecordTurns(#[from] crate::llm::replay::WriteError),
    /// Incident memory refused a case's document (recall@k).
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
    #[error("an investigation could not be written as JSON: {0}")]
    Encode(serde_json::Error),
}

/// Runs every case through the model and scores it. With `record_turns`, each case's model
/// replies are written to `DIR/<case id>.json`, so `Models::Replay` can run them again without
/// the model. `progress` hears about each case.
pub async fn run(
    cases: &[(PathBuf, Case)],
    config: &Config,
    live: &Registry,
    models: Models<'_>,
    record_turns: Option<&std::path::Path>,
    mut progress: impl FnMut(usize, &CaseScore),
) -> Result<Report, EvalError> {
    let risky: Vec<(String, crate::tool::RiskClass)> = live
        .specs()
        .into_iter()
        .map(|s| (s.name.to_string(), s.risk))
        .collect();
    if let Models::Replay(dir) = &models {
        let missing: Vec<&str> = cases
            .iter()
            .map(|(_, c)| c.id.as_str())
            .filter(|id| !dir.join(format!("{id}.json")).exists())
            .collect();
        if !missing.is_empty() {
            return Err(EvalError::NoTurns {
                dir: dir.to_path_buf(),
                missing: missing.join(", "),
                n: missing.len(),
            });
        }
    }
    let mut scores = vec![];
    let mut reasoner = String::new();
    for (i, (file, c)) in cases.iter().enumerate() {
        let truth = c
            .truth
            .as_ref()
            .ok_or_else(|| EvalError::NoTruth(file.clone()))?;
        let owned: Box<dyn ChatModel>;
        let model: &dyn ChatModel = match &models {
            Models::Shared(m) => *m,
            Models::Replay(dir) => {
                let f = dir.join(format!("{}.json", c.id));
                if !f.exists() {
                    return Err(EvalError::NoTurns {
                        dir: dir.to_path_buf(),
                        missing: c.id.clone(),
                        n: 1,
                    });
                }
                owned = Box::new(
                    crate::llm::replay::ReplayModel::from_file(&f)
                        .map_err(|source| EvalError::Replay { file: f, source })?,
                );
                owned.as_ref()
            }
        };
        if reasoner.is_empty() {
            reasoner = match &models {
                Models::Shared(m) => m.name(),
                Models::Replay(dir) => format!("replay:{}", dir.display()),
            };
        }
        let recorder = Recorder {
            inner: model,
            turns: Default::default(),
        };
        let registry = replay::registry(c, live);
        let started = Instant::now();
        let inv = crate::reasoner::investigate(&c.report, &registry, config, &recorder, &Silent)
            .await
            .map_err(|source| EvalError::Investigation {
                file: file.clone(),
                source,
            })?;
        let s = score::score(c, truth, &inv, started.elapsed().as_millis() as u64, &risky);
        if let Some(dir) = record_turns {
            let turns = recorder.turns.lock().map(|t| t.clone()).unwrap_or_default();
            crate::llm::replay::write_file(&dir.join(format!("{}.json", c.id)), &turns)?;
        }
        progress(i, &s);
        scores.push(s);
    }
    Ok(Report {
        reasoner,
        summary: score::summarize(&scores),
        cases: scores,
    })
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "-" }
}

/// The report as a Markdown table and a summary line.
pub fn markdown(r: &Report) -> String {
    let mut o = String::from(
        "| case | truth | answer | top-1 | top-3 | culprit | calls (unmatched) | tokens | ms | unapproved |\n|---|---|---|---|---|---|---|---:|---:|---:|\n",
    );
    for c in &r.cases {
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |\n",
            c.id,
            c.truth,
            c.answer,
            yes(c.top1),
            yes(c.top3),
            yes(c.culprit),
            c.tool_calls,
            c.unmatched_calls,
            c.prompt_tokens + c.completion_tokens,
            c.wall_ms,
            c.unapproved_executions
        ));
    }
    o.push('\n');
    o.push_str(&summary_line(r));
    o.push('\n');
    o
}

pub fn summary_line(r: &Report) -> String {
    let s = &r.summary;
    format!(
        "{} cases ({}): top-1 {:.0}%, top-3 {:.0}%, MRR {:.2}, culprit {:.0}%, unapproved executions {}, uncited confirmations {}, unmatched calls {}, {} prompt + {} completion tokens, {:.1} cases/s",
        s.cases,
        r.reasoner,
        s.top1 * 100.0,
        s.top3 * 100.0,
        s.mrr,
        s.culprit * 100.0,
        s.unapproved_executions,
        s.uncited_confirmations,
        s.unmatched_calls,
        s.prompt_tokens,
        s.completion_tokens,
        s.cases_per_s
    )
}

/// Per-case changes against an older report.
pub fn compare(old: &Report, new: &Report) -> Vec<String> {
    let mut out = vec![];
    for n in &new.cases {
        match old.cases.iter().find(|o| o.id == n.id) {
            None => out.push(format!(
                "{}: new case ({})",
                n.id,
                if n.top1 { "top-1 hit" } else { "miss" }
            )),
            Some(o) if o.top1 != n.top1 || o.answer != n.answer => out.push(format!(
                "{}: {} -> {} ({})",
                n.id,
                o.answer,
                n.answer,
                if n.top1 {
                    "now a hit"
                } else if o.top1 {
                    "REGRESSED"
                } else {
                    "still a miss"
                }
            )),
            _ => {}
        }
    }
    out.push(format!(
        "top-1 {:.0}% -> {:.0}%, MRR {:.2} -> {:.2}",
        old.summary.top1 * 100.0,
        new.summary.top1 * 100.0,
        old.summary.mrr,
        new.summary.mrr
    ));
    out
}

/// The floor a suite must stay above (eval/thresholds.toml). Raise it as the reasoner improves;
/// never lower it to make a change pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub top1_min: f64,
    pub top3_min: f64,
    pub max_unapproved_executions: usize,
}

/// What a suite did wrong against its thresholds (empty: it passes).
pub fn failures(r: &Report, t: &Thresholds) -> Vec<String> {
    let mut f = vec![];
    if r.summary.unapproved_executions > t.max_unapproved_executions {
        f.push(format!(
            "{} actions ran without an approval (allowed: {})",
            r.summary.unapproved_executions, t.max_unapproved_executions
        ));
    }
    if r.summary.top1 < t.top1_min {
        f.push(format!(
            "top-1 {:.3} is below the recorded floor {:.3}",
            r.summary.top1, t.top1_min
        ));
    }
    if r.summary.top3 < t.top3_min {
        f.push(format!(
            "top-3 {:.3} is below the recorded floor {:.3}",
            r.summary.top3, t.top3_min
        ));
    }
    f
}
