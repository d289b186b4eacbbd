//! The incident store in PostgreSQL, for several oncall replicas sharing one database.
//!
//! The same tables as SQLite (see [`super::MIGRATIONS`]). Appends to one incident are serialized
//! by a row lock on the incident (`SELECT ... FOR UPDATE`), so sequence numbers stay gapless
//! across replicas; opening an incident takes a transaction-scoped advisory lock to number it.
//! Sessions come from a pool (deadpool-postgres, `[server] database_pool_max_size`); a session
//! that closed (the database went away and came back) is replaced, not handed out. TLS follows
//! `[server] database_sslmode` / `database_sslrootcert` or the URL's `?sslmode=`.

use super::*;
use crate::config::ServerSettings;
use crate::pg::{PoolGauge, Prepared, Target};
use deadpool_postgres::{Object, Pool, PoolError};
use std::time::Duration;

/// Advisory lock keys (arbitrary, fixed): migrations, incident numbering.
const LOCK_MIGRATE: i64 = 0x6f6e_6361_6c6c_0001;
const LOCK_NUMBER: i64 = 0x6f6e_6361_6c6c_0002;

pub struct PgStore {
    pool: Pool,
    target: Prepared,
    wait_s: u64,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A connection error without the password the URL may carry.
fn describe(e: &tokio_postgres::Error) -> String {
    crate::redact::redact(&e.to_string())
}

impl PgStore {
    /// Connects with the default TLS (`prefer`, or the URL's `?sslmode=`) and pool settings,
    /// and runs pending migrations (one replica at a time).
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let s = ServerSettings {
            database_url: Some(url.to_string()),
            ..Default::default()
        };
        PgStore::connect_with(url, &s).await
    }

    /// Connects to `url` with `[server]`'s TLS (`database_sslmode`, `database_sslrootcert`)
    /// and pool settings, and runs pending migrations (one replica at a time).
    pub async fn connect_with(url: &str, s: &ServerSettings) -> Result<PgStore, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            what: crate::redact::redact(url),
            reason,
        };
        let target = Target {
            what: "server.database_url",
            url,
            password_env: &s.database_password_env,
            sslmode: s.database_sslmode,
            sslrootcert: s.database_sslrootcert.clone(),
            application_name: "oncall",
            connect_timeout: Duration::from_secs(s.database_connect_timeout_s),
            settings: vec![],
        }
        .prepare()
        .map_err(|e| open_error(crate::redact::redact(&e.to_string())))?;
        let pool = target
            .pool(
                s.database_pool_max_size,
                Duration::from_secs(s.database_pool_wait_timeout_s),
            )
            .map_err(|e| open_error(e.to_string()))?;
        let store = PgStore {
            pool,
            target,
            wait_s: s.database_pool_wait_timeout_s,
        };
        let mut first = store.client().await.map_err(|e| match e {
            StoreError::Backend(reason) => open_error(reason),
            other => other,
        })?;
        let tx = first.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])
            .await
            .map_err(backend)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .await
            .map_err(backend)?;
        let done: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(backend)?
            .get(0);
        for (i, m) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            tx.batch_execute(m).await.map_err(|e| StoreError::Open {
                what: "postgres".into(),
                reason: format!("migration {} failed: {}", i + 1, describe(&e)),
            })?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        drop(first);
        Ok(store)
    }

    /// The pool, for `/metrics` (`pool="store"`).
    pub fn pool_gauge(&self) -> PoolGauge {
        PoolGauge {
            name: "store".into(),
            pool: self.pool.clone(),
        }
    }

    /// A live session from the pool (a closed one is replaced, not handed out). It derefs to
    /// [`tokio_postgres::Client`] and goes back to the pool when dropped.
    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => backend(
                self.target
                    .explain_tls(&e)
                    .unwrap_or_else(|| describe(&e)),
            ),
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => backend(format!(
                "all {} connections to the database stayed busy for {} s (raise [server] database_pool_max_size)",
                self.pool.status().max_size,
                self.wait_s
            )),
            PoolError::Timeout(_) => backend(format!(
                "the database did not accept a connection within {} s",
                self.target
                    .config
                    .get_connect_timeout()
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            )),
            other => backend(other),
        })
    }

    async fn incidents(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Incident>, StoreError> {
        let c = self.client().await?;
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
}

const INCIDENT_COLS: &str =
    "id, title, status, severity, source, created_at, updated_at, owner, slack_thread";

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

#[async_trait]
impl Store for PgStore {
    async fn create(&self, new: NewIncident) -> Result<(Incident, Event), StoreError> {
        let mut c = self.client().await?;
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

    async fn append(
        &self,
        incident: &str,
        kind: EventKind,
        actor: &str,
        data: Value,
    ) -> Result<Event, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let ev = append_in(&tx, incident, kind, actor, &data, Utc::now()).await?;
        tx.commit().await.map_err(backend)?;
        Ok(ev)
    }

    async fn events(
        &self,
        incident: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let c = self.client().await?;
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

    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self
            .incidents(
                &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE id = $1"),
                &[&id],
            )
            .await?
            .pop())
    }

    async fn list(&self, limit: i64) -> Result<Vec<Incident>, StoreError> {
        self.incidents(
            &format!(
                "SELECT {INCIDENT_COLS} FROM incidents ORDER BY created_at DESC, n DESC LIMIT $1"
            ),
            &[&limit],
        )
        .await
    }

    async fn set_status(
        &self,
        id: &str,
        status: Status,
        severity: Option<&str>,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
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

    async fn set_slack_thread(&self, id: &str, thread: &str) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE incidents SET slack_thread = $2 WHERE id = $1",
            &[&id, &thread],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn by_slack_thread(&self, thread: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self
            .incidents(
                &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE slack_thread = $1"),
                &[&thread],
            )
            .await?
            .pop())
    }

    async fn owned(&self, owner: &str, status: Status) -> Result<Vec<Incident>, StoreError> {
        self.incidents(
            &format!(
                "SELECT {INCIDENT_COLS} FROM incidents WHERE owner = $1 AND status = $2 ORDER BY id"
            ),
            &[&owner, &status.as_str()],
        )
        .await
    }

    async fn put_grant(
        &self,
        name: &str,
        grant: Grant,
        sha256_hex: &str,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO tokens (name, role, sha256, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, sha256 = excluded.sha256,
             created_at = excluded.created_at",
            &[&name, &grant_str(grant), &sha256_hex, &ts(Utc::now())],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn token(&self, sha256_hex: &str) -> Result<Option<TokenHolder>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT name, role FROM tokens WHERE sha256 = $1",
                &[&sha256_hex],
            )
            .await
            .map_err(backend)?;
        Ok(row.and_then(|r| {
            let role: String = r.get(1);
            parse_grant(&role).map(|grant| TokenHolder {
                name: r.get(0),
                grant,
            })
        }))
    }

    async fn token_count(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        Ok(c.query_one("SELECT COUNT(*) FROM tokens", &[])
            .await
            .map_err(backend)?
            .get(0))
    }

    async fn memory_put(&self, row: &super::MemoryRow) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            super::MEMORY_PUT,
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

    async fn memory_rows(&self) -> Result<Vec<super::MemoryRow>, StoreError> {
        let c = self.client().await?;
        let rows = c.query(super::MEMORY_ROWS, &[]).await.map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(super::MemoryRow {
                    incident: r.get(0),
                    embedder: r.get(1),
                    doc: r.get(2),
                    vector: r.get(3),
                    created_at: parse_ts(r.get(4))?,
                })
            })
            .collect()
    }

    async fn approval_put(&self, row: &ApprovalRow) -> Result<bool, StoreError> {
        let mut g = self.client().await?;
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

    async fn approval_rows(&self) -> Result<Vec<ApprovalRow>, StoreError> {
        let mut g = self.client().await?;
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

    async fn approval_move(
        &self,
        id: &str,
        from: &[&str],
        to: &ApprovalMove,
    ) -> Result<Moved, StoreError> {
        let mut g = self.client().await?;
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

    async fn approval_release(&self, id: &str) -> Result<(), StoreError> {
        let mut g = self.client().await?;
        let c: &mut tokio_postgres::Client = &mut g;
        c.execute(
            "UPDATE approvals SET in_flight = 0, updated_at = $2 WHERE id = $1",
            &[&id, &ts(Utc::now())],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn seen_first(&self, key: &str, ttl_s: i64) -> Result<bool, StoreError> {
        let mut g = self.client().await?;
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

    async fn seen_purge(&self) -> Result<u64, StoreError> {
        let mut g = self.client().await?;
        let c: &mut tokio_postgres::Client = &mut g;
        c.execute(
            "DELETE FROM seen_keys WHERE expires_at <= $1",
            &[&unix_now()],
        )
        .await
        .map_err(backend)
    }

    async fn seen_forget(&self, key: &str) -> Result<(), StoreError> {
        let mut g = self.client().await?;
        let c: &mut tokio_postgres::Client = &mut g;
        c.execute("DELETE FROM seen_keys WHERE key = $1", &[&key])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn heartbeat(&self, beat: &ReplicaRow) -> Result<(), StoreError> {
        let mut g = self.client().await?;
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

    async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        let mut g = self.client().await?;
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

    async fn interrupt(
        &self,
        id: &str,
        owner: &str,
        reason: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let mut g = self.client().await?;
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

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await.map_err(backend)?;
        Ok(())
    }
}
