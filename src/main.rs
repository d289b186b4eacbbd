//! The `oncall` command line: thin on purpose. It parses the arguments and hands each command
//! to its module in `src/cli/` with the shared [`Context`] (settings, logging, runtime, tools).
//! Usage and configuration errors print one line that names the problem and the fix, and exit
//! with code 2.

use clap::Parser;
use oncall::cli::{
    self, AuditCommand, Cli, CliError, Command, ConfigCommand, Context, MemoryCommand, TokenCommand,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return parse_error(e),
    };
    // Settings, policy and action files load before any command runs: a broken one stops here.
    let ctx = match Context::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return e.report(),
    };
    let done = match cli.command {
        Command::Triage(a) => cli::triage::run(a, ctx),
        Command::Serve(a) => cli::serve::run(a, &ctx),
        Command::Mcp(a) => cli::mcp::run(a, &ctx),
        Command::Record(a) => cli::record::run(a, &ctx),
        Command::Eval(a) => cli::eval::run(a, &ctx),
        Command::Tools(a) => cli::tools::run(a, &ctx),
        Command::DryRun(a) => cli::dry_run::run(a, &ctx),
        Command::Audit {
            command: AuditCommand::Verify(a),
        } => cli::audit::verify(a, &ctx),
        Command::Postmortem(a) => cli::postmortem::run(a, &ctx),
        Command::Backup(a) => cli::ops::backup(a, &ctx),
        Command::Restore(a) => cli::ops::restore(a, &ctx),
        Command::Config {
            command: ConfigCommand::Check { json },
        } => cli::config::check(cli.config.as_deref(), json),
        Command::Token {
            command: TokenCommand::Add(a),
        } => cli::token::add(a, &ctx),
        Command::Memory {
            command: MemoryCommand::Search(a),
        } => cli::memory::search(a, &ctx),
        Command::Memory {
            command: MemoryCommand::Recall(a),
        } => cli::memory::recall(a, &ctx),
    };
    done.unwrap_or_else(|e| e.report())
}

/// Help and version print as clap writes them; any other parse error becomes one line.
fn parse_error(e: clap::Error) -> ExitCode {
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
    CliError::usage(format!("{msg} (run `oncall --help` for usage)")).report()
}
