//! Incidents and their event logs: opening one, appending (a row lock on the incident keeps
//! sequence numbers gapless across replicas), reading, status changes, the Slack thread, and the
//! `interrupted` mark a restart or a live replica sets.

use super::{LOCK_NUMBER, PgStore, backend};
use crate::incidents::{
    Event, EventKind, Incident, NewIncident, Status, StoreError, event_from, incident_from,
    incident_id, ts,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

const INCIDENT_COLS: &str =
    "id, title, status, severity, source, created_at, updated_at, owner, slack_thread";

/// The incidents `sql` selects (the columns of `INCIDENT_COLS`).
async fn query_incidents(
    store: &PgStore,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Incident>, StoreError> {
    let c = store.client().await?;
    let rows = c.query(sql, params).await.map_err(backend)?;
    rows.iter()
        .map(|r| {
            incident_from(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
            )
        })
        .collect()
}

async fn append_in(
    tx: &tokio_postgres::Transaction<'_>,
    incident: &str,
    kind: EventKind,
    actor: &str,
    data: &Value,
    at: DateTime<Utc>,
) -> Result<Event, StoreError> {
    let locked = tx
        .query_opt(
            "SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE",
            &[&incident],
        )
        .await
        .map_err(backend)?;
    if locked.is_none() {
        return Err(StoreError::NoSuchIncident(incident.to_string()));
    }
    let seq: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE incident = $1",
            &[&incident],
        )
        .await
        .map_err(backend)?
        .get(0);
    tx.execute(
        "INSERT INTO events (incident, seq, at, kind, actor, data) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &incident,
            &seq,
            &ts(at),
            &kind.as_str(),
            &actor,
            &data.to_string(),
        ],
    )
    .await
    .map_err(backend)?;
    tx.execute(
        "UPDATE incidents SET updated_at = $2 WHERE id = $1",
        &[&incident, &ts(at)],
    )
    .await
    .map_err(backend)?;
    Ok(Event {
        seq,
        at,
        kind,
        actor: actor.to_string(),
        data: data.clone(),
    })
}

/// `Store::create`: numbers the incident within its day (under an advisory lock) and writes its
/// `report` event, in one transaction.
pub(super) async fn create(
    store: &PgStore,
    new: NewIncident,
) -> Result<(Incident, Event), StoreError> {
    let mut c = store.client().await?;
    let now = Utc::now();
    let day = now.format("%Y-%m-%d").to_string();
    let tx = c.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_NUMBER])
        .await
        .map_err(backend)?;
    let n: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(n), 0)::BIGINT + 1 FROM incidents WHERE day = $1",
            &[&day],
        )
        .await
        .map_err(backend)?
        .get(0);
    let id = incident_id(now, n);
    tx.execute(
        "INSERT INTO incidents (id, day, n, title, status, severity, source, created_at, updated_at, owner)
         VALUES ($1, $2, $3, $4, 'investigating', '', $5, $6, $6, $7)",
        &[&id, &day, &(n as i32), &new.title, &new.source, &ts(now), &new.owner],
    )
    .await
    .map_err(backend)?;
    let ev = append_in(&tx, &id, EventKind::Report, &new.actor, &new.report, now).await?;
    tx.commit().await.map_err(backend)?;
    Ok((new.opened(id, now), ev))
}

/// `Store::append`, in its own transaction.
pub(super) async fn append(
    store: &PgStore,
    incident: &str,
    kind: EventKind,
    actor: &str,
    data: Value,
) -> Result<Event, StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(backend)?;
    let ev = append_in(&tx, incident, kind, actor, &data, Utc::now()).await?;
    tx.commit().await.map_err(backend)?;
    Ok(ev)
}

/// `Store::events`.
pub(super) async fn events(
    store: &PgStore,
    incident: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let c = store.client().await?;
    let rows = c
        .query(
            "SELECT seq, at, kind, actor, data FROM events
             WHERE incident = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&incident, &after, &limit],
        )
        .await
        .map_err(backend)?;
    rows.iter()
        .map(|r| event_from(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// `Store::incident`.
pub(super) async fn incident(store: &PgStore, id: &str) -> Result<Option<Incident>, StoreError> {
    Ok(query_incidents(
        store,
        &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE id = $1"),
        &[&id],
    )
    .await?
    .pop())
}

/// `Store::list`.
pub(super) async fn list(store: &PgStore, limit: i64) -> Result<Vec<Incident>, StoreError> {
    query_incidents(
        store,
        &format!("SELECT {INCIDENT_COLS} FROM incidents ORDER BY created_at DESC, n DESC LIMIT $1"),
        &[&limit],
    )
    .await
}

/// `Store::set_status`, with its `status_changed` event in the same transaction.
pub(super) async fn set_status(
    store: &PgStore,
    id: &str,
    status: Status,
    severity: Option<&str>,
    owner: Option<&str>,
) -> Result<(), StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(backend)?;
    let n = tx
        .execute(
            "UPDATE incidents SET status = $2, severity = COALESCE($3, severity),
             owner = COALESCE($4, owner) WHERE id = $1",
            &[&id, &status.as_str(), &severity, &owner],
        )
        .await
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
    )
    .await?;
    tx.commit().await.map_err(backend)
}

/// `Store::set_slack_thread`.
pub(super) async fn set_slack_thread(
    store: &PgStore,
    id: &str,
    thread: &str,
) -> Result<(), StoreError> {
    let c = store.client().await?;
    c.execute(
        "UPDATE incidents SET slack_thread = $2 WHERE id = $1",
        &[&id, &thread],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// `Store::by_slack_thread`.
pub(super) async fn by_slack_thread(
    store: &PgStore,
    thread: &str,
) -> Result<Option<Incident>, StoreError> {
    Ok(query_incidents(
        store,
        &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE slack_thread = $1"),
        &[&thread],
    )
    .await?
    .pop())
}

/// `Store::owned`.
pub(super) async fn owned(
    store: &PgStore,
    owner: &str,
    status: Status,
) -> Result<Vec<Incident>, StoreError> {
    query_incidents(
        store,
        &format!(
            "SELECT {INCIDENT_COLS} FROM incidents WHERE owner = $1 AND status = $2 ORDER BY id"
        ),
        &[&owner, &status.as_str()],
    )
    .await
}

/// `Store::interrupt`: the mark and its two events in one transaction, or nothing.
pub(super) async fn interrupt(
    store: &PgStore,
    id: &str,
    owner: &str,
    reason: &str,
    by: &str,
) -> Result<bool, StoreError> {
    let mut g = store.client().await?;
    let c: &mut tokio_postgres::Client = &mut g;
    let tx = c.transaction().await.map_err(backend)?;
    let n = tx
        .execute(
            "UPDATE incidents SET status = 'interrupted'
             WHERE id = $1 AND owner = $2 AND status = 'investigating'",
            &[&id, &owner],
        )
        .await
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
    )
    .await?;
    append_in(
        &tx,
        id,
        EventKind::StatusChanged,
        "oncall",
        &serde_json::json!({"status": Status::Interrupted}),
        now,
    )
    .await?;
    tx.commit().await.map_err(backend)?;
    Ok(true)
}
