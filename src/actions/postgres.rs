//! `postgres.cancel_backend` and `postgres.terminate_backend`: stop a query, or end a session
//! (e.g. the root holder of a lock chain). Live actions: the registry runs them only with an
//! approval bound to the exact database and pid. They connect with `action_url` (a role with
//! pg_signal_backend), not the read-only role.

use crate::collectors::postgres::{Databases, connect};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of the backend actions.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendArgs {
    /// Which configured database. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
    /// The backend pid, as postgres.blocking or postgres.activity shows it.
    pub pid: i32,
}

#[derive(Debug, Serialize)]
pub struct BackendOutcome {
    pub database: String,
    pub pid: i32,
    /// What PostgreSQL answered: true if the signal was sent.
    pub signalled: bool,
}

/// Both backend actions are checked by the blocking tree before and after.
fn backend_effect(a: &BackendArgs) -> crate::tool::EffectCheck {
    crate::tool::EffectCheck {
        tool: "postgres.blocking".into(),
        args: serde_json::json!({"database": a.database}),
        measure: [
            ("waiting sessions", "/data/waiting_sessions"),
            ("longest wait s", "/data/longest_wait_s"),
        ]
        .map(|(l, p)| (l.to_string(), p.to_string()))
        .into(),
        settle_s: 1,
    }
}

fn backend_plan(func: &str, a: &BackendArgs) -> serde_json::Value {
    serde_json::json!({
        "kind": "sql",
        "database": a.database.clone().unwrap_or_else(|| "(the only configured database)".into()),
        "would_run": format!("SELECT {func}({})", a.pid),
    })
}

async fn signal(
    dbs: &Databases,
    tool: &str,
    func: &str,
    a: BackendArgs,
) -> Result<BackendOutcome, ToolError> {
    let fail = |message: String| ToolError::Failed {
        tool: tool.into(),
        message,
    };
    if a.pid <= 0 {
        return Err(ToolError::BadArguments {
            tool: tool.into(),
            message: format!("pid must be positive, got {}", a.pid),
        });
    }
    let (name, s) = dbs
        .resolve(a.database.as_deref())
        .map_err(|p| fail(format!("{} ({})", p.message, p.hint)))?;
    let client = connect(&name, &s, true)
        .await
        .map_err(|p| fail(format!("{} ({})", p.message, p.hint)))?;
    let sql = format!("/* oncall */ SELECT {func}($1)");
    let row = client
        .query_one(&sql, &[&a.pid])
        .await
        .map_err(|e| fail(crate::collectors::postgres::classify(&name, &s, &e).message))?;
    Ok(BackendOutcome {
        database: name,
        pid: a.pid,
        signalled: row.get(0),
    })
}

pub struct CancelBackend {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for CancelBackend {
    const NAME: &'static str = "postgres.cancel_backend";
    const DESCRIPTION: &'static str = "Live action (needs human approval): cancel the running query of one PostgreSQL backend (pg_cancel_backend). The session stays; its transaction aborts.";
    const RISK: RiskClass = RiskClass::LiveAction;
    type Args = BackendArgs;
    type Output = BackendOutcome;

    crate::collectors::postgres::database_tool!();

    fn effect(&self, a: &BackendArgs) -> Option<crate::tool::EffectCheck> {
        Some(backend_effect(a))
    }

    fn dry_run(&self, a: &BackendArgs) -> Option<serde_json::Value> {
        Some(backend_plan("pg_cancel_backend", a))
    }

    async fn call(&self, a: BackendArgs) -> Result<BackendOutcome, ToolError> {
        signal(&self.dbs, Self::NAME, "pg_cancel_backend", a).await
    }
}

pub struct TerminateBackend {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for TerminateBackend {
    const NAME: &'static str = "postgres.terminate_backend";
    const DESCRIPTION: &'static str = "Live action (needs human approval): terminate one PostgreSQL backend (pg_terminate_backend), e.g. the root holder of a lock chain that sits idle in transaction. Its transaction rolls back.";
    const RISK: RiskClass = RiskClass::LiveAction;
    type Args = BackendArgs;
    type Output = BackendOutcome;

    crate::collectors::postgres::database_tool!();

    fn effect(&self, a: &BackendArgs) -> Option<crate::tool::EffectCheck> {
        Some(backend_effect(a))
    }

    fn dry_run(&self, a: &BackendArgs) -> Option<serde_json::Value> {
        Some(backend_plan("pg_terminate_backend", a))
    }

    async fn call(&self, a: BackendArgs) -> Result<BackendOutcome, ToolError> {
        signal(&self.dbs, Self::NAME, "pg_terminate_backend", a).await
    }
}
