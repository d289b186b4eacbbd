//! `oncall config check`: the settings were loaded and the policy and action files checked
//! before this runs; it prints every effective setting with its source, secrets masked.

use super::{CliError, Outcome};
use crate::config::Config;
use std::path::Path;
use std::process::ExitCode;

pub fn check(explicit: Option<&Path>, json: bool) -> Outcome {
    let loaded = Config::load_explained(explicit).map_err(|e| CliError::usage(e.to_string()))?;
    let report = crate::config::check::explain(&loaded, &|name| {
        std::env::var_os(name).is_some_and(|v| !v.is_empty())
    });
    if json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::failed(format!("cannot encode the report as JSON: {e}")))?;
        println!("{s}");
    } else {
        print!("{}", crate::config::check::render(&report));
        eprintln!("settings, policy and action files load: ok");
    }
    Ok(ExitCode::SUCCESS)
}
