//! The tables both backends share, and the conversions between their rows and the store's
//! types: the migrations, the column lists, timestamps as text, and rows to incidents, events
//! and approval requests.

use super::*;

/// The schema, one migration per entry, applied in order; `schema_version` holds how many ran.
/// Plain SQL both SQLite and PostgreSQL accept, so both backends have the same tables.
pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        n INTEGER NOT NULL,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        severity TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        owner TEXT,
        slack_thread TEXT UNIQUE,
        UNIQUE (day, n)
    );
    CREATE TABLE events (
        incident TEXT NOT NULL REFERENCES incidents(id),
        seq BIGINT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (incident, seq)
    );
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE INDEX incidents_status ON incidents (status, owner);",
    "CREATE TABLE memory (
        incident TEXT NOT NULL,
        embedder TEXT NOT NULL,
        doc TEXT NOT NULL,
        vector TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (incident, embedder)
    );",
    // Replicas sharing one store: action requests and where they stand, keys seen (Slack
    // retries and replays, repeated alerts) with their expiry, and heartbeats.
    "CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        incident TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at TEXT NOT NULL,
        phase TEXT NOT NULL,
        state TEXT NOT NULL,
        approval TEXT,
        replica TEXT,
        in_flight INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX approvals_one_in_flight ON approvals (incident) WHERE in_flight = 1;
    CREATE TABLE seen_keys (
        key TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE replicas (
        name TEXT PRIMARY KEY,
        heartbeat BIGINT NOT NULL,
        audit_file TEXT,
        audit_seq BIGINT NOT NULL DEFAULT 0,
        audit_head TEXT
    );",
];

/// Columns of [`ApprovalRow`], in order.
pub(crate) const APPROVAL_COLS: &str =
    "id, incident, request, created_at, phase, state, approval, replica, in_flight";

/// Builds an [`ApprovalRow`] from its columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn approval_from(
    id: String,
    incident: String,
    request: String,
    created_at: String,
    phase: String,
    state: String,
    approval: Option<String>,
    replica: Option<String>,
    in_flight: i64,
) -> Result<ApprovalRow, StoreError> {
    let json = |what: &str, s: &str| {
        serde_json::from_str::<Value>(s).map_err(|e| {
            StoreError::Backend(format!("bad {what} of request {id} in the store: {e}"))
        })
    };
    Ok(ApprovalRow {
        request: json("request", &request)?,
        created_at: parse_ts(&created_at)?,
        state: json("state", &state)?,
        approval: approval
            .as_deref()
            .map(|a| json("approval", a))
            .transpose()?,
        id: id.clone(),
        incident,
        phase,
        replica,
        in_flight: in_flight != 0,
    })
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    Utc::now().timestamp()
}

/// The upsert both backends use for memory rows.
pub(crate) const MEMORY_PUT: &str =
    "INSERT INTO memory (incident, embedder, doc, vector, created_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (incident, embedder) DO UPDATE SET doc = excluded.doc,
     vector = excluded.vector, created_at = excluded.created_at";
pub(crate) const MEMORY_ROWS: &str = "SELECT incident, embedder, doc, vector, created_at FROM memory ORDER BY created_at, incident, embedder";

/// Timestamps are stored as fixed-width RFC 3339 text, so text order is time order.
pub(crate) fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Backend(format!("bad timestamp {s:?} in the store: {e}")))
}

/// Builds an [`Incident`] from a row's columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn incident_from(
    id: String,
    title: String,
    status: String,
    severity: String,
    source: String,
    created_at: String,
    updated_at: String,
    owner: Option<String>,
    slack_thread: Option<String>,
) -> Result<Incident, StoreError> {
    Ok(Incident {
        status: Status::parse(&status).ok_or_else(|| {
            StoreError::Backend(format!("unknown status {status:?} in the store"))
        })?,
        id,
        title,
        severity,
        source,
        created_at: parse_ts(&created_at)?,
        updated_at: parse_ts(&updated_at)?,
        owner,
        slack_thread,
    })
}

pub(crate) fn event_from(
    seq: i64,
    at: String,
    kind: String,
    actor: String,
    data: String,
) -> Result<Event, StoreError> {
    Ok(Event {
        seq,
        at: parse_ts(&at)?,
        kind: EventKind::parse(&kind),
        actor,
        data: serde_json::from_str(&data)
            .map_err(|e| StoreError::Backend(format!("bad event data in the store: {e}")))?,
    })
}
