//! `memory.similar`: the past incidents that looked like this one, with their cause and what
//! fixed them. A lead, never evidence about the present: a past cause still has to be measured
//! now before the board may confirm it.

use super::{Hit, Memory};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub struct SimilarTool {
    /// None: no incident memory in this run (the tool is listed but not offered).
    pub memory: Option<Arc<Memory>>,
}

/// Arguments of `memory.similar`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimilarArgs {
    /// What is known so far, in plain words: the report and the abnormal signals measured
    /// (e.g. "checkout hangs; many sessions wait on a row lock held by an idle transaction").
    pub text: String,
    /// How many past incidents to return, 1 to 10 (default 3).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct SimilarOutput {
    /// How many resolved incidents memory holds.
    pub remembered: usize,
    pub searched_with: String,
    pub similar: Vec<Hit>,
    pub note: String,
}

#[async_trait]
impl Tool for SimilarTool {
    const NAME: &'static str = "memory.similar";
    const DESCRIPTION: &'static str = "Past resolved incidents most similar to this one, with their confirmed cause, evidence and what fixed them. Call it early with the report and the first abnormal signals; treat a match as a lead to measure now, not as evidence.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = SimilarArgs;
    type Output = SimilarOutput;

    fn available(&self) -> bool {
        self.memory.is_some()
    }

    async fn call(&self, args: SimilarArgs) -> Result<SimilarOutput, ToolError> {
        let failed = |message: String| ToolError::Failed {
            tool: Self::NAME.into(),
            message,
        };
        let memory = self
            .memory
            .as_ref()
            .ok_or_else(|| failed("incident memory is not open in this run".into()))?;
        if args.text.trim().is_empty() {
            return Err(ToolError::BadArguments {
                tool: Self::NAME.into(),
                message: "`text` is empty: describe the incident (report and signals)".into(),
            });
        }
        let limit = crate::tool::in_range(Self::NAME, "limit", args.limit.unwrap_or(3), 1..=10)?;
        let similar = memory
            .similar(&args.text, limit)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let remembered = memory.len().await.map_err(|e| failed(e.to_string()))?;
        let note = match (remembered, similar.first()) {
            (0, _) => "no resolved incident is remembered yet".to_string(),
            (_, None) => "no remembered incident is similar enough".to_string(),
            (_, Some(h)) => format!(
                "closest: {} (score {:.2}); check whether its cause is present now before relying on it",
                h.incident, h.score
            ),
        };
        Ok(SimilarOutput {
            remembered,
            searched_with: memory.describe(),
            similar,
            note,
        })
    }
}
