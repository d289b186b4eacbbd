//! The embedded incident store: one SQLite file in WAL mode with `synchronous = FULL`.
//!
//! One connection writes (appends are serialized, as SQLite serializes writers anyway) and one
//! reads, so SSE streams reading the log never wait behind an fsync. Calls run on tokio's
//! blocking pool.
//!
//! This module opens the file and runs each [`Store`] call on the right connection; the SQL of
//! each area is in its own module: `incidents` (incidents and their event logs), `tokens`,
//! `memory`, `approvals`, `replicas` (seen keys and heartbeats) and `migrations`.

mod approvals;
mod incidents;
mod memory;
mod migrations;
mod replicas;
mod tokens;

use super::*;
use rusqlite::Connection;
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
        migrations::migrate(&mut w).map_err(|e| StoreError::Open {
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

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, new: NewIncident) -> Result<(Incident, Event), StoreError> {
        Self::with(&self.writer, move |c| incidents::create(c, new)).await
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
            incidents::append(c, &incident, kind, &actor, &data)
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
            incidents::events(c, &incident, after, limit)
        })
        .await
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let id = id.to_string();
        Self::with(&self.reader, move |c| incidents::incident(c, &id)).await
    }

    async fn list(&self, limit: i64) -> Result<Vec<Incident>, StoreError> {
        Self::with(&self.reader, move |c| incidents::list(c, limit)).await
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
            incidents::set_status(c, &id, status, severity.as_deref(), owner.as_deref())
        })
        .await
    }

    async fn set_slack_thread(&self, id: &str, thread: &str) -> Result<(), StoreError> {
        let (id, thread) = (id.to_string(), thread.to_string());
        Self::with(&self.writer, move |c| {
            incidents::set_slack_thread(c, &id, &thread)
        })
        .await
    }

    async fn by_slack_thread(&self, thread: &str) -> Result<Option<Incident>, StoreError> {
        let thread = thread.to_string();
        Self::with(&self.reader, move |c| {
            incidents::by_slack_thread(c, &thread)
        })
        .await
    }

    async fn owned(&self, owner: &str, status: Status) -> Result<Vec<Incident>, StoreError> {
        let owner = owner.to_string();
        Self::with(&self.reader, move |c| incidents::owned(c, &owner, status)).await
    }

    async fn put_grant(
        &self,
        name: &str,
        grant: Grant,
        sha256_hex: &str,
    ) -> Result<(), StoreError> {
        let (name, sha) = (name.to_string(), sha256_hex.to_string());
        Self::with(&self.writer, move |c| {
            tokens::put_grant(c, &name, grant, &sha)
        })
        .await
    }

    async fn token(&self, sha256_hex: &str) -> Result<Option<TokenHolder>, StoreError> {
        let sha = sha256_hex.to_string();
        Self::with(&self.reader, move |c| tokens::token(c, &sha)).await
    }

    async fn token_count(&self) -> Result<i64, StoreError> {
        Self::with(&self.reader, |c| tokens::count(c)).await
    }

    async fn memory_put(&self, row: &super::MemoryRow) -> Result<(), StoreError> {
        let r = row.clone();
        Self::with(&self.writer, move |c| memory::put(c, &r)).await
    }

    async fn memory_rows(&self) -> Result<Vec<super::MemoryRow>, StoreError> {
        Self::with(&self.reader, |c| memory::rows(c)).await
    }

    async fn approval_put(&self, row: &ApprovalRow) -> Result<bool, StoreError> {
        let r = row.clone();
        Self::with(&self.writer, move |c| approvals::put(c, &r)).await
    }

    async fn approval_rows(&self) -> Result<Vec<ApprovalRow>, StoreError> {
        Self::with(&self.reader, |c| approvals::rows(c)).await
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
            approvals::move_phase(c, &id, &from, &to)
        })
        .await
    }

    async fn approval_release(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        Self::with(&self.writer, move |c| approvals::release(c, &id)).await
    }

    async fn seen_first(&self, key: &str, ttl_s: i64) -> Result<bool, StoreError> {
        let key = key.to_string();
        Self::with(&self.writer, move |c| replicas::seen_first(c, &key, ttl_s)).await
    }

    async fn seen_purge(&self) -> Result<u64, StoreError> {
        Self::with(&self.writer, |c| replicas::seen_purge(c)).await
    }

    async fn seen_forget(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        Self::with(&self.writer, move |c| replicas::seen_forget(c, &key)).await
    }

    async fn heartbeat(&self, beat: &ReplicaRow) -> Result<(), StoreError> {
        let b = beat.clone();
        Self::with(&self.writer, move |c| replicas::heartbeat(c, &b)).await
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        Self::with(&self.reader, |c| replicas::list(c)).await
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
            incidents::interrupt(c, &id, &owner, &reason, &by)
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
