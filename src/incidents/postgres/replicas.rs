//! What replicas share besides approvals: keys seen once (Slack retries and replays, repeated
//! alerts), and each replica's heartbeat with where its audit log stands.

use super::{PgStore, backend};
use crate::incidents::{ReplicaRow, StoreError, unix_now};

/// `Store::seen_first`: an expired key counts as new.
pub(super) async fn seen_first(store: &PgStore, key: &str, ttl_s: i64) -> Result<bool, StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    let now = unix_now();
    let n = c
        .execute(
            "INSERT INTO seen_keys (key, expires_at) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
             WHERE seen_keys.expires_at <= $3",
            &[&key, &(now + ttl_s.max(1)), &now],
        )
        .await
        .map_err(backend)?;
    Ok(n == 1)
}

/// `Store::seen_purge`.
pub(super) async fn seen_purge(store: &PgStore) -> Result<u64, StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    c.execute(
        "DELETE FROM seen_keys WHERE expires_at <= $1",
        &[&unix_now()],
    )
    .await
    .map_err(backend)
}

/// `Store::seen_forget`.
pub(super) async fn seen_forget(store: &PgStore, key: &str) -> Result<(), StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    c.execute("DELETE FROM seen_keys WHERE key = $1", &[&key])
        .await
        .map_err(backend)?;
    Ok(())
}

/// `Store::heartbeat`.
pub(super) async fn heartbeat(store: &PgStore, beat: &ReplicaRow) -> Result<(), StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    c.execute(
        "INSERT INTO replicas (name, heartbeat, audit_file, audit_seq, audit_head)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET heartbeat = excluded.heartbeat,
         audit_file = excluded.audit_file, audit_seq = excluded.audit_seq,
         audit_head = excluded.audit_head",
        &[
            &beat.name,
            &beat.heartbeat,
            &beat.audit_file,
            &beat.audit_seq,
            &beat.audit_head,
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// `Store::replicas`.
pub(super) async fn list(store: &PgStore) -> Result<Vec<ReplicaRow>, StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    let rows = c
        .query(
            "SELECT name, heartbeat, audit_file, audit_seq, audit_head FROM replicas ORDER BY name",
            &[],
        )
        .await
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| ReplicaRow {
            name: r.get(0),
            heartbeat: r.get(1),
            audit_file: r.get(2),
            audit_seq: r.get(3),
            audit_head: r.get(4),
        })
        .collect())
}
