//! The `oncall` command line: thin on purpose. It parses arguments, loads settings, sets up
//! logging and hands over to the library. Usage and configuration errors print one line that
//! names the problem and the fix, and exit with code 2.

use clap::Parser;
use oncall::agent::events::{self, Event, EventSink, Silent};
use oncall::agent::render;
use oncall::cli::{
    AuditCommand, Cli, Command, ConfigCommand, EmbedderArg, EvalModel, MemoryCommand, TokenCommand,
};
use oncall::config::{Config, Provider};
use oncall::registry::Registry;
use std::process::ExitCode;
use std::sync::Arc;

/// Prints each investigation event on stderr as it happens.
struct Stderr;

impl EventSink for Stderr {
    fn emit(&self, event: &Event) {
        eprintln!("{}", events::line(event));
    }
}

/// `oncall config check`: the settings were loaded and the policy and action files checked
/// before this runs; print every effective setting with its source, secrets masked.
fn config_check(explicit: Option<&std::path::Path>, json: bool) -> ExitCode {
    let loaded = match Config::load_explained(explicit) {
        Ok(l) => l,
        Err(e) => return usage_error(&e.to_string()),
    };
    let report = oncall::config::check::explain(&loaded, &|name| {
        std::env::var_os(name).is_some_and(|v| !v.is_empty())
    });
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot encode the report as JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", oncall::config::check::render(&report));
        eprintln!("settings, policy and action files load: ok");
    }
    ExitCode::SUCCESS
}

/// `oncall audit verify --replicas`: checks every replica's audit chain recorded in the store.
fn verify_replicas(runtime: &tokio::runtime::Runtime, config: &oncall::config::Config) -> ExitCode {
    let url = config.server.store_url();
    let rows = runtime.block_on(async {
        let store = oncall::incidents::open(&url).await?;
        store.replicas().await
    });
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot read the replicas from the store: {e}")),
    };
    if rows.is_empty() {
        println!("no replica has recorded an audit log in the store yet");
        return ExitCode::SUCCESS;
    }
    let mut ok = true;
    for r in &rows {
        let Some(path) = &r.audit_file else {
            println!(
                "{}: keeps its audit log in memory only: nothing to verify",
                r.name
            );
            continue;
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                println!("{}: BROKEN: cannot read {path}: {e}", r.name);
                ok = false;
                continue;
            }
        };
        let report = oncall::policy::audit::verify_bytes(&bytes, None);
        for p in &report.problems {
            println!("{}: BROKEN: {p}", r.name);
        }
        let head = r.audit_head.as_deref().unwrap_or_default();
        let held = oncall::policy::audit::holds(&bytes, r.audit_seq.max(0) as u64, head);
        if !held {
            println!(
                "{}: BROKEN: {path} no longer holds record {} with hash {head}, recorded in the store at its last heartbeat (cut back or rewritten)",
                r.name, r.audit_seq
            );
        }
        ok &= report.problems.is_empty() && held;
        println!(
            "{}: {path}: {} record(s), head {}: {}",
            r.name,
            report.records,
            report.head,
            if report.problems.is_empty() && held {
                format!(
                    "the chain is intact and holds record {} recorded in the store",
                    r.audit_seq
                )
            } else {
                "the chain is BROKEN".to_string()
            }
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints a usage error as one line and returns exit code 2.
fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // clap explains over several lines; keep what comes before "Usage:" on one line.
            let rendered = e.render().to_string();
            let parts: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let msg = parts.join(" ");
            let msg = msg.trim_start_matches("error: ");
            return usage_error(&format!("{msg} (run `oncall --help` for usage)"));
        }
    };
    let config = match Config::load_explained(cli.config.as_deref()) {
        Ok(loaded) => {
            for n in loaded
                .not_settings
                .iter()
                .filter(|n| n.did_you_mean.is_some())
            {
                eprintln!(
                    "warning: {} is not a setting; did you mean {}? (`oncall config check` lists every variable)",
                    n.name,
                    n.did_you_mean.as_deref().unwrap_or_default()
                );
            }
            Arc::new(loaded.config)
        }
        Err(e) => return usage_error(&e.to_string()),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Log lines pass the same redactor as prompts, in either format.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| oncall::redact::RedactingStderr);
    match config.log_format {
        oncall::config::LogFormat::Text => logs.init(),
        oncall::config::LogFormat::Json => logs.json().init(),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = oncall::redact::configure(&config.policy.redact) {
        return usage_error(&e);
    }
    // Action files and the policy are checked before anything runs: a broken one stops here.
    let registry = match oncall::app::load_registry(config.clone(), None) {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    match cli.command {
        Command::Triage {
            report,
            json,
            quiet,
        } => {
            let report = report.join(" ");
            // Incident memory, when a store with remembered incidents exists (never created here).
            let registry = match runtime.block_on(open_memory(&config, false)) {
                Ok(Some(m)) => oncall::app::with_memory(registry, std::sync::Arc::new(m)),
                Ok(None) => registry,
                Err(e) => {
                    eprintln!("warning: incident memory is unavailable: {e}");
                    registry
                }
            };
            let model = match oncall::app::model(&config) {
                Ok(m) => m,
                Err(e) => return usage_error(&e.to_string()),
            };
            let sink: Box<dyn EventSink> = if quiet {
                Box::new(Silent)
            } else {
                Box::new(Stderr)
            };
            // The host sweep starts while the model (and its tokenizer) get ready: unless the
            // fleet tools replace it, every host investigation begins with this snapshot.
            if config.prometheus.url.trim().is_empty() {
                registry.prefetch("host.use_snapshot");
            }
            match runtime.block_on(oncall::reasoner::investigate(
                &report,
                &registry,
                &config,
                model.as_ref(),
                sink.as_ref(),
            )) {
                Ok(inv) => {
                    if json {
                        match serde_json::to_string_pretty(&inv) {
                            Ok(s) => println!("{s}"),
                            Err(e) => {
                                eprintln!("error: cannot encode the answer as JSON: {e}");
                                return ExitCode::FAILURE;
                            }
                        }
                    } else {
                        print!("{}", render::text(&inv));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(&e.to_string()),
            }
        }
        Command::Serve { listen } => {
            let mut cfg = (*config).clone();
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            let operator = std::env::var(&cfg.server.token_env)
                .ok()
                .filter(|t| !t.trim().is_empty());
            let cfg = Arc::new(cfg);
            let served = runtime.block_on(async {
                let st = oncall::server::AppState::start(cfg.clone(), operator.as_deref()).await?;
                if operator.is_none() {
                    let first = st
                        .store
                        .token_count()
                        .await
                        .map_err(|e| oncall::server::ServerError::Setup(e.to_string()))?
                        == 0;
                    if first {
                        let t = oncall::server::auth::new_token();
                        st.store
                            .put_token(
                                "admin",
                                oncall::policy::Role::Approver,
                                &oncall::server::auth::token_sha(&t),
                            )
                            .await
                            .map_err(|e| oncall::server::ServerError::Setup(e.to_string()))?;
                        eprintln!(
                            "oncall serve: first start; made the token of `admin` (approver). It is shown once, keep it:\n  {t}\n  sign in to the web page with it, or send Authorization: Bearer {t}\n  more tokens: oncall token add NAME --role viewer|responder|approver|ingest"
                        );
                    }
                }
                oncall::server::serve(st).await
            });
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ oncall::server::ServerError::Bind { .. }) => usage_error(&e.to_string()),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Memory { command } => memory_command(command, &config, &registry, &runtime),
        Command::Config {
            command: ConfigCommand::Check { json },
        } => config_check(cli.config.as_deref(), json),
        Command::Backup { to } => ops_done(oncall::ops::backup::backup(&config, &to)),
        Command::Restore { from, force } => {
            ops_done(oncall::ops::backup::restore(&config, &from, force))
        }
        Command::Postmortem { incident, out } => {
            let url = config.server.store_url();
            let found = runtime.block_on(async {
                let store = oncall::incidents::open_configured(&config.server).await?.0;
                match store.incident(&incident).await? {
                    Some(inc) => {
                        let events = store.events(&incident, 0, 1_000_000).await?;
                        let prompts =
                            oncall::agent::prompts::Prompts::load(&config.llm.prompts_dir);
                        let mut facts = oncall::postmortem::facts(&inc, &events);
                        // A configured model writes the prose; each claim is checked against the log.
                        if let Ok(m) = oncall::app::model(&config)
                            && !m.is_offline()
                        {
                            facts =
                                oncall::postmortem::prose::write(m.as_ref(), &prompts, facts).await;
                            for n in facts.notes.iter().chain(&facts.dropped) {
                                eprintln!("note: {n}");
                            }
                        }
                        let md = oncall::postmortem::render(&prompts, &facts)
                            .map_err(|e| oncall::incidents::StoreError::Invalid(e.to_string()))?;
                        Ok(Some(md))
                    }
                    None => Ok::<_, oncall::incidents::StoreError>(None),
                }
            });
            let md = match found {
                Ok(Some(md)) => md,
                Ok(None) => {
                    return usage_error(&format!(
                        "no incident {incident} in {url}; list them with GET /api/v1/incidents"
                    ));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let findings = oncall::postmortem::blameless::check(&md);
            if !findings.is_empty() {
                eprintln!(
                    "blameless check: {} finding(s)\n{}",
                    findings.len(),
                    oncall::postmortem::blameless::report(&findings)
                );
            }
            match out {
                Some(path) => match std::fs::write(&path, &md) {
                    Ok(()) => {
                        eprintln!("post-mortem draft written to {}", path.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: cannot write {}: {e}", path.display());
                        ExitCode::FAILURE
                    }
                },
                None => {
                    print!("{md}");
                    ExitCode::SUCCESS
                }
            }
        }
        Command::Token {
            command: TokenCommand::Add { name, role },
        } => {
            let grant = match oncall::server::auth::parse_grant(&role) {
                Ok(g) => g,
                Err(e) => return usage_error(&e),
            };
            // Names that are not people, or are someone else: the agent, the model, the
            // operator's token, Slack users.
            let n = name.trim();
            if n.is_empty() || ["oncall", "model", "admin"].contains(&n) || n.contains(':') {
                return usage_error(
                    "give the token holder a person's name (not `oncall` or `model`, the agent's names, not `admin`, the operator token's, and no `:` as in Slack's `slack:U...`)",
                );
            }
            let t = oncall::server::auth::new_token();
            let stored = runtime.block_on(async {
                let store = oncall::incidents::open_configured(&config.server).await?.0;
                store
                    .put_grant(name.trim(), grant, &oncall::server::auth::token_sha(&t))
                    .await
            });
            match stored {
                Ok(()) => {
                    eprintln!(
                        "token for {} ({}); shown once, only its hash is stored:",
                        name.trim(),
                        oncall::incidents::grant_str(grant)
                    );
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Record { out, id, report } => {
            let id = id.unwrap_or_else(|| {
                out.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "case".into())
            });
            let model = match oncall::app::model(&config) {
                Ok(m) => m,
                Err(e) => return usage_error(&e.to_string()),
            };
            let case = runtime.block_on(oncall::eval::record::record(
                &id,
                &report.join(" "),
                &config,
                &registry,
                model.as_ref(),
                |m| eprintln!("[record] {m}"),
            ));
            match case.and_then(|c| serde_json::to_string_pretty(&c).map_err(|e| e.to_string())) {
                Ok(text) => match std::fs::write(&out, text + "\n") {
                    Ok(()) => {
                        eprintln!(
                            "[record] wrote {}: fill in `title` and `truth` (category, component, summary, culprit_any) before it is scored",
                            out.display()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => usage_error(&format!("cannot write {}: {e}", out.display())),
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Eval {
            cases,
            json,
            markdown,
            compare,
            thresholds,
            model: which,
            turns,
            record_turns,
        } => {
            let specs = registry.specs();
            let loaded = match oncall::eval::case::load_dir(&cases, &specs) {
                Ok(c) => c,
                Err(e) => return usage_error(&e.to_string()),
            };
            if loaded.is_empty() {
                return usage_error(&format!(
                    "no cases in {}: record one with `oncall record --out {}/<id>.json \"<report>\"`",
                    cases.display(),
                    cases.display()
                ));
            }
            let mut config = (*config).clone();
            match which {
                Some(EvalModel::Offline) => config.llm.provider = Provider::Offline,
                Some(EvalModel::Openai) => {
                    if config.llm.base_url.is_empty() {
                        return usage_error(
                            "--model openai needs an endpoint: set [llm] base_url (or ONCALL_LLM__BASE_URL)",
                        );
                    }
                    config.llm.provider = Provider::Openai;
                }
                Some(EvalModel::Replay) | None => {}
            }
            let shared = match oncall::app::model(&config) {
                Ok(m) => m,
                Err(e) => return usage_error(&e.to_string()),
            };
            let models = match which {
                Some(EvalModel::Replay) => oncall::eval::Models::Replay(turns),
                _ => oncall::eval::Models::Shared(shared.as_ref()),
            };
            let total = loaded.len();
            let report = runtime.block_on(oncall::eval::run(
                &loaded,
                &config,
                &registry,
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
            ));
            let report = match report {
                Ok(r) => r,
                Err(e) => return usage_error(&e),
            };
            print!("{}", oncall::eval::markdown(&report));
            if let Some(old) = compare {
                match std::fs::read_to_string(&old)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        serde_json::from_str::<oncall::eval::Report>(&t).map_err(|e| e.to_string())
                    }) {
                    Ok(o) => {
                        println!("\nChanges against {}:", old.display());
                        for l in oncall::eval::compare(&o, &report) {
                            println!("- {l}");
                        }
                    }
                    Err(e) => return usage_error(&format!("cannot read {}: {e}", old.display())),
                }
            }
            for (path, text) in [
                (
                    json,
                    serde_json::to_string_pretty(&report).unwrap_or_default(),
                ),
                (markdown, oncall::eval::markdown(&report)),
            ] {
                if let Some(p) = path
                    && let Err(e) = std::fs::write(&p, text)
                {
                    return usage_error(&format!("cannot write {}: {e}", p.display()));
                }
            }
            let floors = match thresholds {
                Some(p) => match std::fs::read_to_string(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        toml::from_str::<oncall::eval::Thresholds>(&t).map_err(|e| e.to_string())
                    }) {
                    Ok(t) => Some(t),
                    Err(e) => return usage_error(&format!("{}: {e}", p.display())),
                },
                None => None,
            };
            let mut failed = oncall::eval::failures(
                &report,
                floors.as_ref().unwrap_or(&oncall::eval::Thresholds {
                    top1_min: 0.0,
                    top3_min: 0.0,
                    max_unapproved_executions: 0,
                }),
            );
            failed.dedup();
            for f in &failed {
                eprintln!("FAIL: {f}");
            }
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::DryRun { tool, args } => {
            let args: serde_json::Value = match serde_json::from_str(&args) {
                Ok(v) => v,
                Err(e) => return usage_error(&format!("the arguments are not JSON: {e}")),
            };
            match registry.dry_run(&tool, &args) {
                Ok(plan) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&plan).unwrap_or_default()
                    );
                    println!("(dry run: nothing was run; running it needs a human approver)");
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(&e.to_string()),
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { replicas: true, .. },
        } => verify_replicas(&runtime, &config),
        Command::Audit {
            command: AuditCommand::Verify { file, head, .. },
        } => {
            // The same file `oncall serve` writes: [policy] audit_file, else in the data dir.
            let file = file
                .or_else(|| config.policy.audit_file.clone())
                .unwrap_or_else(|| config.server.data_dir.join("audit.jsonl"));
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => return usage_error(&format!("cannot read {}: {e}", file.display())),
            };
            let r = oncall::policy::audit::verify_bytes(&bytes, head.as_deref());
            for rec in &r.recoveries {
                let also = if rec.also_kept.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; earlier copies from a recovery cut short: {}",
                        rec.also_kept.join(", ")
                    )
                };
                println!(
                    "line {}: recovered after a torn write: {} bytes kept in {} (sha256 {}){also}",
                    rec.line, rec.bytes, rec.kept_in, rec.sha256
                );
                if let Err(e) = rec.check_kept(&file) {
                    println!("  note: {e}");
                }
            }
            // The torn tail, when there is one, is the last problem.
            let torn_at = r
                .problems
                .len()
                .saturating_sub(usize::from(r.torn.is_some()));
            for (i, p) in r.problems.iter().enumerate() {
                println!("{}: {p}", if i < torn_at { "BROKEN" } else { "TORN" });
            }
            let recovered = match r.recoveries.len() {
                0 => String::new(),
                1 => " (1 recovery after a torn write)".to_string(),
                n => format!(" ({n} recoveries after torn writes)"),
            };
            let verdict = match &r.torn {
                _ if torn_at > 0 => "the chain is BROKEN".to_string(),
                Some(t) => format!(
                    "the chain is intact up to a TORN WRITE at line {}, not recovered yet",
                    t.line
                ),
                None => format!("the chain is intact{recovered}"),
            };
            println!(
                "{}: {} record(s), head {}: {verdict}",
                file.display(),
                r.records,
                r.head,
            );
            if r.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Tools { json } => {
            // Registry tools measure or act on systems; board tools only touch the
            // investigation's own hypothesis board. The model is offered both.
            let mut listed: Vec<serde_json::Value> = registry
                .specs()
                .into_iter()
                .map(|s| serde_json::json!({"name": s.name, "kind": "system", "risk": s.risk, "version": s.version, "description": s.description, "parameters": s.parameters}))
                .collect();
            listed.extend(oncall::agent::board_tools::defs().into_iter().map(|d| {
                serde_json::json!({"name": d.name, "kind": "board", "risk": "read", "description": d.description, "parameters": d.parameters})
            }));
            if json {
                match serde_json::to_string_pretty(&listed) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the tool list: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                for t in &listed {
                    let risk = t["risk"].as_str().unwrap_or_default();
                    let kind = if t["kind"] == "board" { ", board" } else { "" };
                    println!("{}  [{risk}{kind}]", t["name"].as_str().unwrap_or_default());
                    println!("  {}", t["description"].as_str().unwrap_or_default());
                    println!("  args: {}", t["parameters"]);
                    println!();
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// Prints what `oncall backup` or `oncall restore` did; a refusal is a usage error (2).
fn ops_done<T: std::fmt::Display>(r: Result<T, oncall::ops::backup::BackupError>) -> ExitCode {
    match r {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e @ oncall::ops::backup::BackupError::Refused(_)) => usage_error(&e.to_string()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Incident memory over the configured store. With `create` false, a SQLite store that does
/// not exist yet is left alone (None).
async fn open_memory(
    config: &oncall::config::Config,
    create: bool,
) -> Result<Option<oncall::memory::Memory>, String> {
    let url = config.server.store_url();
    if !create
        && config.server.database_url.is_none()
        && !config.server.data_dir.join("oncall.db").exists()
    {
        return Ok(None);
    }
    let (store, _) = oncall::incidents::open_configured(&config.server)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    oncall::memory::Memory::open(config, store)
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

fn memory_command(
    command: MemoryCommand,
    config: &std::sync::Arc<oncall::config::Config>,
    registry: &Registry,
    runtime: &tokio::runtime::Runtime,
) -> ExitCode {
    match command {
        MemoryCommand::Search { text, limit } => {
            let text = text.join(" ");
            let found = runtime.block_on(async {
                let Some(m) = open_memory(config, false).await? else {
                    return Ok((String::new(), 0, vec![]));
                };
                let hits = m.similar(&text, limit).await.map_err(|e| e.to_string())?;
                let n = m.len().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((m.describe(), n, hits))
            });
            match found {
                Ok((_, 0, _)) => {
                    println!(
                        "no resolved incident is remembered yet in {} (incidents are remembered when they are resolved)",
                        config.server.store_url()
                    );
                    ExitCode::SUCCESS
                }
                Ok((how, n, hits)) => {
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
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        MemoryCommand::Recall {
            cases,
            k,
            embedder,
            json,
        } => {
            let loaded = match oncall::eval::case::load_dir(&cases, &registry.specs()) {
                Ok(c) => c,
                Err(e) => return usage_error(&e.to_string()),
            };
            let kinds: Vec<oncall::config::EmbedderKind> = if embedder.is_empty() {
                vec![config.memory.embedder]
            } else {
                embedder
                    .iter()
                    .map(|e| match e {
                        EmbedderArg::Hashed => oncall::config::EmbedderKind::Hashed,
                        EmbedderArg::Minilm => oncall::config::EmbedderKind::Minilm,
                        EmbedderArg::Openai => oncall::config::EmbedderKind::Openai,
                    })
                    .collect()
            };
            let mut reports = vec![];
            for kind in kinds {
                let mut cfg = (**config).clone();
                cfg.memory.embedder = kind;
                let emb = match oncall::memory::embedder(&cfg) {
                    Ok(e) => e,
                    Err(e) => return usage_error(&e.to_string()),
                };
                eprintln!(
                    "recall@{k} of {} over {} case(s)...",
                    emb.name(),
                    loaded.len()
                );
                match runtime.block_on(oncall::memory::recall::recall(
                    &loaded, &cfg, registry, emb, k,
                )) {
                    Ok(r) => reports.push(r),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&oncall::memory::recall::json(&reports))
                        .unwrap_or_default()
                );
            } else {
                print!("{}", oncall::memory::recall::markdown(&reports));
            }
            ExitCode::SUCCESS
        }
    }
}
