//! `[actions]` and `[changes]`: where declarative actions and the change log are read from.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the declarative actions come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ActionSettings {
    /// A directory of action files (`*.toml` but `policy.toml`); none: the shipped ones.
    pub dir: Option<PathBuf>,
}

/// Where recent changes come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeSettings {
    /// A JSON Lines change log, one `{"at", "kind", "what", "service"}` per line; empty: none.
    pub file: Option<PathBuf>,
}
