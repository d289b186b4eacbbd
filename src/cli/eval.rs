//! `oncall eval`: replays every case, scores the answers, compares with an earlier report and
//! fails (exit 1) below the thresholds' floors.

use super::{CliError, Context, EvalArgs, EvalModel, Outcome, exit_if};
use crate::config::Provider;
use crate::eval::{self, Models, Report, Thresholds};
use std::path::Path;

pub fn run(args: EvalArgs, ctx: &Context) -> Outcome {
    let EvalArgs {
        cases,
        only,
        json,
        markdown,
        compare,
        thresholds,
        model: which,
        turns,
        record_turns,
    } = args;
    let mut loaded = eval::case::load_dir(&cases, &ctx.registry.specs())
        .map_err(|e| CliError::usage(e.to_string()))?;
    if !only.is_empty() {
        if let Some(missing) = only
            .iter()
            .find(|id| !loaded.iter().any(|(_, c)| &c.id == *id))
        {
            return Err(CliError::usage(format!(
                "no case {missing} in {}",
                cases.display()
            )));
        }
        loaded.retain(|(_, c)| only.contains(&c.id));
    }
    if loaded.is_empty() {
        return Err(CliError::usage(format!(
            "no cases in {}: record one with `oncall record --out {}/<id>.json \"<report>\"`",
            cases.display(),
            cases.display()
        )));
    }
    let mut config = (*ctx.config).clone();
    match which {
        Some(EvalModel::Offline) => config.llm.provider = Provider::Offline,
        Some(EvalModel::Openai) => {
            if config.llm.base_url.is_empty() {
                return Err(CliError::usage(
                    "--model openai needs an endpoint: set [llm] base_url (or ONCALL_LLM__BASE_URL)",
                ));
            }
            config.llm.provider = Provider::Openai;
        }
        Some(EvalModel::Replay) | None => {}
    }
    let shared = crate::app::model(&config).map_err(|e| CliError::usage(e.to_string()))?;
    let models = match which {
        Some(EvalModel::Replay) => Models::Replay(turns),
        _ => Models::Shared(shared.as_ref()),
    };
    let total = loaded.len();
    let report = ctx
        .runtime
        .block_on(eval::run(
            &loaded,
            &config,
            &ctx.registry,
            models,
            record_turns.as_deref(),
            |i, s| {
                eprintln!(
                    "[{}/{total}] {}: {} ({})",
                    i + 1,
                    s.id,
                    if s.top1 { "hit" } else { "miss" },
                    s.answer
                )
            },
        ))
        .map_err(|e| CliError::usage(e.to_string()))?;
    print!("{}", eval::markdown(&report));
    if let Some(old) = compare {
        let o: Report = read(&old, |t| serde_json::from_str(t).map_err(|e| e.to_string()))
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", old.display())))?;
        println!("\nChanges against {}:", old.display());
        for l in eval::compare(&o, &report) {
            println!("- {l}");
        }
    }
    for (path, text) in [
        (
            json,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        ),
        (markdown, eval::markdown(&report)),
    ] {
        if let Some(p) = path
            && let Err(e) = std::fs::write(&p, text)
        {
            return Err(CliError::usage(format!(
                "cannot write {}: {e}",
                p.display()
            )));
        }
    }
    let floors = match thresholds {
        Some(p) => Some(
            read(&p, |t| {
                toml::from_str::<Thresholds>(t).map_err(|e| e.to_string())
            })
            .map_err(|e| CliError::usage(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut failed = eval::failures(
        &report,
        floors.as_ref().unwrap_or(&Thresholds {
            top1_min: 0.0,
            top3_min: 0.0,
            max_unapproved_executions: 0,
        }),
    );
    failed.dedup();
    for f in &failed {
        eprintln!("FAIL: {f}");
    }
    Ok(exit_if(failed.is_empty()))
}

/// Reads a file and parses it, either failure as one message.
fn read<T>(path: &Path, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, String> {
    std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| parse(&t))
}
