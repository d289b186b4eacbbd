//! `[policy]`: the rules file, the environment, approvals, the audit log, redaction.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Policy settings: the rules file, the environment, approvals, the audit log, redaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// How long an approval stays valid, in seconds.
    pub approval_ttl_s: u64,
    /// The environment the policy's rules are applied in (`production`, `staging`, ...).
    pub environment: String,
    /// The policy file; none: the shipped `tools/policy.toml` (compiled in).
    pub file: Option<PathBuf>,
    /// The append-only, hash-chained audit log; none: kept in memory for this run only.
    pub audit_file: Option<PathBuf>,
    /// Extra secrets to redact, each `{ kind = "ticket", pattern = "TCK-[0-9]+" }`.
    pub redact: Vec<CustomRedaction>,
}

pub use crate::redact::CustomRedaction;

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            approval_ttl_s: 900,
            environment: "production".into(),
            file: None,
            audit_file: None,
            redact: vec![],
        }
    }
}
