//! `oncall backup --to DIR` and `oncall restore --from DIR`: a consistent online copy of what
//! `oncall serve` keeps on disk, and putting it back.
//!
//! A backup directory holds:
//! - `oncall.db`: the SQLite incident store (incidents, events, tokens, incident memory), made
//!   with `VACUUM INTO` in one read transaction, so it is a snapshot of one moment even while the
//!   server appends; it is checked with `PRAGMA integrity_check` and kept in rollback-journal
//!   mode (one self-contained file). A PostgreSQL store is not copied here: dump it with
//!   `pg_dump -Fc` *before* running `oncall backup` (see docs/deploy.md).
//! - `audit.jsonl`: the hash-chained audit log up to its last complete record (a record being
//!   written at that moment is left out whole), verified with [`crate::policy::audit::verify_bytes`],
//!   plus the torn-write copies (`audit.jsonl.torn-*`) its `recovered` records name.
//! - `manifest.json`: when, which oncall, the store's counts and sha256, the audit log's record
//!   count, head hash and sha256. It is written last: a directory without it is not a backup.
//!
//! **Order matters.** The store is copied first and the audit log after it, so the audit copy
//! holds every approval, execution and effect the store copy refers to (it may hold a few more).
//! The reverse could restore an incident that shows an action executed while the approval desk,
//! which is rebuilt from the audit log, thinks it is only approved; this order can only err on
//! the side of "executed" or "outcome unknown", and neither runs an action again.
//!
//! Restore refuses a data directory that a running oncall holds (the audit log's lock), and one
//! that already holds a store or an audit log unless `--force`, which moves them aside to
//! `<name>.before-restore-<time>` (nothing is deleted). It checks every file against the manifest
//! and verifies the restored audit chain against the manifest's head before it returns.

mod files;
mod restore;
mod take;

pub use restore::{Restored, read_manifest, restore};
pub use take::{Written, backup};

use crate::config::Config;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's format tag.
pub const FORMAT: &str = "oncall-backup/1";
/// The SQLite store's file name, in a data directory and in a backup.
pub const DB_FILE: &str = "oncall.db";
/// The audit log's file name in a backup.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The operator asked for something unsafe or impossible; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    /// The SQLite store could not be copied or checked.
    #[error("SQLite store {path}: {reason}")]
    Sqlite { path: String, reason: String },
    /// The backup directory does not hold a usable backup.
    #[error("the backup in {dir} cannot be restored: {reason}")]
    Invalid { dir: String, reason: String },
}

fn io_err(path: &Path, e: impl fmt::Display) -> BackupError {
    BackupError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn sql_err(path: &Path, e: impl fmt::Display) -> BackupError {
    BackupError::Sqlite {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// What a backup holds; written to `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    pub created_at: DateTime<Utc>,
    /// The oncall version that wrote it.
    pub oncall_version: String,
    pub store: StoreCopy,
    pub audit: AuditCopy,
}

/// The incident store in a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCopy {
    /// `sqlite` (copied as [`DB_FILE`]) or `postgresql` (not copied: `pg_dump -Fc` it).
    pub kind: String,
    /// The copy's file name, for `sqlite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How many migrations the copy has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incidents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    /// Incident memory rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// What to do about a store this backup does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The audit log in a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCopy {
    pub file: String,
    pub records: usize,
    /// The last record's hash: `oncall audit verify --head <it>` finds records cut from the end.
    pub head: String,
    pub bytes: u64,
    pub sha256: String,
    /// Torn-write copies the log's `recovered` records name, copied beside it.
    #[serde(default)]
    pub kept: Vec<KeptCopy>,
}

/// A file kept aside by an audit recovery, copied with the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptCopy {
    pub file: String,
    pub sha256: String,
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.store;
        match s.kind.as_str() {
            "sqlite" => writeln!(
                f,
                "store: SQLite copy {} ({} bytes, schema {}): {} incident(s), {} event(s), {} token(s), {} memory row(s)",
                s.file.as_deref().unwrap_or(DB_FILE),
                s.bytes.unwrap_or(0),
                s.schema_version.unwrap_or(0),
                s.incidents.unwrap_or(0),
                s.events.unwrap_or(0),
                s.tokens.unwrap_or(0),
                s.memory.unwrap_or(0)
            )?,
            other => writeln!(
                f,
                "store: {other}, not copied: {}",
                s.note.as_deref().unwrap_or("")
            )?,
        }
        write!(
            f,
            "audit log: {} record(s), head {}{}",
            self.audit.records,
            self.audit.head,
            match self.audit.kept.len() {
                0 => String::new(),
                n => format!(", with {n} torn-write copy(ies)"),
            }
        )
    }
}

/// Where a configuration keeps its data.
struct Paths {
    data_dir: PathBuf,
    /// The SQLite store's file; none when the store is PostgreSQL.
    db: Option<PathBuf>,
    audit: PathBuf,
}

impl Paths {
    fn of(config: &Config) -> Paths {
        let s = &config.server;
        Paths {
            data_dir: s.data_dir.clone(),
            db: s.database_url.is_none().then(|| s.data_dir.join(DB_FILE)),
            audit: config
                .policy
                .audit_file
                .clone()
                .unwrap_or_else(|| s.data_dir.join("audit.jsonl")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::audit;
    use std::io::Write;

    fn config(dir: &Path) -> Config {
        let mut c = Config::default();
        c.server.data_dir = dir.to_path_buf();
        c
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_restores_into_an_empty_dir_and_refuses_a_full_one_without_force() {
        let src = tempfile::tempdir().unwrap();
        let store = crate::incidents::sqlite::SqliteStore::open(&src.path().join(DB_FILE)).unwrap();
        crate::incidents::contract::behaves(&store).await;
        let log = audit::AuditLog::open(&src.path().join("audit.jsonl")).unwrap();
        log.append("request", serde_json::json!({"n": 1})).unwrap();
        let head = log
            .append("decision", serde_json::json!({"n": 2}))
            .unwrap()
            .hash;
        // A half-written record at the end is left out whole.
        std::fs::OpenOptions::new()
            .append(true)
            .open(src.path().join("audit.jsonl"))
            .unwrap()
            .write_all(b"{\"seq\":3,\"at\"")
            .unwrap();

        let out = tempfile::tempdir().unwrap();
        let to = out.path().join("b1");
        let m = backup(&config(src.path()), &to).unwrap().manifest;
        assert_eq!(m.audit.records, 2);
        assert_eq!(m.audit.head, head);
        assert_eq!(m.store.incidents, Some(2));
        assert!(matches!(
            backup(&config(src.path()), &to),
            Err(BackupError::Refused(_))
        ));

        let dst = tempfile::tempdir().unwrap();
        let r = restore(&config(dst.path()), &to, false).unwrap();
        assert!(r.moved_aside.is_empty());
        let again = restore(&config(dst.path()), &to, false).unwrap_err();
        assert!(again.to_string().contains("--force"), "{again}");
        let forced = restore(&config(dst.path()), &to, true).unwrap();
        assert!(!forced.moved_aside.is_empty());
        let back = crate::incidents::sqlite::SqliteStore::open(&dst.path().join(DB_FILE)).unwrap();
        use crate::incidents::Store;
        assert_eq!(back.list(10).await.unwrap().len(), 2);

        // A live data directory (its audit log locked) is never restored into.
        let _live = audit::AuditLog::open(&dst.path().join("audit.jsonl")).unwrap();
        let e = restore(&config(dst.path()), &to, true).unwrap_err();
        assert!(e.to_string().contains("running oncall"), "{e}");

        // A changed copy is refused before anything is touched.
        std::fs::write(to.join(AUDIT_FILE), b"").unwrap();
        let e = restore(&config(tempfile::tempdir().unwrap().path()), &to, false).unwrap_err();
        assert!(matches!(e, BackupError::Invalid { .. }), "{e}");
    }
}
