//! What replicas share besides approvals: keys seen once (Slack retries and replays, repeated
//! alerts), and each replica's heartbeat with where its audit log stands.

use super::backend;
use crate::incidents::{ReplicaRow, StoreError, unix_now};
use rusqlite::{Connection, params};

/// `Store::seen_first`: an expired key counts as new.
pub(super) fn seen_first(c: &Connection, key: &str, ttl_s: i64) -> Result<bool, StoreError> {
    let now = unix_now();
    let n = c
        .execute(
            "INSERT INTO seen_keys (key, expires_at) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
             WHERE seen_keys.expires_at <= ?3",
            params![key, now + ttl_s.max(1), now],
        )
        .map_err(backend)?;
    Ok(n == 1)
}

/// `Store::seen_purge`.
pub(super) fn seen_purge(c: &Connection) -> Result<u64, StoreError> {
    c.execute(
        "DELETE FROM seen_keys WHERE expires_at <= ?1",
        params![unix_now()],
    )
    .map(|n| n as u64)
    .map_err(backend)
}

/// `Store::seen_forget`.
pub(super) fn seen_forget(c: &Connection, key: &str) -> Result<(), StoreError> {
    c.execute("DELETE FROM seen_keys WHERE key = ?1", params![key])
        .map(|_| ())
        .map_err(backend)
}

/// `Store::heartbeat`.
pub(super) fn heartbeat(c: &Connection, b: &ReplicaRow) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO replicas (name, heartbeat, audit_file, audit_seq, audit_head)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET heartbeat = excluded.heartbeat,
         audit_file = excluded.audit_file, audit_seq = excluded.audit_seq,
         audit_head = excluded.audit_head",
        params![b.name, b.heartbeat, b.audit_file, b.audit_seq, b.audit_head],
    )
    .map_err(backend)?;
    Ok(())
}

/// `Store::replicas`.
pub(super) fn list(c: &Connection) -> Result<Vec<ReplicaRow>, StoreError> {
    let mut st = c
        .prepare_cached(
            "SELECT name, heartbeat, audit_file, audit_seq, audit_head FROM replicas ORDER BY name",
        )
        .map_err(backend)?;
    let rows = st
        .query_map([], |r| {
            Ok(ReplicaRow {
                name: r.get(0)?,
                heartbeat: r.get(1)?,
                audit_file: r.get(2)?,
                audit_seq: r.get(3)?,
                audit_head: r.get(4)?,
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(rows)
}
