//! `postgres.table_stats`: sequential vs. index scans, tuples read, dead tuples and the last
//! (auto)vacuum/analyze of the tables a symptom points at (pg_stat_user_tables).

use super::{Databases, PgAnswer, ask};
use crate::tool::{RiskClass, Tool, ToolError, in_range};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `postgres.table_stats`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableStatsArgs {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
    /// Table names to look at (e.g. the tables the top queries touch). Empty: the tables with the
    /// most rows read by sequential scans.
    #[serde(default)]
    pub tables: Vec<String>,
    /// How many tables to return, 1 to 20 (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStat {
    pub table: String,
    pub seq_scan: i64,
    pub seq_tup_read: i64,
    pub idx_scan: Option<i64>,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    /// Indexes on the table.
    pub indexes: i64,
    pub size_mib: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_vacuum: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analyze: Option<DateTime<Utc>>,
}

const SQL: &str = "/* oncall */ SELECT t.relname, t.seq_scan, t.seq_tup_read, t.idx_scan, t.n_live_tup, t.n_dead_tup, \
    (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid), \
    pg_total_relation_size(t.relid)::float8 / 1048576.0, \
    greatest(t.last_vacuum, t.last_autovacuum), greatest(t.last_analyze, t.last_autoanalyze) \
    FROM pg_stat_user_tables t WHERE (cardinality($1::text[]) = 0 OR t.relname = ANY($1)) \
    ORDER BY t.seq_tup_read DESC LIMIT $2";

pub struct TableStatsTool {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for TableStatsTool {
    const NAME: &'static str = "postgres.table_stats";
    const DESCRIPTION: &'static str = "PostgreSQL table statistics: sequential vs. index scans, tuples read by seq scans, live and dead tuples, index count, size, last vacuum and analyze, for the given tables (e.g. those the top queries touch).";
    const RISK: RiskClass = RiskClass::Read;
    type Args = TableStatsArgs;
    type Output = PgAnswer<Vec<TableStat>>;

    crate::collectors::postgres::database_tool!();

    async fn call(&self, a: TableStatsArgs) -> Result<Self::Output, ToolError> {
        let limit = in_range(Self::NAME, "limit", a.limit.unwrap_or(5), 1..=20)? as i64;
        let tables = a.tables.clone();
        Ok(
            ask(&self.dbs, a.database.as_deref(), |client, _| async move {
                let rows = client.query(SQL, &[&tables, &limit]).await?;
                Ok(rows
                    .iter()
                    .map(|r| TableStat {
                        table: r.get(0),
                        seq_scan: r.get::<_, Option<i64>>(1).unwrap_or(0),
                        seq_tup_read: r.get::<_, Option<i64>>(2).unwrap_or(0),
                        idx_scan: r.get(3),
                        live_tuples: r.get::<_, Option<i64>>(4).unwrap_or(0),
                        dead_tuples: r.get::<_, Option<i64>>(5).unwrap_or(0),
                        indexes: r.get(6),
                        size_mib: (r.get::<_, Option<f64>>(7).unwrap_or(0.0) * 10.0).round() / 10.0,
                        last_vacuum: r.get(8),
                        last_analyze: r.get(9),
                    })
                    .collect())
            })
            .await,
        )
    }
}
