//! `oncall record`: a replayable eval case from the live collectors; the truth is left for a
//! person to fill in before the case is scored.

use super::{CliError, Context, Outcome, RecordArgs};
use std::process::ExitCode;

pub fn run(args: RecordArgs, ctx: &Context) -> Outcome {
    let RecordArgs { out, id, report } = args;
    let id = id.unwrap_or_else(|| {
        out.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "case".into())
    });
    let model = crate::app::model(&ctx.config).map_err(|e| CliError::usage(e.to_string()))?;
    let case = ctx.runtime.block_on(crate::eval::record::record(
        &id,
        &report.join(" "),
        &ctx.config,
        &ctx.registry,
        model.as_ref(),
        |m| eprintln!("[record] {m}"),
    ));
    let text = case
        .and_then(|c| serde_json::to_string_pretty(&c).map_err(|e| e.to_string()))
        .map_err(CliError::failed)?;
    std::fs::write(&out, text + "\n")
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", out.display())))?;
    eprintln!(
        "[record] wrote {}: fill in `title` and `truth` (category, component, summary, culprit_any) before it is scored",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
