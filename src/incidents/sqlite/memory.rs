//! Incident memory: one row per incident and embedder, for finding similar past incidents.

use super::backend;
use crate::incidents::{MEMORY_PUT, MEMORY_ROWS, MemoryRow, StoreError, parse_ts, ts};
use rusqlite::{Connection, params};

/// `Store::memory_put`.
pub(super) fn put(c: &Connection, r: &MemoryRow) -> Result<(), StoreError> {
    c.execute(
        MEMORY_PUT,
        params![r.incident, r.embedder, r.doc, r.vector, ts(r.created_at)],
    )
    .map_err(backend)?;
    Ok(())
}

/// `Store::memory_rows`.
pub(super) fn rows(c: &Connection) -> Result<Vec<MemoryRow>, StoreError> {
    let mut st = c.prepare(MEMORY_ROWS).map_err(backend)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(backend)?;
    let mut out = vec![];
    for row in rows {
        let (incident, embedder, doc, vector, at) = row.map_err(backend)?;
        out.push(MemoryRow {
            incident,
            embedder,
            doc,
            vector,
            created_at: parse_ts(&at)?,
        });
    }
    Ok(out)
}
