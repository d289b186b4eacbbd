//! `oncall dry-run`: what an action would run with these arguments, without running it.

use super::{CliError, Context, DryRunArgs, Outcome};
use std::process::ExitCode;

pub fn run(args: DryRunArgs, ctx: &Context) -> Outcome {
    let parsed: serde_json::Value = serde_json::from_str(&args.args)
        .map_err(|e| CliError::usage(format!("the arguments are not JSON: {e}")))?;
    let plan = ctx
        .registry
        .dry_run(&args.tool, &parsed)
        .map_err(|e| CliError::usage(e.to_string()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&plan).unwrap_or_default()
    );
    println!("(dry run: nothing was run; running it needs a human approver)");
    Ok(ExitCode::SUCCESS)
}
