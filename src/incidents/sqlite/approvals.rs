//! Action requests as every replica sees them: filed once, read by all, and moved between
//! phases by one conditional step that a single writer makes atomic.

use super::backend;
use crate::incidents::{
    APPROVAL_COLS, ApprovalMove, ApprovalRow, Moved, StoreError, approval_from, ts,
};
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

/// `Store::approval_put`: false when the id is taken (the row is left as it is).
pub(super) fn put(c: &Connection, r: &ApprovalRow) -> Result<bool, StoreError> {
    let n = c
        .execute(
            "INSERT INTO approvals (id, incident, request, created_at, phase, state, approval,
             replica, in_flight, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO NOTHING",
            params![
                r.id,
                r.incident,
                r.request.to_string(),
                ts(r.created_at),
                r.phase,
                r.state.to_string(),
                r.approval.as_ref().map(Value::to_string),
                r.replica,
                i64::from(r.in_flight),
                ts(Utc::now())
            ],
        )
        .map_err(backend)?;
    Ok(n == 1)
}

/// `Store::approval_rows`.
pub(super) fn rows(c: &Connection) -> Result<Vec<ApprovalRow>, StoreError> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {APPROVAL_COLS} FROM approvals ORDER BY created_at, id"
        ))
        .map_err(backend)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
                (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?),
            ))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    rows.into_iter()
        .map(|((id, inc, req, at), (phase, state, appr, rep, fl))| {
            approval_from(id, inc, req, at, phase, state, appr, rep, fl)
        })
        .collect()
}

/// `Store::approval_move`: the check and the move in one immediate transaction.
pub(super) fn move_phase(
    c: &mut Connection,
    id: &str,
    from: &[String],
    to: &ApprovalMove,
) -> Result<Moved, StoreError> {
    // IMMEDIATE: the check and the move are one step for every writer of the file.
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let now: Option<(String, String, i64)> = tx
        .query_row(
            "SELECT phase, incident, in_flight FROM approvals WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((phase, incident, flying)) = now else {
        return Ok(Moved::Stale(None));
    };
    if !from.contains(&phase) {
        return Ok(Moved::Stale(Some(phase)));
    }
    if to.in_flight && flying == 0 {
        let other: Option<String> = tx
            .query_row(
                "SELECT id FROM approvals WHERE incident = ?1 AND in_flight = 1 AND id <> ?2",
                params![incident, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if let Some(other) = other {
            return Ok(Moved::Busy(other));
        }
    }
    tx.execute(
        "UPDATE approvals SET phase = ?2, state = ?3, approval = COALESCE(?4, approval),
         replica = COALESCE(?5, replica), in_flight = ?6, updated_at = ?7 WHERE id = ?1",
        params![
            id,
            to.phase,
            to.state.to_string(),
            to.approval.as_ref().map(Value::to_string),
            to.replica,
            i64::from(to.in_flight),
            ts(Utc::now())
        ],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(Moved::Moved)
}

/// `Store::approval_release`.
pub(super) fn release(c: &Connection, id: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE approvals SET in_flight = 0, updated_at = ?2 WHERE id = ?1",
        params![id, ts(Utc::now())],
    )
    .map_err(backend)?;
    Ok(())
}
