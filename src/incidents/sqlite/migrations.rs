//! The schema: the migrations in [`MIGRATIONS`] not yet applied to the file, in order, each
//! recorded in `schema_version`.

use crate::incidents::MIGRATIONS;
use rusqlite::{Connection, params};

/// Applies the pending migrations in one immediate transaction.
pub(super) fn migrate(c: &mut Connection) -> rusqlite::Result<()> {
    c.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.execute_batch(m)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![i as i64 + 1],
        )?;
    }
    tx.commit()
}
