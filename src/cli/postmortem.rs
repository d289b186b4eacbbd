//! `oncall postmortem`: the draft of an incident's post-mortem from its event log. A configured
//! model writes the prose and each claim is checked against the log; the blameless-language
//! check's findings go to stderr.

use super::{CliError, Context, Outcome, PostmortemArgs};
use crate::config::Config;
use crate::incidents::StoreError;
use std::process::ExitCode;

pub fn run(args: PostmortemArgs, ctx: &Context) -> Outcome {
    let PostmortemArgs { incident, out } = args;
    let md = match ctx.runtime.block_on(draft(&ctx.config, &incident)) {
        Ok(Some(md)) => md,
        Ok(None) => {
            return Err(CliError::usage(format!(
                "no incident {incident} in {}; list them with GET /api/v1/incidents",
                ctx.config.server.store_url()
            )));
        }
        Err(e) => return Err(CliError::failed(e)),
    };
    let findings = crate::postmortem::blameless::check(&md);
    if !findings.is_empty() {
        eprintln!(
            "blameless check: {} finding(s)\n{}",
            findings.len(),
            crate::postmortem::blameless::report(&findings)
        );
    }
    match out {
        Some(path) => {
            std::fs::write(&path, &md)
                .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("post-mortem draft written to {}", path.display());
        }
        None => print!("{md}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The draft's Markdown, or None when the store has no such incident.
async fn draft(config: &Config, incident: &str) -> Result<Option<String>, StoreError> {
    let store = crate::incidents::open_configured(&config.server).await?.0;
    let Some(inc) = store.incident(incident).await? else {
        return Ok(None);
    };
    let events = store.events(incident, 0, 1_000_000).await?;
    let prompts = crate::agent::prompts::Prompts::load(&config.llm.prompts_dir);
    let mut facts = crate::postmortem::facts(&inc, &events);
    // A configured model writes the prose; each claim is checked against the log.
    if let Ok(m) = crate::app::model(config)
        && !m.is_offline()
    {
        facts = crate::postmortem::prose::write(m.as_ref(), &prompts, facts).await;
        for n in facts.notes.iter().chain(&facts.dropped) {
            eprintln!("note: {n}");
        }
    }
    let md = crate::postmortem::render(&prompts, &facts)
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(Some(md))
}
