//! `oncall triage`: investigates this host for a reported symptom. By default it shows one
//! progress line per step on stderr and then the answer card on stdout ([`super::card`]); `-v`
//! shows every event and the full answer with its debug log, `-q` only the answer, and `--json`
//! prints the investigation as one JSON document.

use super::progress::{Progress, Verbose};
use super::{CliError, Context, Outcome, TriageArgs};
use crate::agent::events::{EventSink, Silent};
use crate::agent::render;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(args: TriageArgs, ctx: Context) -> Outcome {
    let Context {
        config,
        runtime,
        registry,
        // Held to the end of the command: the last spans are sent when it drops.
        telemetry: _telemetry,
    } = ctx;
    let report = args.report.join(" ");
    // Incident memory, when a store with remembered incidents exists (never created here).
    let registry = match runtime.block_on(super::memory::open(&config, false)) {
        Ok(Some(m)) => crate::app::with_memory(registry, Arc::new(m)),
        Ok(None) => registry,
        Err(e) => {
            eprintln!("warning: incident memory is unavailable: {e}");
            registry
        }
    };
    // External MCP servers' toolsets (none unless `[[mcp.servers]]` names some).
    let registry = runtime.block_on(crate::app::with_toolsets(registry, &config));
    let model = crate::app::model(&config).map_err(|e| CliError::usage(e.to_string()))?;
    let progress = (!args.quiet && !args.verbose).then(Progress::new);
    let sink: &dyn EventSink = match &progress {
        Some(p) => p,
        None if args.verbose => &Verbose,
        None => &Silent,
    };
    // The host sweep starts while the model (and its tokenizer) get ready: unless the fleet
    // tools replace it, every host investigation begins with this snapshot.
    if config.prometheus.url.trim().is_empty() {
        registry.prefetch("host.use_snapshot");
    }
    let answered = runtime.block_on(crate::reasoner::investigate(
        &report,
        &registry,
        &config,
        model.as_ref(),
        sink,
    ));
    // The spinner's line is cleared before the answer is written.
    if let Some(p) = &progress {
        p.finish();
    }
    let inv = answered.map_err(|e| CliError::usage(e.to_string()))?;
    if args.json {
        let s = serde_json::to_string_pretty(&inv)
            .map_err(|e| CliError::failed(format!("cannot encode the answer as JSON: {e}")))?;
        println!("{s}");
    } else if args.verbose {
        print!("{}", render::text(&inv));
    } else {
        print!("{}", super::card::card(&inv));
    }
    Ok(ExitCode::SUCCESS)
}
