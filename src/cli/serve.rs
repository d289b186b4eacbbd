//! `oncall serve`: starts the server. On the first start with no operator token and no stored
//! token, it makes the `admin` approver token and shows it once, so there is a way in.

use super::{CliError, Context, Outcome, ServeArgs};
use crate::server::{self, AppState, ServerError, auth};
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(args: ServeArgs, ctx: &Context) -> Outcome {
    let mut cfg = (*ctx.config).clone();
    if let Some(l) = args.listen {
        cfg.server.listen = l;
    }
    let operator = std::env::var(&cfg.server.token_env)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let cfg = Arc::new(cfg);
    let served = ctx.runtime.block_on(async {
        let st = AppState::start(cfg.clone(), operator.as_deref()).await?;
        if operator.is_none() {
            first_token(&st).await?;
        }
        server::serve(st).await
    });
    match served {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ ServerError::Bind { .. }) => Err(CliError::usage(e.to_string())),
        Err(e) => Err(CliError::failed(e)),
    }
}

/// Makes and prints the `admin` token when the store holds none yet.
async fn first_token(st: &AppState) -> Result<(), ServerError> {
    let setup = |e: crate::incidents::StoreError| ServerError::Setup(e.to_string());
    if st.store.token_count().await.map_err(setup)? != 0 {
        return Ok(());
    }
    let t = auth::new_token();
    st.store
        .put_token("admin", crate::policy::Role::Approver, &auth::token_sha(&t))
        .await
        .map_err(setup)?;
    eprintln!(
        "oncall serve: first start; made the token of `admin` (approver). It is shown once, keep it:\n  {t}\n  sign in to the web page with it, or send Authorization: Bearer {t}\n  more tokens: oncall token add NAME --role viewer|responder|approver|ingest"
    );
    Ok(())
}
