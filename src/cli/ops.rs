//! `oncall backup` and `oncall restore`: thin wrappers over [`crate::ops::backup`], which does
//! the copying and the checks; a refusal (not empty, not stopped) is a usage error.

use super::{BackupArgs, CliError, Context, Outcome, RestoreArgs};
use crate::ops::backup::{self, BackupError};
use std::process::ExitCode;

pub fn backup(args: BackupArgs, ctx: &Context) -> Outcome {
    done(backup::backup(&ctx.config, &args.to))
}

pub fn restore(args: RestoreArgs, ctx: &Context) -> Outcome {
    done(backup::restore(&ctx.config, &args.from, args.force))
}

/// Prints what was done; a refusal is a usage error (2), anything else a failure (1).
fn done<T: std::fmt::Display>(r: Result<T, BackupError>) -> Outcome {
    match r {
        Ok(done) => {
            println!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ BackupError::Refused(_)) => Err(CliError::usage(e.to_string())),
        Err(e) => Err(CliError::failed(e)),
    }
}
