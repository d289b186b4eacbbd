//! The command line: its shape (clap) here, one module per command beside it. `src/main.rs`
//! parses with [`Cli`] and hands each command its parsed arguments; the documentation tests parse
//! every command README.md and docs/ show with [`Cli`], so a documented command line that
//! stopped parsing fails a test.
//!
//! Commands return [`Outcome`]: an exit code they chose, or a [`CliError`] that prints as one
//! `error:` line, exit 2 for what the user can fix (usage, settings) and 1 for a failure.

pub mod audit;
pub mod card;
pub mod config;
pub mod context;
pub mod dry_run;
pub mod eval;
pub mod mcp;
pub mod memory;
pub mod ops;
pub mod postmortem;
pub mod progress;
pub mod record;
pub mod serve;
pub mod token;
pub mod tools;
pub mod triage;

pub use context::Context;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "oncall",
    version,
    about = "A debugging copilot for the people on call: triage, hypotheses with evidence, human-approved actions."
)]
pub struct Cli {
    /// Settings file (default: $ONCALL_CONFIG, else ./oncall.toml if present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Who reasons in `oncall eval`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EvalModel {
    /// The built-in rules (no network).
    Offline,
    /// The configured OpenAI-compatible endpoint ([llm] base_url).
    Openai,
    /// Each case's recorded model turns (see --turns).
    Replay,
}

#[derive(Subcommand)]
pub enum Command {
    /// Investigate THIS host for a reported symptom and answer with ranked, evidence-backed hypotheses.
    Triage(TriageArgs),
    /// Serve the copilot: web page, incident API with live events, approvals, Slack, and OTLP
    /// trace ingest. Every request needs a bearer token (the first start prints one).
    Serve(ServeArgs),
    /// Serve oncall's tools, investigations and approval requests to an MCP client over stdio
    /// (the client starts this command). No MCP call can run an action.
    Mcp(McpArgs),
    /// Record a replayable incident case from live collectors (truth left for a person to fill in).
    Record(RecordArgs),
    /// Replay every case and score the answers (see eval/README.md).
    Eval(EvalArgs),
    /// List every tool with its risk class and JSON schema.
    Tools(ToolsArgs),
    /// Show exactly what an action would run with these arguments, without running it.
    DryRun(DryRunArgs),
    /// The audit log of action requests, decisions, executions and effects.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the post-mortem draft of an incident (Markdown), built from its event log, with the
    /// blameless-language check's findings on stderr.
    Postmortem(PostmortemArgs),
    /// Copy the incident store and the audit log into DIR, consistently, while `oncall serve`
    /// runs (SQLite store; dump a PostgreSQL store with pg_dump first). See docs/deploy.md.
    Backup(BackupArgs),
    /// Restore a backup made by `oncall backup` into the data directory, which must be stopped
    /// and empty; the audit chain is verified against the backup's head.
    Restore(RestoreArgs),
    /// Settings: check them and show where each value came from.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Bearer tokens for the server's web page and API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Incident memory: search the resolved incidents, or measure recall over the eval suite.
    Memory {
        #[command(subcommand)]
        command: MemoryCommand,
    },
}

// The argument structs carry no doc comment of their own: the variant's comment above is the
// command's help, and a struct comment would replace it.

#[derive(Args)]
pub struct TriageArgs {
    /// The symptom as a person or an alert would say it, e.g. "p99 latency > 2s on /api/checkout".
    #[arg(value_name = "REPORT", required = true, num_args = 1..)]
    pub report: Vec<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Do not print progress events on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Show the whole investigation: every event on stderr as it happens, and the full answer
    /// (debug log, every hypothesis with its evidence, tool calls, tokens) instead of the card.
    #[arg(long, short, conflicts_with = "quiet")]
    pub verbose: bool,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (default from [server] listen: 127.0.0.1:4318).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Args)]
pub struct McpArgs {
    /// The variable holding your token (`oncall token add NAME --role ROLE` makes one): you are
    /// who it says, with its role, as over HTTP.
    #[arg(long, default_value = "ONCALL_MCP_TOKEN", value_name = "VAR")]
    pub token_env: String,
}

#[derive(Args)]
pub struct RecordArgs {
    /// Where to write the case, e.g. eval/cases/cpu-hog-01.json.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The case id (default: the file name without .json).
    #[arg(long)]
    pub id: Option<String>,
    /// The report, as the incident began.
    #[arg(value_name = "REPORT", required = true, num_args = 1..)]
    pub report: Vec<String>,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Directory of oncall-case/1 files.
    #[arg(long, default_value = "eval/cases")]
    pub cases: PathBuf,
    /// Only this case (by id); repeat for more. Default: every case in --cases.
    #[arg(long = "case", value_name = "ID")]
    pub only: Vec<String>,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Show per-case changes against an earlier --json report.
    #[arg(long, value_name = "OLD.json")]
    pub compare: Option<PathBuf>,
    /// Fail (exit 1) when the suite falls below these floors.
    #[arg(long, value_name = "FILE")]
    pub thresholds: Option<PathBuf>,
    /// Who reasons: the built-in rules, the configured OpenAI-compatible endpoint, or each
    /// case's recorded model turns (--turns). Default: as configured.
    #[arg(long, value_enum)]
    pub model: Option<EvalModel>,
    /// Where each case's recorded model turns are (<dir>/<case id>.json), for --model replay.
    #[arg(long, value_name = "DIR", default_value = "eval/turns")]
    pub turns: PathBuf,
    /// Write each case's model replies to <DIR>/<case id>.json, to replay them later.
    #[arg(long, value_name = "DIR")]
    pub record_turns: Option<PathBuf>,
}

#[derive(Args)]
pub struct ToolsArgs {
    /// Print JSON for machines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DryRunArgs {
    /// The action, e.g. deploy.rollback.
    pub tool: String,
    /// Its arguments as a JSON object, e.g. '{"deployment": "storefront"}'.
    #[arg(default_value = "{}")]
    pub args: String,
}

#[derive(Args)]
pub struct PostmortemArgs {
    /// The incident id, e.g. 2026-11-27-01.
    pub incident: String,
    /// Write the draft to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct BackupArgs {
    /// A new (or empty) directory for the copy and its manifest.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup directory (with its manifest.json).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Move a store or audit log already in the data directory aside (never deleted).
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// The remembered incidents most similar to TEXT (from the incident store).
    Search(MemorySearchArgs),
    /// Recall@k of each embedder over the eval suite: every case is remembered as a resolved
    /// incident, then each is investigated again with the others in memory.
    Recall(MemoryRecallArgs),
}

#[derive(Args)]
pub struct MemorySearchArgs {
    #[arg(value_name = "TEXT", required = true, num_args = 1..)]
    pub text: Vec<String>,
    /// How many to show.
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
}

#[derive(Args)]
pub struct MemoryRecallArgs {
    /// Directory of oncall-case/1 files.
    #[arg(long, default_value = "eval/cases")]
    pub cases: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// Embedders to measure (default: the configured one). `minilm` needs the `minilm`
    /// build feature; `openai` the configured embeddings endpoint.
    #[arg(long, value_enum, num_args = 1..)]
    pub embedder: Vec<EmbedderArg>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum EmbedderArg {
    Hashed,
    Minilm,
    Openai,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token for NAME with a role; it is printed once and stored only as a hash.
    Add(TokenAddArgs),
}

#[derive(Args)]
pub struct TokenAddArgs {
    /// Who holds it (shown in the timeline and the audit log).
    pub name: String,
    /// viewer (read), responder (open incidents, chat), approver (decide actions), or ingest
    /// (an OpenTelemetry exporter: it may only send traces to POST /v1/traces).
    #[arg(long, default_value = "responder")]
    pub role: String,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exit 1 if any record was edited, removed or reordered, or if the log
    /// ends in a torn write not recovered yet. Recoveries after torn writes are listed.
    Verify(AuditVerifyArgs),
}

#[derive(Args)]
pub struct AuditVerifyArgs {
    /// The log file (default: [policy] audit_file, else audit.jsonl in [server] data_dir).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The last record's hash, kept elsewhere: also catches records removed from the end.
    #[arg(long)]
    pub head: Option<String>,
    /// Check every replica's log instead, as the shared store ([server] database_url) lists
    /// them: each chain, and that each still holds the last record its replica recorded in
    /// the store at its last heartbeat.
    #[arg(long, conflicts_with_all = ["file", "head"])]
    pub replicas: bool,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load the settings as `serve` and `triage` would, check the policy and action files, and
    /// print every effective setting with where it came from (default, file, env), secrets
    /// masked; `ONCALL_*` variables that are not settings are listed with the reason. Exit 2 when
    /// something does not load, naming it.
    Check {
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
}

/// Why a command stopped. Either way it prints as one line, `error: ...`, on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input or settings the user can fix (exit 2): the message names the problem and the fix.
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError::Usage(msg.into())
    }

    pub fn failed(msg: impl std::fmt::Display) -> CliError {
        CliError::Failed(msg.to_string())
    }

    /// Prints the one line and gives the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {self}");
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::FAILURE,
        }
    }
}

/// What a command ends with: the exit code it chose (eval and audit verify pick 1 for a failed
/// check they already explained), or an error to print.
pub type Outcome = Result<ExitCode, CliError>;

/// Success when `ok`, else exit 1: for checks that already printed why they failed.
pub fn exit_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
