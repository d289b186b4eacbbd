//! Changes: what changed shortly before an incident (deploys, configuration, feature flags).
//!
//! "What changed?" is the first question of a regression, and a recent change is the reason to
//! roll back before the root cause is known. The source is a change log the team's pipelines
//! append to: a JSON Lines file (`[changes] file = "..."`), one change per line:
//!
//! ```json
//! {"at": "2026-11-27T03:10:00Z", "kind": "deploy", "what": "storefront v2.5.0", "service": "storefront"}
//! ```
//!
//! `kind` is `deploy`, `config`, `flag` or `infra`; `service` is optional (a change without one
//! applies to everything on the host). A line that cannot be read is reported with its number and
//! skipped: the rest of the log is still evidence.

use crate::tool::{RiskClass, Tool, ToolError, in_range};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What kind of change it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new version of a service was deployed.
    Deploy,
    /// A configuration value changed.
    Config,
    /// A feature flag was turned on, off or re-targeted.
    Flag,
    /// The platform changed under the service (kernel, cluster, network, database upgrade).
    Infra,
}

/// One change, as the change log and the eval cases' `context.recent_changes` hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub at: DateTime<Utc>,
    pub kind: ChangeKind,
    /// What changed, e.g. "storefront v2.5.0" or "payments: provider timeout 2s -> 10s".
    pub what: String,
    /// The service it changed; none for a host- or fleet-wide change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// A change as the tool reports it: with its age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentChange {
    pub at: DateTime<Utc>,
    pub minutes_ago: f64,
    pub kind: ChangeKind,
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// The tool's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesAnswer {
    pub now: DateTime<Utc>,
    pub since_minutes: u64,
    /// Newest first.
    pub changes: Vec<RecentChange>,
    /// Lines of the log that could not be read, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// Reads a change log; bad lines are returned as messages, not errors.
pub fn parse_log(text: &str) -> (Vec<Change>, Vec<String>) {
    let mut changes = vec![];
    let mut bad = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match serde_json::from_str::<Change>(line) {
            Ok(c) => changes.push(c),
            Err(e) => bad.push(format!("line {}: {e}", i + 1)),
        }
    }
    (changes, bad)
}

/// The changes within `since_minutes` before `now` (none from the future), newest first.
pub fn recent(
    changes: &[Change],
    now: DateTime<Utc>,
    since_minutes: u64,
    service: Option<&str>,
) -> Vec<RecentChange> {
    let mut out: Vec<RecentChange> = changes
        .iter()
        .filter(|c| {
            service.is_none_or(|s| {
                c.service
                    .as_deref()
                    .is_none_or(|cs| cs.eq_ignore_ascii_case(s))
            })
        })
        .map(|c| RecentChange {
            at: c.at,
            minutes_ago: ((now - c.at).num_seconds() as f64 / 60.0 * 10.0).round() / 10.0,
            kind: c.kind,
            what: c.what.clone(),
            service: c.service.clone(),
        })
        .filter(|c| c.minutes_ago >= 0.0 && c.minutes_ago <= since_minutes as f64)
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.at));
    out
}

/// The tool's answer over a change log as of `now`: what both the live tool and replay serve.
pub fn answer(
    changes: &[Change],
    now: DateTime<Utc>,
    args: RecentArgs,
    unreadable: Vec<String>,
) -> Result<ChangesAnswer, ToolError> {
    let since = in_range(
        RecentChangesTool::NAME,
        "since_minutes",
        args.since_minutes.unwrap_or(180),
        1..=10_080,
    )?;
    Ok(ChangesAnswer {
        now,
        since_minutes: since,
        changes: recent(changes, now, since, args.service.as_deref()),
        unreadable,
    })
}

/// Arguments of `changes.recent`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentArgs {
    /// How far back to look, in minutes (1-10080, default 180).
    #[serde(default)]
    pub since_minutes: Option<u64>,
    /// Only changes to this service (changes without a service are always included). Omit for all.
    #[serde(default)]
    pub service: Option<String>,
}

/// `changes.recent`: the change log around the incident.
pub struct RecentChangesTool {
    pub file: Option<PathBuf>,
}

#[async_trait]
impl Tool for RecentChangesTool {
    const NAME: &'static str = "changes.recent";
    const DESCRIPTION: &'static str = "What changed recently (deploys, config, feature flags, infrastructure), newest first, with minutes since each. Ask early: a change just before the symptoms began is the first suspect, and rolling it back is the first stabilizer.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = RecentArgs;
    type Output = ChangesAnswer;

    fn available(&self) -> bool {
        self.file.is_some()
    }

    async fn call(&self, args: RecentArgs) -> Result<ChangesAnswer, ToolError> {
        let file = self.file.as_ref().ok_or_else(|| ToolError::Failed {
            tool: Self::NAME.into(),
            message: "no change log configured: set [changes] file = \"...\" (JSON Lines)".into(),
        })?;
        let text = tokio::fs::read_to_string(file)
            .await
            .map_err(|e| ToolError::Failed {
                tool: Self::NAME.into(),
                message: format!("cannot read the change log {}: {e}", file.display()),
            })?;
        let (changes, unreadable) = parse_log(&text);
        answer(&changes, Utc::now(), args, unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a test timestamp")
    }

    #[test]
    fn the_log_is_read_line_by_line_and_bad_lines_are_named() {
        let (c, bad) = parse_log(
            "# deploys\n{\"at\": \"2026-11-27T03:10:00Z\", \"kind\": \"deploy\", \"what\": \"storefront v2\", \"service\": \"storefront\"}\n{\"at\": \"yesterday\", \"kind\": \"deploy\", \"what\": \"x\"}\n{\"at\": \"2026-11-27T01:00:00Z\", \"kind\": \"rollout\", \"what\": \"y\"}\n",
        );
        assert_eq!(c.len(), 1);
        assert_eq!(bad.len(), 2);
        assert!(bad[0].starts_with("line 3:"), "{bad:?}");
        assert!(
            bad[1].starts_with("line 4:") && bad[1].contains("rollout"),
            "{bad:?}"
        );
    }

    #[test]
    fn recent_keeps_the_window_and_the_service_newest_first() {
        let log = vec![
            Change {
                at: at("2026-11-27T03:10:00Z"),
                kind: ChangeKind::Deploy,
                what: "storefront v2".into(),
                service: Some("storefront".into()),
            },
            Change {
                at: at("2026-11-27T00:00:00Z"),
                kind: ChangeKind::Config,
                what: "old".into(),
                service: None,
            },
            Change {
                at: at("2026-11-27T03:00:00Z"),
                kind: ChangeKind::Flag,
                what: "payments flag".into(),
                service: Some("payments".into()),
            },
            Change {
                at: at("2026-11-27T04:00:00Z"),
                kind: ChangeKind::Deploy,
                what: "future".into(),
                service: None,
            },
        ];
        let now = at("2026-11-27T03:15:00Z");
        let all = recent(&log, now, 60, None);
        assert_eq!(
            all.iter().map(|c| c.what.as_str()).collect::<Vec<_>>(),
            ["storefront v2", "payments flag"]
        );
        assert_eq!(all[0].minutes_ago, 5.0);
        let one = recent(&log, now, 600, Some("Storefront"));
        assert_eq!(
            one.iter().map(|c| c.what.as_str()).collect::<Vec<_>>(),
            ["storefront v2", "old"]
        );
    }
}
