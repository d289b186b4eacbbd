//! Replays recorded model turns, in order, whatever the request: for protocol tests and the eval
//! harness. When the recording runs out, it says so instead of inventing a turn.
//!
//! File format (`oncall-replay/1`):
//! `{"format": "oncall-replay/1", "turns": [{"content": "...", "tool_calls": [{"id", "name", "arguments"}]}]}`

use super::{ChatModel, ChatReply, ChatRequest, LlmError};
use async_trait::async_trait;
use serde::Deserialize;
use std::path::Path;
use std::sync::Mutex;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayFile {
    format: String,
    turns: Vec<ChatReply>,
}

/// Recorded turns, served in order.
pub struct ReplayModel {
    name: String,
    turns: Vec<ChatReply>,
    next: Mutex<usize>,
}

impl ReplayModel {
    pub fn new(name: &str, turns: Vec<ChatReply>) -> ReplayModel {
        ReplayModel {
            name: name.to_string(),
            turns,
            next: Mutex::new(0),
        }
    }

    pub fn from_file(path: &Path) -> Result<ReplayModel, LlmError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LlmError::Config(format!(
                "cannot read llm.replay_file {}: {e}",
                path.display()
            ))
        })?;
        let f: ReplayFile = serde_json::from_str(&text)
            .map_err(|e| LlmError::Config(format!("llm.replay_file {}: {e}", path.display())))?;
        if f.format != "oncall-replay/1" {
            return Err(LlmError::Config(format!(
                "llm.replay_file {}: format is {:?}, expected \"oncall-replay/1\"",
                path.display(),
                f.format
            )));
        }
        Ok(ReplayModel::new(
            &format!("replay:{}", path.display()),
            f.turns,
        ))
    }
}

/// Why recorded turns could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create {}: {source}", dir.display())]
    Dir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the turns cannot be written as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Writes recorded turns as an `oncall-replay/1` file (creating its directory).
pub fn write_file(path: &Path, turns: &[ChatReply]) -> Result<(), WriteError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| WriteError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let doc = serde_json::json!({"format": "oncall-replay/1", "turns": turns});
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n").map_err(|source| WriteError::File {
        path: path.to_path_buf(),
        source,
    })
}

#[async_trait]
impl ChatModel for ReplayModel {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn complete(&self, _req: &ChatRequest) -> Result<ChatReply, LlmError> {
        let mut next = self.next.lock().map_err(|_| LlmError::ReplayExhausted(0))?;
        let turn = self
            .turns
            .get(*next)
            .cloned()
            .ok_or(LlmError::ReplayExhausted(*next))?;
        *next += 1;
        Ok(turn)
    }
}
