//! The incident store in PostgreSQL, for several oncall replicas sharing one database.
//!
//! The same tables as SQLite (see `MIGRATIONS` in the incidents module). Appends to one incident are serialized
//! by a row lock on the incident (`SELECT ... FOR UPDATE`), so sequence numbers stay gapless
//! across replicas; opening an incident takes a transaction-scoped advisory lock to number it.
//! Sessions come from a pool (deadpool-postgres, `[server] database_pool_max_size`); a session
//! that closed (the database went away and came back) is replaced, not handed out. TLS follows
//! `[server] database_sslmode` / `database_sslrootcert` or the URL's `?sslmode=`.
//!
//! This module connects, migrates and hands out sessions; the SQL of each area of the [`Store`]
//! is in its own module: `incidents` (incidents and their event logs), `tokens`, `memory`,
//! `approvals`, `replicas` (seen keys and heartbeats) and `migrations`.

mod approvals;
mod incidents;
mod memory;
mod migrations;
mod replicas;
mod tokens;

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
        migrations::migrate(&mut first).await?;
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
}

#[async_trait]
impl Store for PgStore {
    async fn create(&self, new: NewIncident) -> Result<(Incident, Event), StoreError> {
        incidents::create(self, new).await
    }

    async fn append(
        &self,
        incident: &str,
        kind: EventKind,
        actor: &str,
        data: Value,
    ) -> Result<Event, StoreError> {
        incidents::append(self, incident, kind, actor, data).await
    }

    async fn events(
        &self,
        incident: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        incidents::events(self, incident, after, limit).await
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        incidents::incident(self, id).await
    }

    async fn list(&self, limit: i64) -> Result<Vec<Incident>, StoreError> {
        incidents::list(self, limit).await
    }

    async fn set_status(
        &self,
        id: &str,
        status: Status,
        severity: Option<&str>,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        incidents::set_status(self, id, status, severity, owner).await
    }

    async fn set_slack_thread(&self, id: &str, thread: &str) -> Result<(), StoreError> {
        incidents::set_slack_thread(self, id, thread).await
    }

    async fn by_slack_thread(&self, thread: &str) -> Result<Option<Incident>, StoreError> {
        incidents::by_slack_thread(self, thread).await
    }

    async fn owned(&self, owner: &str, status: Status) -> Result<Vec<Incident>, StoreError> {
        incidents::owned(self, owner, status).await
    }

    async fn put_grant(
        &self,
        name: &str,
        grant: Grant,
        sha256_hex: &str,
    ) -> Result<(), StoreError> {
        tokens::put_grant(self, name, grant, sha256_hex).await
    }

    async fn token(&self, sha256_hex: &str) -> Result<Option<TokenHolder>, StoreError> {
        tokens::token(self, sha256_hex).await
    }

    async fn token_count(&self) -> Result<i64, StoreError> {
        tokens::count(self).await
    }

    async fn memory_put(&self, row: &super::MemoryRow) -> Result<(), StoreError> {
        memory::put(self, row).await
    }

    async fn memory_rows(&self) -> Result<Vec<super::MemoryRow>, StoreError> {
        memory::rows(self).await
    }

    async fn approval_put(&self, row: &ApprovalRow) -> Result<bool, StoreError> {
        approvals::put(self, row).await
    }

    async fn approval_rows(&self) -> Result<Vec<ApprovalRow>, StoreError> {
        approvals::rows(self).await
    }

    async fn approval_move(
        &self,
        id: &str,
        from: &[&str],
        to: &ApprovalMove,
    ) -> Result<Moved, StoreError> {
        approvals::move_phase(self, id, from, to).await
    }

    async fn approval_release(&self, id: &str) -> Result<(), StoreError> {
        approvals::release(self, id).await
    }

    async fn seen_first(&self, key: &str, ttl_s: i64) -> Result<bool, StoreError> {
        replicas::seen_first(self, key, ttl_s).await
    }

    async fn seen_purge(&self) -> Result<u64, StoreError> {
        replicas::seen_purge(self).await
    }

    async fn seen_forget(&self, key: &str) -> Result<(), StoreError> {
        replicas::seen_forget(self, key).await
    }

    async fn heartbeat(&self, beat: &ReplicaRow) -> Result<(), StoreError> {
        replicas::heartbeat(self, beat).await
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        replicas::list(self).await
    }

    async fn interrupt(
        &self,
        id: &str,
        owner: &str,
        reason: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        incidents::interrupt(self, id, owner, reason, by).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await.map_err(backend)?;
        Ok(())
    }
}
