//! The schema: the migrations in [`MIGRATIONS`] not yet applied to the database, in order, each
//! recorded in `schema_version`, one replica at a time (an advisory lock).

use super::{LOCK_MIGRATE, backend, describe};
use crate::incidents::{MIGRATIONS, StoreError};
use deadpool_postgres::Object;

/// Applies the pending migrations in one transaction that holds the migration lock.
pub(super) async fn migrate(first: &mut Object) -> Result<(), StoreError> {
    let tx = first.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])
        .await
        .map_err(backend)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await
        .map_err(backend)?;
    let done: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await
        .map_err(backend)?
        .get(0);
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(m).await.map_err(|e| StoreError::Open {
            what: "postgres".into(),
            reason: format!("migration {} failed: {}", i + 1, describe(&e)),
        })?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(())
}
