//! `postgres.connections`: client connections against `max_connections` minus the reserved ones,
//! by state, application and user.

use super::{Databases, PgAnswer, ask};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Arguments of `postgres.connections`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsArgs {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    pub max_connections: i32,
    /// superuser_reserved_connections: slots ordinary roles cannot use.
    pub reserved: i32,
    /// Slots ordinary roles can use.
    pub available: i32,
    /// Client connections now (oncall's own included: they take slots too).
    pub used: i64,
    pub used_pct: f64,
    pub by_state: BTreeMap<String, i64>,
    /// Applications by connections held, most first.
    pub by_application: Vec<(String, i64)>,
    pub by_user: Vec<(String, i64)>,
}

const SQL: &str = "/* oncall */ SELECT coalesce(state, 'unknown'), coalesce(nullif(application_name, ''), '(none)'), coalesce(usename, ''), count(*) \
    FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2, 3";

pub struct ConnectionsTool {
    pub dbs: Databases,
}

fn top(map: BTreeMap<String, i64>) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(10);
    v
}

#[async_trait]
impl Tool for ConnectionsTool {
    const NAME: &'static str = "postgres.connections";
    const DESCRIPTION: &'static str = "PostgreSQL connections used vs. max_connections minus reserved slots, by state, application and user: which application holds the most.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = ConnectionsArgs;
    type Output = PgAnswer<Connections>;

    crate::collectors::postgres::database_tool!();

    async fn call(&self, a: ConnectionsArgs) -> Result<Self::Output, ToolError> {
        Ok(ask(&self.dbs, a.database.as_deref(), |client, _| async move {
            let settings = client
                .query_one("/* oncall */ SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int", &[])
                .await?;
            let (max, reserved): (i32, i32) = (settings.get(0), settings.get(1));
            let (mut by_state, mut by_app, mut by_user) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
            let mut used = 0;
            for r in client.query(SQL, &[]).await? {
                let n: i64 = r.get(3);
                used += n;
                *by_state.entry(r.get::<_, String>(0)).or_insert(0) += n;
                *by_app.entry(r.get::<_, String>(1)).or_insert(0) += n;
                *by_user.entry(r.get::<_, String>(2)).or_insert(0) += n;
            }
            let available = (max - reserved).max(1);
            Ok(Connections {
                max_connections: max,
                reserved,
                available,
                used,
                used_pct: (1000.0 * used as f64 / available as f64).round() / 10.0,
                by_state,
                by_application: top(by_app),
                by_user: top(by_user),
            })
        })
        .await)
    }
}
