//! The incident store: every incident is an append-only log of timestamped events (report, tool
//! calls, hypothesis changes, messages, action requests and decisions, executions and their
//! measured effects). Everything else the server shows is a view of that log.
//!
//! Two backends behave the same:
//! - [`sqlite::SqliteStore`], the embedded default: one file in WAL mode, `synchronous = FULL`, so
//!   an event is on disk before its append returns;
//! - [`postgres::PgStore`], for several oncall replicas sharing one PostgreSQL
//!   (`[server] database_url = "postgres://..."`).
//!
//! Migrations run when a store opens. An append is acknowledged only after its transaction
//! committed: an acknowledged event survives a crash of the process.

#[doc(hidden)]
pub mod contract;
mod event;
pub mod postgres;
mod rows;
pub mod sqlite;

pub use event::EventKind;
pub(crate) use rows::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Where an incident stands: `investigating` (a round runs), `waiting` (the investigation is
/// done; people decide), `interrupted` (the server stopped mid-investigation: resume it),
/// `resolved`, `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IncidentStatus)]
pub enum Status {
    /// An investigation is running.
    Investigating,
    /// The investigation finished; people are deciding, fixing, or talking to it.
    Waiting,
    /// The server stopped in the middle of an investigation; it can be resumed.
    Interrupted,
    Resolved,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Investigating => "investigating",
            Status::Waiting => "waiting",
            Status::Interrupted => "interrupted",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "investigating" => Status::Investigating,
            "waiting" => Status::Waiting,
            "interrupted" => Status::Interrupted,
            "resolved" => Status::Resolved,
            "closed" => Status::Closed,
            _ => return None,
        })
    }
}

/// One incident (its summary row; the story is in its events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    /// `YYYY-MM-DD-NN`: the day it was opened and its number that day.
    pub id: String,
    pub title: String,
    pub status: Status,
    /// P0-P4 once triage ran, empty before.
    pub severity: String,
    /// Where it came from: `web`, `api`, `alert`, `slack`.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The replica running its investigation (to mark it interrupted after that replica died).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The Slack thread it lives in, as `channel/ts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack_thread: Option<String>,
}

/// One entry of an incident's append-only log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// 1, 2, 3, ... within the incident, without gaps.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// Who caused it: a person's name, `oncall` for the agent, `slack:U123`.
    pub actor: String,
    #[schema(schema_with = event::data_schema)]
    pub data: Value,
}

/// A bearer token's holder. Only the sha256 of a token is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenHolder {
    pub name: String,
    pub grant: Grant,
}

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A person, with a role of the ladder viewer < responder < approver.
    Person(crate::policy::Role),
    /// An OpenTelemetry exporter: it may send traces (`POST /v1/traces`) and nothing else. It is
    /// not on the people's ladder: it reads nothing, opens nothing, approves nothing.
    Ingest,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the incident store {what}: {reason}")]
    Open { what: String, reason: String },
    #[error("the incident store failed: {0}")]
    Backend(String),
    #[error("no incident {0}")]
    NoSuchIncident(String),
    #[error("{0}")]
    Invalid(String),
}

impl NewIncident {
    /// The incident this opens as `id` at `at`: investigating, no severity yet, no thread.
    pub(crate) fn opened(self, id: String, at: DateTime<Utc>) -> Incident {
        Incident {
            id,
            title: self.title,
            status: Status::Investigating,
            severity: String::new(),
            source: self.source,
            created_at: at,
            updated_at: at,
            owner: self.owner,
            slack_thread: None,
        }
    }
}

/// What opens an incident.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub source: String,
    pub actor: String,
    /// The first event (`report`, its data).
    pub report: Value,
    pub owner: Option<String>,
}

/// The store's contract; both backends pass the same tests.
#[async_trait]
pub trait Store: Send + Sync {
    /// Opens an incident and appends its `report` event in one transaction.
    async fn create(&self, new: NewIncident) -> Result<(Incident, Event), StoreError>;
    /// Appends one event; returns it once it is committed.
    async fn append(
        &self,
        incident: &str,
        kind: EventKind,
        actor: &str,
        data: Value,
    ) -> Result<Event, StoreError>;
    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn events(
        &self,
        incident: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError>;
    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Newest first.
    async fn list(&self, limit: i64) -> Result<Vec<Incident>, StoreError>;
    /// Sets status (and, when given, severity and owner) and appends a `status_changed` event.
    async fn set_status(
        &self,
        id: &str,
        status: Status,
        severity: Option<&str>,
        owner: Option<&str>,
    ) -> Result<(), StoreError>;
    async fn set_slack_thread(&self, id: &str, thread: &str) -> Result<(), StoreError>;
    async fn by_slack_thread(&self, thread: &str) -> Result<Option<Incident>, StoreError>;
    /// Incidents in `status` whose investigation `owner` ran.
    async fn owned(&self, owner: &str, status: Status) -> Result<Vec<Incident>, StoreError>;
    /// Stores a token's sha256 (hex) for `name` with `grant`; replaces that name's token.
    async fn put_grant(&self, name: &str, grant: Grant, sha256_hex: &str)
    -> Result<(), StoreError>;
    /// Stores a person's token: [`Store::put_grant`] with [`Grant::Person`].
    async fn put_token(
        &self,
        name: &str,
        role: crate::policy::Role,
        sha256_hex: &str,
    ) -> Result<(), StoreError> {
        self.put_grant(name, Grant::Person(role), sha256_hex).await
    }
    async fn token(&self, sha256_hex: &str) -> Result<Option<TokenHolder>, StoreError>;
    async fn token_count(&self) -> Result<i64, StoreError>;
    /// A cheap round trip (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Stores (or replaces) one incident's memory row for one embedder.
    async fn memory_put(&self, row: &MemoryRow) -> Result<(), StoreError>;
    /// Every memory row, oldest first.
    async fn memory_rows(&self) -> Result<Vec<MemoryRow>, StoreError>;

    // --- Shared by replicas: approvals, seen keys, heartbeats (see [`ApprovalRow`]). ---

    /// Files a request's row (pending). False when a row with its id already exists (it is
    /// left as it is).
    async fn approval_put(&self, row: &ApprovalRow) -> Result<bool, StoreError>;
    /// Every request's row, oldest first.
    async fn approval_rows(&self) -> Result<Vec<ApprovalRow>, StoreError>;
    /// Moves a request from one of the phases `from` to `to`, atomically: the one conditional
    /// transition every replica goes through, so a decision or an execution happens once. A
    /// move that sets `in_flight` is refused ([`Moved::Busy`]) while another request of the same
    /// incident is in flight.
    async fn approval_move(
        &self,
        id: &str,
        from: &[&str],
        to: &ApprovalMove,
    ) -> Result<Moved, StoreError>;
    /// Clears a request's in-flight mark (its effect is recorded, or it never ran).
    async fn approval_release(&self, id: &str) -> Result<(), StoreError>;
    /// True the first time `key` is seen within `ttl_s` seconds (and remembers it until then),
    /// false while it is remembered: Slack retries and replays, repeated alerts, on every
    /// replica. Expired keys are forgotten by [`Store::seen_purge`].
    async fn seen_first(&self, key: &str, ttl_s: i64) -> Result<bool, StoreError>;
    /// Forgets expired keys; returns how many.
    async fn seen_purge(&self) -> Result<u64, StoreError>;
    /// Forgets `key` now (what it guarded did not happen after all, e.g. an incident that could
    /// not be opened: the sender's retry must not be taken for a repeat).
    async fn seen_forget(&self, key: &str) -> Result<(), StoreError>;
    /// Records that replica `name` is alive now, and where its audit log stands.
    async fn heartbeat(&self, beat: &ReplicaRow) -> Result<(), StoreError>;
    /// Every replica that ever beat, with its last heartbeat.
    async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError>;
    /// Marks `id` interrupted if it is still `investigating` under `owner`: appends an
    /// `interrupted` event (with `reason` and `by`) and a `status_changed` one, in one
    /// transaction. False (and nothing written) when it is not, so only one replica marks it.
    async fn interrupt(
        &self,
        id: &str,
        owner: &str,
        reason: &str,
        by: &str,
    ) -> Result<bool, StoreError>;
}

/// One action request as every replica sees it. The desk's memory of a request is a copy of
/// this row; the row decides. It keeps the exact arguments (the approval binds their hash),
/// unlike the redacted audit record and `action_requested` event.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRow {
    pub id: String,
    pub incident: String,
    /// The request as filed: the same fields as its audit record, with the exact arguments.
    pub request: Value,
    pub created_at: DateTime<Utc>,
    /// `pending`, `approved`, `denied`, `withdrawn`, `executing`, `executed`, `outcome_unknown`.
    pub phase: String,
    /// The desk's state, as the approvals API shows it.
    pub state: Value,
    /// Once approved: `{"approved_by", "expires_at"}`.
    pub approval: Option<Value>,
    /// The replica that claimed its execution.
    pub replica: Option<String>,
    /// From the execution's claim until its effect is recorded; one per incident at a time.
    pub in_flight: bool,
}

/// The target of [`Store::approval_move`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalMove {
    pub phase: String,
    pub state: Value,
    /// Replaces the approval when given.
    pub approval: Option<Value>,
    /// Replaces the executing replica when given.
    pub replica: Option<String>,
    pub in_flight: bool,
}

/// What [`Store::approval_move`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Moved {
    Moved,
    /// Not in one of the phases asked for: its phase now (none: no such request).
    Stale(Option<String>),
    /// Another request of the incident is in flight (its id).
    Busy(String),
}

/// A replica's heartbeat row.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaRow {
    pub name: String,
    /// Unix seconds of its last heartbeat.
    pub heartbeat: i64,
    /// Its audit log file, and the sequence number and hash of its last record at that beat.
    pub audit_file: Option<String>,
    pub audit_seq: i64,
    pub audit_head: Option<String>,
}

/// The phase word of an [`ApprovalRow`] for a state's JSON (`{"state": "pending", ...}`).
pub fn phase_of(state: &Value) -> String {
    state["state"].as_str().unwrap_or("unknown").to_string()
}

/// One resolved incident as incident memory keeps it: the document (JSON) and its vector under
/// one embedder (hex of little-endian f32). The memory layer owns both encodings.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRow {
    pub incident: String,
    pub embedder: String,
    pub doc: String,
    pub vector: String,
    pub created_at: DateTime<Utc>,
}

/// Opens the store `url` names: `postgres://...` or `postgresql://...` for PostgreSQL,
/// `sqlite:PATH` or a plain path for SQLite.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        let path = path.strip_prefix("//").unwrap_or(path);
        Ok(Arc::new(sqlite::SqliteStore::open(std::path::Path::new(
            path,
        ))?))
    }
}

/// Opens the configured store: `[server] database_url` with its TLS and pool settings, else
/// the SQLite file in `data_dir`. With PostgreSQL, also the pool that `/metrics` reports.
pub async fn open_configured(
    s: &crate::config::ServerSettings,
) -> Result<(Arc<dyn Store>, Option<crate::pg::PoolGauge>), StoreError> {
    let url = s.store_url();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::connect_with(&url, s).await?;
        let gauge = store.pool_gauge();
        Ok((Arc::new(store), Some(gauge)))
    } else {
        Ok((open(&url).await?, None))
    }
}

/// The id for the `n`th incident of the day `at`.
pub(crate) fn incident_id(at: DateTime<Utc>, n: i64) -> String {
    format!("{}-{n:02}", at.format("%Y-%m-%d"))
}

/// Whether `s` has the shape of an incident id: `YYYY-MM-DD-NN` (digits, two or more for NN).
pub fn is_incident_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 13
        && b.len() <= 16
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 10 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// A short title from a report: its first line, at most 80 characters.
pub fn title_of(report: &str) -> String {
    let first = report.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let t: String = first.trim().chars().take(80).collect();
    if first.trim().chars().count() > 80 {
        format!("{t}…")
    } else {
        t
    }
}

/// The word for a role.
pub fn role_label(r: crate::policy::Role) -> &'static str {
    role_str(r)
}

pub(crate) fn role_str(r: crate::policy::Role) -> &'static str {
    match r {
        crate::policy::Role::Viewer => "viewer",
        crate::policy::Role::Responder => "responder",
        crate::policy::Role::Approver => "approver",
    }
}

pub(crate) fn parse_role(s: &str) -> Option<crate::policy::Role> {
    Some(match s {
        "viewer" => crate::policy::Role::Viewer,
        "responder" => crate::policy::Role::Responder,
        "approver" => crate::policy::Role::Approver,
        _ => return None,
    })
}

/// The word stored for a grant: a role's word, or `ingest`.
pub fn grant_str(g: Grant) -> &'static str {
    match g {
        Grant::Person(r) => role_str(r),
        Grant::Ingest => "ingest",
    }
}

/// The grant a stored word names (`viewer`, `responder`, `approver`, `ingest`).
pub fn parse_grant(s: &str) -> Option<Grant> {
    match s {
        "ingest" => Some(Grant::Ingest),
        other => parse_role(other).map(Grant::Person),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_ids_have_one_shape() {
        let now = "2026-11-27T03:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(is_incident_id(&incident_id(now, 1)));
        assert!(is_incident_id(&incident_id(now, 123)));
        for bad in [
            "",
            "nope",
            "2026-11-27",
            "2026-11-27-",
            "2026-11-27-1x",
            "2026/11/27-01",
            "<script>2026-1",
        ] {
            assert!(!is_incident_id(bad), "{bad}");
        }
    }
}
