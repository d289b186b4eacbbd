//! The embedded incident store: one SQLite file in WAL mode with `synchronous = FULL`.
//!
//! One connection writes (appends are serialized, as SQLite serializes writers anyway) and one
//! reads, so SSE streams reading the log never wait behind an fsync. Calls run on tokio's
//! blocking pool.

use super::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    /// The file, and its device and inode when it was opened: readiness fails when the file at
    /// that path is gone or another one (the open connections would go on writing to a file no
    /// one can find).
    path: std::path::PathBuf,
    identity: Option<(u64, u64)>,
}

/// The device and inode of a file.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn connection(path: &Path) -> Result<Connection, StoreError> {
    let open = |reason: String| StoreError::Open {
        what: path.display().to_string(),
        reason,
    };
    let c = Connection::open(path).map_err(|e| open(e.to_string()))?;
    c.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| open(e.to_string()))?;
    c.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| open(e.to_string()))?;
    c.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open(e.to_string()))?;
    c.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| open(e.to_string()))?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (or creates) the file and runs pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let mut w = connection(path)?;
        migrate(&mut w).map_err(|e| StoreError::Open {
            what: path.display().to_string(),
            reason: format!("migration failed: {e}"),
        })?;
        let r = connection(path)?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(w)),
            reader: Arc::new(Mutex::new(r)),
            path: path.to_path_buf(),
            identity: identity(path),
        })
    }

    async fn with<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().map_err(|_| {
                StoreError::Backend("the SQLite connection's lock was poisoned".into())
            })?;
            f(&mut c)
        })
        .await
        .map_err(backend)?
    }
}

fn migrate(c: &mut Connection) -> rusqlite::Result<()> {
    c.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.execute_batch(m)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![i as i64 + 1],
        )?;
    }
    tx.commit()
}

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

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, new: NewIncident) -> Result<(Incident, Event), StoreError> {
        Self::with(&self.writer, move |c| {
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
        })
        .await
    }

    async fn append(
        &self,
        incident: &str,
        kind: EventKind,
        actor: &str,
        data: Value,
    ) -> Result<Event, StoreError> {
        let (incident, actor) = (incident.to_string(), actor.to_string());
        Self::with(&self.writer, move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let ev = append_in(&tx, &incident, kind, &actor, &data, Utc::now())?;
            tx.commit().map_err(backend)?;
            Ok(ev)
        })
        .await
    }

    async fn events(
        &self,
        incident: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let incident = incident.to_string();
        Self::with(&self.reader, move |c| {
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
        })
        .await
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let id = id.to_string();
        Self::with(&self.reader, move |c| {
            Ok(query_incidents(
                c,
                &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE id = ?1"),
                params![id],
            )?
            .pop())
        })
        .await
    }

    async fn list(&self, limit: i64) -> Result<Vec<Incident>, StoreError> {
        Self::with(&self.reader, move |c| {
            query_incidents(
                c,
                &format!(
                    "SELECT {INCIDENT_COLS} FROM incidents ORDER BY created_at DESC, n DESC LIMIT ?1"
                ),
                params![limit],
            )
        })
        .await
    }

    async fn set_status(
        &self,
        id: &str,
        status: Status,
        severity: Option<&str>,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let (id, severity, owner) = (
            id.to_string(),
            severity.map(str::to_string),
            owner.map(str::to_string),
        );
        Self::with(&self.writer, move |c| {
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
                return Err(StoreError::NoSuchIncident(id));
            }
            append_in(
                &tx,
                &id,
                EventKind::StatusChanged,
                "oncall",
                &serde_json::json!({"status": status}),
                Utc::now(),
            )?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn set_slack_thread(&self, id: &str, thread: &str) -> Result<(), StoreError> {
        let (id, thread) = (id.to_string(), thread.to_string());
        Self::with(&self.writer, move |c| {
            c.execute(
                "UPDATE incidents SET slack_thread = ?2 WHERE id = ?1",
                params![id, thread],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn by_slack_thread(&self, thread: &str) -> Result<Option<Incident>, StoreError> {
        let thread = thread.to_string();
        Self::with(&self.reader, move |c| {
            Ok(query_incidents(
                c,
                &format!("SELECT {INCIDENT_COLS} FROM incidents WHERE slack_thread = ?1"),
                params![thread],
            )?
            .pop())
        })
        .await
    }

    async fn owned(&self, owner: &str, status: Status) -> Result<Vec<Incident>, StoreError> {
        let owner = owner.to_string();
        Self::with(&self.reader, move |c| {
            query_incidents(
                c,
                &format!(
                    "SELECT {INCIDENT_COLS} FROM incidents WHERE owner = ?1 AND status = ?2 ORDER BY id"
                ),
                params![owner, status.as_str()],
            )
        })
        .await
    }

    async fn put_grant(
        &self,
        name: &str,
        grant: Grant,
        sha256_hex: &str,
    ) -> Result<(), StoreError> {
        let (name, sha) = (name.to_string(), sha256_hex.to_string());
        Self::with(&self.writer, move |c| {
            c.execute(
                "INSERT INTO tokens (name, role, sha256, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, sha256 = excluded.sha256,
                 created_at = excluded.created_at",
                params![name, grant_str(grant), sha, ts(Utc::now())],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn token(&self, sha256_hex: &str) -> Result<Option<TokenHolder>, StoreError> {
        let sha = sha256_hex.to_string();
        Self::with(&self.reader, move |c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT name, role FROM tokens WHERE sha256 = ?1",
                    params![sha],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            Ok(row.and_then(|(name, g)| parse_grant(&g).map(|grant| TokenHolder { name, grant })))
        })
        .await
    }

    async fn token_count(&self) -> Result<i64, StoreError> {
        Self::with(&self.reader, |c| {
            c.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }

    async fn memory_put(&self, row: &super::MemoryRow) -> Result<(), StoreError> {
        let r = row.clone();
        Self::with(&self.writer, move |c| {
            c.execute(
                super::MEMORY_PUT,
                params![r.incident, r.embedder, r.doc, r.vector, ts(r.created_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn memory_rows(&self) -> Result<Vec<super::MemoryRow>, StoreError> {
        Self::with(&self.reader, |c| {
            let mut st = c.prepare(super::MEMORY_ROWS).map_err(backend)?;
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
                out.push(super::MemoryRow {
                    incident,
                    embedder,
                    doc,
                    vector,
                    created_at: parse_ts(&at)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn approval_put(&self, row: &ApprovalRow) -> Result<bool, StoreError> {
        let r = row.clone();
        Self::with(&self.writer, move |c| {
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
        })
        .await
    }

    async fn approval_rows(&self) -> Result<Vec<ApprovalRow>, StoreError> {
        Self::with(&self.reader, |c| {
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
        })
        .await
    }

    async fn approval_move(
        &self,
        id: &str,
        from: &[&str],
        to: &ApprovalMove,
    ) -> Result<Moved, StoreError> {
        let (id, to) = (id.to_string(), to.clone());
        let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
        Self::with(&self.writer, move |c| {
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
        })
        .await
    }

    async fn approval_release(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        Self::with(&self.writer, move |c| {
            c.execute(
                "UPDATE approvals SET in_flight = 0, updated_at = ?2 WHERE id = ?1",
                params![id, ts(Utc::now())],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn seen_first(&self, key: &str, ttl_s: i64) -> Result<bool, StoreError> {
        let key = key.to_string();
        Self::with(&self.writer, move |c| {
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
        })
        .await
    }

    async fn seen_purge(&self) -> Result<u64, StoreError> {
        Self::with(&self.writer, |c| {
            c.execute(
                "DELETE FROM seen_keys WHERE expires_at <= ?1",
                params![unix_now()],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn seen_forget(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        Self::with(&self.writer, move |c| {
            c.execute("DELETE FROM seen_keys WHERE key = ?1", params![key])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn heartbeat(&self, beat: &ReplicaRow) -> Result<(), StoreError> {
        let b = beat.clone();
        Self::with(&self.writer, move |c| {
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
        })
        .await
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        Self::with(&self.reader, |c| {
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
        })
        .await
    }

    async fn interrupt(
        &self,
        id: &str,
        owner: &str,
        reason: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let (id, owner, reason, by) = (
            id.to_string(),
            owner.to_string(),
            reason.to_string(),
            by.to_string(),
        );
        Self::with(&self.writer, move |c| {
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
                &id,
                EventKind::Interrupted,
                "oncall",
                &serde_json::json!({"reason": reason, "by": by, "owner": owner}),
                now,
            )?;
            append_in(
                &tx,
                &id,
                EventKind::StatusChanged,
                "oncall",
                &serde_json::json!({"status": Status::Interrupted}),
                now,
            )?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if identity(&self.path) != self.identity {
            return Err(StoreError::Backend(format!(
                "the database file {} was removed or replaced while oncall ran; restore it (docs/deploy.md) and restart oncall",
                self.path.display()
            )));
        }
        // A read of the schema, not just `SELECT 1`: it touches the file.
        Self::with(&self.reader, |c| {
            c.query_row("SELECT COUNT(*) FROM schema_version", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_store_keeps_the_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("oncall.db")).expect("open");
        super::contract::behaves(&s).await;
        super::contract::shared_by_replicas(&s).await;
        super::contract::concurrent_appends(Arc::new(s)).await;
        // Reopening runs no migration twice and keeps everything.
        let again = SqliteStore::open(&dir.path().join("oncall.db")).expect("reopen");
        assert_eq!(again.list(10).await.expect("list").len(), 4);
    }
}
