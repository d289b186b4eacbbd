//! Recall@k of incident memory over the eval suite, per embedder.
//!
//! Each case is first investigated by replay and remembered as a resolved incident would be
//! (its report, the cause the reasoner confirmed, the evidence, the proposed remediation). Then,
//! leaving each case out of memory in turn, the case is investigated again with
//! `memory.similar` on: a hit is a returned incident whose true root-cause category (the case's
//! `truth`) equals the case's own. Cases whose category has no sibling in the suite, and cases
//! where nothing is wrong, are not scored: there is nothing right to find.

use crate::agent::events::Silent;
use crate::config::Config;
use crate::eval::EvalError;
use crate::eval::case::Case;
use crate::memory::{Embedder, Memory};
use crate::registry::Registry;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// One scored case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRecall {
    pub case: String,
    pub category: String,
    /// 1-based rank of the first sibling among the returned incidents; none: not in the top k.
    pub rank: Option<usize>,
    /// The incidents returned, best first.
    pub returned: Vec<String>,
    /// What the reasoner searched with.
    pub query: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecallReport {
    pub embedder: String,
    pub k: usize,
    pub remembered: usize,
    pub scored: usize,
    pub hits_at_1: usize,
    pub hits_at_k: usize,
    pub recall_at_1: f64,
    pub recall_at_k: f64,
    /// Milliseconds spent embedding and searching, per query (mean).
    pub mean_query_ms: f64,
    pub cases: Vec<CaseRecall>,
}

fn truth_category(c: &Case) -> Option<String> {
    c.truth.as_ref().map(|t| t.category.label().to_string())
}

/// Each case investigated by replay (the offline reasoner) and turned into the document a
/// resolved incident leaves in memory, with the case's true category. Cases without a truth
/// are skipped.
pub async fn remembered(
    cases: &[(PathBuf, Case)],
    config: &Config,
    live: &Registry,
) -> Result<Vec<(crate::memory::Doc, String)>, EvalError> {
    let model = crate::reasoner::OfflineModel::new(config.thresholds.clone());
    let mut out = vec![];
    for (file, c) in cases {
        let Some(cat) = truth_category(c) else {
            continue;
        };
        let reg = crate::eval::replay::registry(c, live);
        let inv = crate::reasoner::investigate(&c.report, &reg, config, &model, &Silent)
            .await
            .map_err(|source| EvalError::Investigation {
                file: file.clone(),
                source,
            })?;
        let v = serde_json::to_value(&inv).map_err(EvalError::Encode)?;
        out.push((
            crate::memory::Doc::from_finished(
                &c.id,
                &c.title,
                &inv.report,
                &v,
                vec![],
                c.observed_at,
            ),
            cat,
        ));
    }
    Ok(out)
}

/// Recall@k of `embedder` over `cases`, with the offline reasoner replaying each case.
pub async fn recall(
    cases: &[(PathBuf, Case)],
    config: &Config,
    live: &Registry,
    embedder: Arc<dyn Embedder>,
    k: usize,
) -> Result<RecallReport, EvalError> {
    let model = crate::reasoner::OfflineModel::new(config.thresholds.clone());
    let pairs = remembered(cases, config, live).await?;
    let truth: HashMap<String, String> = pairs
        .iter()
        .map(|(d, c)| (d.incident.clone(), c.clone()))
        .collect();
    let docs: Vec<crate::memory::Doc> = pairs.into_iter().map(|(d, _)| d).collect();
    let mut scored = vec![];
    let mut query_ms = vec![];
    for (file, c) in cases {
        let Some(cat) = truth.get(&c.id) else {
            continue;
        };
        let siblings = truth
            .iter()
            .filter(|(id, t)| *id != &c.id && *t == cat)
            .count();
        if cat == "none" || siblings == 0 {
            continue;
        }
        let memory = Memory::in_process(embedder.clone(), -1.0);
        for d in docs.iter().filter(|d| d.incident != c.id) {
            memory.remember(d.clone()).await?;
        }
        let memory = Arc::new(memory);
        let reg = crate::eval::replay::registry(c, live).with_tool(Box::new(
            crate::memory::tool::SimilarTool {
                memory: Some(memory.clone()),
            },
        ));
        let inv = crate::reasoner::investigate(&c.report, &reg, config, &model, &Silent)
            .await
            .map_err(|source| EvalError::Investigation {
                file: file.clone(),
                source,
            })?;
        let call = inv
            .tool_calls
            .iter()
            .find(|t| t.tool == <crate::memory::tool::SimilarTool as crate::tool::Tool>::NAME);
        let (query, returned, ms) = match call {
            Some(t) => (
                t.args["text"].as_str().unwrap_or_default().to_string(),
                t.output
                    .as_ref()
                    .and_then(|o| o["similar"].as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|h| h["incident"].as_str().map(str::to_string))
                            .take(k)
                            .collect()
                    })
                    .unwrap_or_default(),
                t.duration_ms as f64,
            ),
            None => (String::new(), vec![], 0.0),
        };
        query_ms.push(ms);
        let rank = returned
            .iter()
            .position(|id: &String| truth.get(id) == Some(cat))
            .map(|p| p + 1);
        scored.push(CaseRecall {
            case: c.id.clone(),
            category: cat.clone(),
            rank,
            returned,
            query,
        });
    }
    let n = scored.len();
    let at1 = scored.iter().filter(|s| s.rank == Some(1)).count();
    let atk = scored.iter().filter(|s| s.rank.is_some()).count();
    let ratio = |h: usize| if n == 0 { 0.0 } else { h as f64 / n as f64 };
    Ok(RecallReport {
        embedder: embedder.name(),
        k,
        remembered: docs.len(),
        scored: n,
        hits_at_1: at1,
        hits_at_k: atk,
        recall_at_1: ratio(at1),
        recall_at_k: ratio(atk),
        mean_query_ms: if query_ms.is_empty() {
            0.0
        } else {
            query_ms.iter().sum::<f64>() / query_ms.len() as f64
        },
        cases: scored,
    })
}

/// The reports as a Markdown table (one row per embedder) and the misses.
pub fn markdown(reports: &[RecallReport]) -> String {
    let mut o = String::from(
        "| embedder | remembered | scored | recall@1 | recall@k | ms/query |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        o.push_str(&format!(
            "| {} | {} | {} | {:.2} ({}/{}) | {:.2} ({}/{}, k={}) | {:.1} |\n",
            r.embedder,
            r.remembered,
            r.scored,
            r.recall_at_1,
            r.hits_at_1,
            r.scored,
            r.recall_at_k,
            r.hits_at_k,
            r.scored,
            r.k,
            r.mean_query_ms
        ));
    }
    for r in reports {
        for c in r.cases.iter().filter(|c| c.rank != Some(1)) {
            o.push_str(&format!(
                "\n- {}: {} ({}) returned {:?}",
                r.embedder, c.case, c.category, c.returned
            ));
        }
    }
    o.push('\n');
    o
}

/// Recall reports as JSON.
pub fn json(reports: &[RecallReport]) -> Value {
    serde_json::to_value(reports).unwrap_or(Value::Null)
}
