//! `oncall record`: a case from live collectors. It runs the investigation live (so the drill-down
//! calls the reasoner makes are captured), then every other available read tool once, and the host
//! snapshot twice more a second apart (a short time series). Every output passes the redactor
//! before it is written; `truth` is left empty for a person to fill in.

use super::case::{Case, Context, FORMAT, Recording};
use crate::agent::events::Silent;
use crate::collectors::changes::{Change, ChangesAnswer, RecentChangesTool};
use crate::config::Config;
use crate::llm::ChatModel;
use crate::registry::Registry;
use crate::tool::{RiskClass, Tool};
use chrono::Utc;
use serde_json::{Value, json};

/// Redacts a recorded output exactly as prompts are redacted.
fn redacted(v: &Value) -> Option<Value> {
    let mut v = v.clone();
    crate::redact::redact_value(&mut v);
    Some(v)
}

/// Records a case for `report`. `progress` hears each step.
pub async fn record(
    id: &str,
    report: &str,
    config: &Config,
    registry: &Registry,
    model: &dyn ChatModel,
    mut progress: impl FnMut(&str),
) -> Result<Case, String> {
    let observed_at = Utc::now();
    let started = std::time::Instant::now();
    progress("running the investigation live");
    let inv = crate::reasoner::investigate(report, registry, config, model, &Silent)
        .await
        .map_err(|e| e.to_string())?;
    let versions: Vec<(String, u32, RiskClass, bool)> = registry
        .specs()
        .into_iter()
        .map(|s| (s.name.to_string(), s.version, s.risk, s.unavailable))
        .collect();
    let version_of = |t: &str| versions.iter().find(|v| v.0 == t).map(|v| v.1).unwrap_or(1);
    let mut recordings = vec![];
    let mut dropped = 0;
    let mut push =
        |tool: &str, args: Value, at_s: f64, out: &Value, recordings: &mut Vec<Recording>| {
            match redacted(out) {
                Some(output) => recordings.push(Recording {
                    tool: tool.into(),
                    args,
                    version: version_of(tool),
                    at_s,
                    output,
                }),
                None => dropped += 1,
            }
        };
    for c in inv
        .tool_calls
        .iter()
        // Board operations are not measurements; past incidents are not part of this one.
        .filter(|c| c.ok && !c.tool.starts_with("board.") && !c.tool.starts_with("memory."))
    {
        if let Some(out) = &c.output {
            push(&c.tool, c.args.clone(), 0.0, out, &mut recordings);
        }
    }
    // The rest of the snapshot: every available read tool not called yet, with default args.
    let databases: Vec<String> = config.postgres.keys().cloned().collect();
    for (tool, _, risk, unavailable) in &versions {
        if *risk != RiskClass::Read
            || *unavailable
            || (recordings.iter().any(|r| &r.tool == tool) && tool != RecentChangesTool::NAME)
            || tool.ends_with(".explain")
            || tool.starts_with("memory.")
        {
            continue;
        }
        let arg_sets: Vec<Value> = if tool == RecentChangesTool::NAME {
            vec![json!({"since_minutes": 10_080})]
        } else if tool.starts_with("postgres.") {
            databases.iter().map(|d| json!({"database": d})).collect()
        } else {
            vec![json!({})]
        };
        for args in arg_sets {
            progress(&format!("recording {tool} {args}"));
            if let Ok(out) = registry.call(tool, args.clone(), None).await {
                push(tool, args, 0.0, &out, &mut recordings);
            }
        }
    }
    // A short time series of the host.
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        progress("recording host.use_snapshot again (time series)");
        if let Ok(out) = registry.call("host.use_snapshot", json!({}), None).await {
            push(
                "host.use_snapshot",
                json!({}),
                started.elapsed().as_secs_f64(),
                &out,
                &mut recordings,
            );
        }
    }
    // The change log goes into the context, where a person reading the case looks for it;
    // replay answers `changes.recent` from there.
    let mut recent_changes: Vec<Change> = vec![];
    recordings.retain(|r| {
        if r.tool != RecentChangesTool::NAME {
            return true;
        }
        if let Ok(a) = serde_json::from_value::<ChangesAnswer>(r.output.clone()) {
            for c in a.changes {
                let c = Change {
                    at: c.at,
                    kind: c.kind,
                    what: c.what,
                    service: c.service,
                };
                if !recent_changes.contains(&c) {
                    recent_changes.push(c);
                }
            }
        }
        false
    });
    recent_changes.sort_by_key(|c| c.at);
    if dropped > 0 {
        progress(&format!(
            "dropped {dropped} recording(s) that could not be redacted safely"
        ));
    }
    Ok(Case {
        format: FORMAT.into(),
        id: id.into(),
        title: String::new(),
        provenance: "recorded".into(),
        report: crate::redact::redact(report),
        observed_at,
        context: Context {
            user_facing: inv.triage.user_facing,
            recent_changes,
            ..Default::default()
        },
        recordings,
        truth: None,
    })
}
