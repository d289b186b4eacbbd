//! The replayable incident case, format `oncall-case/1`, and its loader.
//!
//! Every problem a loader can find is reported with the file and the field, so a person fixing a
//! case knows where to look: a wrong `format`, a missing field, an unknown category, a recording
//! of a tool that no longer exists, or one whose output shape changed since it was recorded.

use crate::taxonomy::Category;
use crate::tool::ToolSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "oncall-case/1";

/// One recorded tool answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub tool: String,
    #[serde(default)]
    pub args: Value,
    /// The tool's output version when it was recorded (absent: 1).
    #[serde(default = "one")]
    pub version: u32,
    /// Seconds after `observed_at` when it was taken (time series are recorded at several points).
    #[serde(default)]
    pub at_s: f64,
    pub output: Value,
}

fn one() -> u32 {
    1
}

/// A change recorded in the context, e.g. a deploy (the change log's own type).
pub use crate::collectors::changes::Change;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Context {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub user_facing: bool,
    #[serde(default)]
    pub recent_changes: Vec<Change>,
}

/// What was established afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub category: Category,
    #[serde(default)]
    pub component: Option<String>,
    pub summary: String,
    #[serde(default)]
    pub culprit_any: Vec<String>,
    #[serde(default)]
    pub distractors: Vec<String>,
    #[serde(default)]
    pub stabilize: Vec<String>,
    #[serde(default)]
    pub must_not: Vec<String>,
}

/// One case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub format: String,
    pub id: String,
    pub title: String,
    /// `recorded`, `derived:<source>` or `synthetic`.
    pub provenance: String,
    pub report: String,
    pub observed_at: DateTime<Utc>,
    #[serde(default)]
    pub context: Context,
    pub recordings: Vec<Recording>,
    /// `null` until a person fills it in after recording.
    pub truth: Option<Truth>,
}

/// Why a case could not be loaded: always names the file, and the field when there is one.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CaseError {
    #[error("{file}: cannot read: {reason}")]
    Unreadable { file: PathBuf, reason: String },
    #[error("{file}: {reason}")]
    Invalid { file: PathBuf, reason: String },
    #[error("{file}: field `{field}`: {reason}")]
    Field {
        file: PathBuf,
        field: String,
        reason: String,
    },
}

fn field(file: &Path, field: &str, reason: impl Into<String>) -> CaseError {
    CaseError::Field {
        file: file.to_path_buf(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// Loads and checks one case against the tools that exist now.
pub fn load(file: &Path, tools: &[ToolSpec]) -> Result<Case, CaseError> {
    let text = std::fs::read_to_string(file).map_err(|e| CaseError::Unreadable {
        file: file.into(),
        reason: e.to_string(),
    })?;
    let raw: Value = serde_json::from_str(&text).map_err(|e| CaseError::Invalid {
        file: file.into(),
        reason: format!("not JSON: {e}"),
    })?;
    match raw.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(field(
                file,
                "format",
                format!("is {other:?}; this oncall reads {FORMAT:?}"),
            ));
        }
        None => {
            return Err(field(
                file,
                "format",
                format!("is missing; expected {FORMAT:?}"),
            ));
        }
    }
    if let Some(cat) = raw.pointer("/truth/category").and_then(Value::as_str) {
        Category::parse(cat).map_err(|e| field(file, "truth.category", e.to_string()))?;
    }
    // The path of the offending field goes into the message (`context.recent_changes[0].kind`).
    let case: Case = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        // serde names a missing field in its message; lift it into the field slot.
        match msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field"))
        {
            Some(f) if path == "." => field(file, f, "is missing"),
            Some(f) => field(file, &format!("{path}.{f}"), "is missing"),
            None if path == "." => CaseError::Invalid {
                file: file.into(),
                reason: msg,
            },
            None => field(file, &path, msg),
        }
    })?;
    for (i, r) in case.recordings.iter().enumerate() {
        let spec = tools.iter().find(|t| t.name == r.tool).ok_or_else(|| {
            field(
                file,
                &format!("recordings[{i}].tool"),
                format!(
                    "no tool named {:?} exists now; re-record the case or remove the recording",
                    r.tool
                ),
            )
        })?;
        if spec.version != r.version {
            return Err(field(
                file,
                &format!("recordings[{i}].version"),
                format!(
                    "{} was recorded at output version {} but the tool is now at version {}: re-record the case",
                    r.tool, r.version, spec.version
                ),
            ));
        }
    }
    Ok(case)
}

/// Loads every `*.json` case under a directory, sorted by file name. Stops at the first broken
/// case: a suite with a broken case is not a suite to score.
pub fn load_dir(dir: &Path, tools: &[ToolSpec]) -> Result<Vec<(PathBuf, Case)>, CaseError> {
    let rd = std::fs::read_dir(dir).map_err(|e| CaseError::Unreadable {
        file: dir.into(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| load(&f, tools).map(|c| (f, c)))
        .collect()
}
