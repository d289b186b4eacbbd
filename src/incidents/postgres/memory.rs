//! Incident memory: one row per incident and embedder, for finding similar past incidents.

use super::{PgStore, backend};
use crate::incidents::{MEMORY_PUT, MEMORY_ROWS, MemoryRow, StoreError, parse_ts, ts};

/// `Store::memory_put`.
pub(super) async fn put(store: &PgStore, row: &MemoryRow) -> Result<(), StoreError> {
    let c = store.client().await?;
    c.execute(
        MEMORY_PUT,
        &[
            &row.incident,
            &row.embedder,
            &row.doc,
            &row.vector,
            &ts(row.created_at),
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// `Store::memory_rows`.
pub(super) async fn rows(store: &PgStore) -> Result<Vec<MemoryRow>, StoreError> {
    let c = store.client().await?;
    let rows = c.query(MEMORY_ROWS, &[]).await.map_err(backend)?;
    rows.iter()
        .map(|r| {
            Ok(MemoryRow {
                incident: r.get(0),
                embedder: r.get(1),
                doc: r.get(2),
                vector: r.get(3),
                created_at: parse_ts(r.get(4))?,
            })
        })
        .collect()
}
