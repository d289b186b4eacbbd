//! `oncall memory search` and `oncall memory recall`, and [`open`], the incident memory over
//! the configured store that `oncall triage` consults too.

use super::{CliError, Context, EmbedderArg, MemoryRecallArgs, MemorySearchArgs, Outcome};
use crate::config::{Config, EmbedderKind};
use crate::eval::recall;
use crate::memory::Memory;
use std::process::ExitCode;

/// Incident memory over the configured store. With `create` false, a SQLite store that does
/// not exist yet is left alone (None).
pub async fn open(config: &Config, create: bool) -> Result<Option<Memory>, String> {
    let url = config.server.store_url();
    if !create
        && config.server.database_url.is_none()
        && !config.server.data_dir.join("oncall.db").exists()
    {
        return Ok(None);
    }
    let (store, _) = crate::incidents::open_configured(&config.server)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    Memory::open(config, store)
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

pub fn search(args: MemorySearchArgs, ctx: &Context) -> Outcome {
    let config = &ctx.config;
    let text = args.text.join(" ");
    let (how, n, hits) = ctx
        .runtime
        .block_on(async {
            let Some(m) = open(config, false).await? else {
                return Ok((String::new(), 0, vec![]));
            };
            let hits = m
                .similar(&text, args.limit)
                .await
                .map_err(|e| e.to_string())?;
            let n = m.len().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((m.describe(), n, hits))
        })
        .map_err(CliError::Failed)?;
    if n == 0 {
        println!(
            "no resolved incident is remembered yet in {} (incidents are remembered when they are resolved)",
            config.server.store_url()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{n} remembered incident(s), searched with {how}");
    if hits.is_empty() {
        println!("none is similar enough ([memory] min_score)");
    }
    for h in hits {
        println!(
            "{:.3}  {}  {}\n       cause: {}{}\n       fixed by: {}",
            h.score,
            h.incident,
            h.title,
            h.cause,
            h.category
                .as_ref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default(),
            if h.fixed_by.is_empty() {
                "(nothing recorded)".to_string()
            } else {
                h.fixed_by.join("; ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn recall(args: MemoryRecallArgs, ctx: &Context) -> Outcome {
    let MemoryRecallArgs {
        cases,
        k,
        embedder,
        json,
    } = args;
    let loaded = crate::eval::case::load_dir(&cases, &ctx.registry.specs())
        .map_err(|e| CliError::usage(e.to_string()))?;
    let kinds: Vec<EmbedderKind> = if embedder.is_empty() {
        vec![ctx.config.memory.embedder]
    } else {
        embedder
            .iter()
            .map(|e| match e {
                EmbedderArg::Hashed => EmbedderKind::Hashed,
                EmbedderArg::Minilm => EmbedderKind::Minilm,
                EmbedderArg::Openai => EmbedderKind::Openai,
            })
            .collect()
    };
    let mut reports = vec![];
    for kind in kinds {
        let mut cfg = (*ctx.config).clone();
        cfg.memory.embedder = kind;
        let emb = crate::memory::embedder(&cfg).map_err(|e| CliError::usage(e.to_string()))?;
        eprintln!(
            "recall@{k} of {} over {} case(s)...",
            emb.name(),
            loaded.len()
        );
        let r = ctx
            .runtime
            .block_on(recall::recall(&loaded, &cfg, &ctx.registry, emb, k))
            .map_err(|e| CliError::failed(e.to_string()))?;
        reports.push(r);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&recall::json(&reports)).unwrap_or_default()
        );
    } else {
        print!("{}", recall::markdown(&reports));
    }
    Ok(ExitCode::SUCCESS)
}
