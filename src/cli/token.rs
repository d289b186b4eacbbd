//! `oncall token add`: a bearer token for a person (or an exporter), printed once; the store
//! keeps only its hash.

use super::{CliError, Context, Outcome, TokenAddArgs};
use crate::server::auth;
use std::process::ExitCode;

pub fn add(args: TokenAddArgs, ctx: &Context) -> Outcome {
    let grant = auth::parse_grant(&args.role).map_err(|e| CliError::usage(e.to_string()))?;
    // Names that are not people, or are someone else: the agent, the model, the operator's
    // token, Slack users.
    let n = args.name.trim();
    if n.is_empty() || ["oncall", "model", "admin"].contains(&n) || n.contains(':') {
        return Err(CliError::usage(
            "give the token holder a person's name (not `oncall` or `model`, the agent's names, not `admin`, the operator token's, and no `:` as in Slack's `slack:U...`)",
        ));
    }
    let t = auth::new_token();
    ctx.runtime
        .block_on(async {
            let store = crate::incidents::open_configured(&ctx.config.server)
                .await?
                .0;
            store.put_grant(n, grant, &auth::token_sha(&t)).await
        })
        .map_err(CliError::failed)?;
    eprintln!(
        "token for {n} ({}); shown once, only its hash is stored:",
        crate::incidents::grant_str(grant)
    );
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
