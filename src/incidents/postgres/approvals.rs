//! Action requests as every replica sees them: filed once, read by all, and moved between
//! phases by one conditional step under a row lock.

use super::{PgStore, backend};
use crate::incidents::{
    APPROVAL_COLS, ApprovalMove, ApprovalRow, Moved, StoreError, approval_from, ts,
};
use chrono::Utc;
use serde_json::Value;

/// `Store::approval_put`: false when the id is taken (the row is left as it is).
pub(super) async fn put(store: &PgStore, row: &ApprovalRow) -> Result<bool, StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    let n = c
        .execute(
            "INSERT INTO approvals (id, incident, request, created_at, phase, state, approval,
             replica, in_flight, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO NOTHING",
            &[
                &row.id,
                &row.incident,
                &row.request.to_string(),
                &ts(row.created_at),
                &row.phase,
                &row.state.to_string(),
                &row.approval.as_ref().map(Value::to_string),
                &row.replica,
                &i32::from(row.in_flight),
                &ts(Utc::now()),
            ],
        )
        .await
        .map_err(backend)?;
    Ok(n == 1)
}

/// `Store::approval_rows`.
pub(super) async fn rows(store: &PgStore) -> Result<Vec<ApprovalRow>, StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    let rows = c
        .query(
            &format!("SELECT {APPROVAL_COLS} FROM approvals ORDER BY created_at, id"),
            &[],
        )
        .await
        .map_err(backend)?;
    rows.iter()
        .map(|r| {
            approval_from(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                i64::from(r.get::<_, i32>(8)),
            )
        })
        .collect()
}

/// `Store::approval_move`: the check and the move in one transaction, under the row's lock.
pub(super) async fn move_phase(
    store: &PgStore,
    id: &str,
    from: &[&str],
    to: &ApprovalMove,
) -> Result<Moved, StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    let tx = c.transaction().await.map_err(backend)?;
    // The row lock serializes every replica's move of this request: the phase read here is
    // the phase the update below replaces.
    let Some(now) = tx
        .query_opt(
            "SELECT phase, incident, in_flight FROM approvals WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(backend)?
    else {
        return Ok(Moved::Stale(None));
    };
    let (phase, incident, flying): (String, String, i32) = (now.get(0), now.get(1), now.get(2));
    if !from.contains(&phase.as_str()) {
        return Ok(Moved::Stale(Some(phase)));
    }
    if to.in_flight && flying == 0 {
        let other = tx
            .query_opt(
                "SELECT id FROM approvals WHERE incident = $1 AND in_flight = 1 AND id <> $2",
                &[&incident, &id],
            )
            .await
            .map_err(backend)?;
        if let Some(other) = other {
            return Ok(Moved::Busy(other.get(0)));
        }
    }
    let updated = tx
        .execute(
            "UPDATE approvals SET phase = $2, state = $3, approval = COALESCE($4, approval),
             replica = COALESCE($5, replica), in_flight = $6, updated_at = $7 WHERE id = $1",
            &[
                &id,
                &to.phase,
                &to.state.to_string(),
                &to.approval.as_ref().map(Value::to_string),
                &to.replica,
                &i32::from(to.in_flight),
                &ts(Utc::now()),
            ],
        )
        .await;
    match updated {
        Ok(_) => {}
        // Two requests of one incident claimed at once: the unique index lets one through.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Ok(Moved::Busy("another request of this incident".into()));
        }
        Err(e) => return Err(backend(e)),
    }
    match tx.commit().await {
        Ok(()) => Ok(Moved::Moved),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Ok(Moved::Busy("another request of this incident".into()))
        }
        Err(e) => Err(backend(e)),
    }
}

/// `Store::approval_release`.
pub(super) async fn release(store: &PgStore, id: &str) -> Result<(), StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    c.execute(
        "UPDATE approvals SET in_flight = 0, updated_at = $2 WHERE id = $1",
        &[&id, &ts(Utc::now())],
    )
    .await
    .map_err(backend)?;
    Ok(())
}
