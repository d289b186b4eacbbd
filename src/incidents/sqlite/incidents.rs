//! Incidents and their event logs: opening one, appending (one writer, so sequence numbers stay
//! gapless), reading, status changes, the Slack thread, and the `interrupted` mark a restart or
//! a live replica sets.

use super::backend;
use crate::incidents::{
    Event, EventKind, Incident, NewIncident, Status, StoreError, event_from, incident_from,
    incident_id, ts,
};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

const INCIDENT_COLS: &str =
    "id, title, status, severity, source, created_at, updated_at, owner, slack_thread";

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 9]> {
    Ok([
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ])
}

fn to_incident(c: [Option<String>; 9]) -> Result<Incident, StoreError> {
    let [
        id,
        title,
        status,
        severity,
        source,
        created,
        updated,
        owner,
        thread,
    ] = c;
    incident_from(
        id.unwrap_or_default(),
        title.unwrap_or_default(),
        status.unwrap_or_default(),
        severity.unwrap_or_default(),
        source.unwrap_or_default(),
        created.unwrap_or_default(),
        updated.unwrap_or_default(),
        owner,
        thread,
    )
}

fn query_incidents(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Incident>, StoreError> {
    let mut st = c.prepare_cached(sql).map_err(backend)?;
    let rows = st
        .query_map(p, incident_row)
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    rows.into_iter().map(to_incident).collect()
}

fn append_in(
    tx: &rusqlite::Transaction<'_>,
    incident: &str,
    kind: EventKind,
    actor: &str,
    data: &Value,
    at: DateTime<Utc>,
) -> Result<Event, StoreError> {
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM incidents WHERE id = ?1",
            params![incident],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    if exists.is_none() {
        return Err(StoreError::NoSuchIncident(incident.to_string()));
    }
    let seq: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE incident = ?1",
            params![incident],
            |r| r.get(0),
        )
        .map_err(backend)?;
    tx.execute(
        "INSERT INTO events (incident, seq, at, kind, actor, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            incident,
            seq,
            ts(at),
            kind.as_str(),
            actor,
            data.to_string()
        ],
    )
    .map_err(backend)?;
    tx.execute(
        "UPDATE incidents SET updated_at = ?2 WHERE id = ?1",
        params![incident, ts(at)],
    )
    .map_err(backend)?;
    Ok(Event {
        seq,
        at,
        kind,
        actor: actor.to_string(),
        data: data.clone(),
    })
}

/// `Store::create`: numbers the incident within its day and writes its `report` event, in one
/// transaction.
pub(super) fn create(
    c: &mut Connection,
    new: NewIncident,
) -> Result<(Incident, Event), StoreError> {
    let now = Utc::now();
    let day = now.format("%Y-%m-%d").to_string();
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let n: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(n), 0) + 1 FROM incidents WHERE day = ?1",
            params![day],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let id = incident_id(now, n);
    tx.execute(
        "INSERT INTO incidents (id, day, n, title, status, severity, source, created_at, updated_at, owner)
         VALUES (?1, ?2, ?3, ?4, 'investigating', '', ?5, ?6, ?6, ?7)",
        params![id, day, n, new.title, new.source, ts(now), new.owner],
    )
    .map_err(backend)?;
    let ev = append_in(&tx, &id, EventKind::Report, &new.actor, &new.report, now)?;
    tx.commit().map_err(backend)?;
    let inc = new.opened(id, now);
    Ok((inc, ev))
}

/// `Store::append`, in its own transaction.
pub(super) fn append(
    c: &mut Connection,
    incident: &str,
    kind: EventKind,
    actor: &str,
    data: &Value,
) -> Result<Event, StoreError> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let ev = append_in(&tx, incident, kind, actor, data, Utc::now())?;
    tx.commit().map_err(backend)?;
    Ok(ev)
}

/// `Store::events`.
pub(super) fn events(
    c: &Connection,
    incident: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let mut st = c
        .prepare_cached(
            "SELECT seq, at, kind, actor, data FROM events
             WHERE incident = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(params![incident, after, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(backend)?
        .collect::<Result<Vec<(i64, String, String, String, String)>, _>>()
        .map_err(backend)?;
    rows.into_iter()
        .map(|(s, a, k, ac, d)| event_from(s, a, k, ac, d))
        .collect()
}

/// `Store::incident`.
pub(super) fn incident(c: &Connection, id: &str) -> Result<Option<Incident>, StoreError> {
    Ok(query_incidents(
        c,
        &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE id = ?1"),
        params![id],
    )?
    .pop())
}

/// `Store::list`.
pub(super) fn list(c: &Connection, limit: i64) -> Result<Vec<Incident>, StoreError> {
    query_incidents(
        c,
        &format!("SELECT {INCIDENT_COLS} FROM incidents ORDER BY created_at DESC, n DESC LIMIT ?1"),
        params![limit],
    )
}

/// `Store::set_status`, with its `status_changed` event in the same transaction.
pub(super) fn set_status(
    c: &mut Connection,
    id: &str,
    status: Status,
    severity: Option<&str>,
    owner: Option<&str>,
) -> Result<(), StoreError> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let n = tx
        .execute(
            "UPDATE incidents SET status = ?2, severity = COALESCE(?3, severity),
             owner = COALESCE(?4, owner) WHERE id = ?1",
            params![id, status.as_str(), severity, owner],
        )
        .map_err(backend)?;
    if n == 0 {
        return Err(StoreError::NoSuchIncident(id.to_string()));
    }
    append_in(
        &tx,
        id,
        EventKind::StatusChanged,
        "oncall",
        &serde_json::json!({"status": status}),
        Utc::now(),
    )?;
    tx.commit().map_err(backend)
}

/// `Store::set_slack_thread`.
pub(super) fn set_slack_thread(c: &Connection, id: &str, thread: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE incidents SET slack_thread = ?2 WHERE id = ?1",
        params![id, thread],
    )
    .map_err(backend)?;
    Ok(())
}

/// `Store::by_slack_thread`.
pub(super) fn by_slack_thread(
    c: &Connection,
    thread: &str,
) -> Result<Option<Incident>, StoreError> {
    Ok(query_incidents(
        c,
        &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE slack_thread = ?1"),
        params![thread],
    )?
    .pop())
}

/// `Store::owned`.
pub(super) fn owned(
    c: &Connection,
    owner: &str,
    status: Status,
) -> Result<Vec<Incident>, StoreError> {
    query_incidents(
        c,
        &format!(
            "SELECT {INCIDENT_COLS} FROM incidents WHERE owner = ?1 AND status = ?2 ORDER BY id"
        ),
        params![owner, status.as_str()],
    )
}

/// `Store::interrupt`: the mark and its two events in one transaction, or nothing.
pub(super) fn interrupt(
    c: &mut Connection,
    id: &str,
    owner: &str,
    reason: &str,
    by: &str,
) -> Result<bool, StoreError> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let n = tx
        .execute(
            "UPDATE incidents SET status = 'interrupted'
             WHERE id = ?1 AND owner = ?2 AND status = 'investigating'",
            params![id, owner],
        )
        .map_err(backend)?;
    if n == 0 {
        return Ok(false);
    }
    let now = Utc::now();
    append_in(
        &tx,
        id,
        EventKind::Interrupted,
        "oncall",
        &serde_json::json!({"reason": reason, "by": by, "owner": owner}),
        now,
    )?;
    append_in(
        &tx,
        id,
        EventKind::StatusChanged,
        "oncall",
        &serde_json::json!({"status": Status::Interrupted}),
        now,
    )?;
    tx.commit().map_err(backend)?;
    Ok(true)
}
