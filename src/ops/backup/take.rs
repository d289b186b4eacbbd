//! `oncall backup`: the store first, then the audit log, then the manifest.

use super::files::{audit_prefix, copy_new, file_sha256, snapshot_sqlite, sync_dir, write_new};
use super::{
    AUDIT_FILE, AuditCopy, BackupError, DB_FILE, FORMAT, KeptCopy, MANIFEST, Manifest, Paths,
    StoreCopy, io_err,
};
use crate::config::Config;
use chrono::Utc;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Takes a backup of the data `config` names into `to` (created; it must not hold a backup
/// already). Safe while `oncall serve` runs.
pub fn backup(config: &Config, to: &Path) -> Result<Written, BackupError> {
    let paths = Paths::of(config);
    for name in [MANIFEST, DB_FILE, AUDIT_FILE] {
        if to.join(name).exists() {
            return Err(BackupError::Refused(format!(
                "{} already holds a backup ({name}); give a new directory",
                to.display()
            )));
        }
    }
    if let (Ok(a), Ok(b)) = (to.canonicalize(), paths.data_dir.canonicalize())
        && a == b
    {
        return Err(BackupError::Refused(format!(
            "{} is the data directory itself; back up into another directory",
            to.display()
        )));
    }
    std::fs::create_dir_all(to).map_err(|e| io_err(to, e))?;

    // 1. The store, first (see the module docs for why the order matters).
    let store = match &paths.db {
        Some(db) => {
            let copy = to.join(DB_FILE);
            let c = snapshot_sqlite(db, &copy)?;
            let (sha256, bytes) = file_sha256(&copy)?;
            StoreCopy {
                kind: "sqlite".into(),
                file: Some(DB_FILE.into()),
                bytes: Some(bytes),
                sha256: Some(sha256),
                schema_version: Some(c.schema_version),
                incidents: Some(c.incidents),
                events: Some(c.events),
                tokens: Some(c.tokens),
                memory: Some(c.memory),
                note: None,
            }
        }
        None => StoreCopy {
            kind: "postgresql".into(),
            file: None,
            bytes: None,
            sha256: None,
            schema_version: None,
            incidents: None,
            events: None,
            tokens: None,
            memory: None,
            note: Some(
                "the store is PostgreSQL ([server] database_url): dump it with `pg_dump --format=custom` before this backup and restore it with `pg_restore` (docs/deploy.md)".into(),
            ),
        },
    };

    // 2. The audit log, after the store.
    let (bytes, report) = audit_prefix(&paths.audit)?;
    let audit_copy = to.join(AUDIT_FILE);
    write_new(&audit_copy, &bytes)?;
    let mut kept = vec![];
    for rec in &report.recoveries {
        // A kept copy that is missing is reported by `oncall audit verify` as a note; the chain
        // itself is intact, so the backup goes on without it.
        if let Ok(found) = rec.check_kept(&paths.audit)
            && let Some(name) = found.file_name()
        {
            copy_new(&found, &to.join(name))?;
            kept.push(KeptCopy {
                file: name.to_string_lossy().into_owned(),
                sha256: rec.sha256.clone(),
            });
        }
    }
    let (sha256, len) = file_sha256(&audit_copy)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: Utc::now(),
        oncall_version: env!("CARGO_PKG_VERSION").into(),
        store,
        audit: AuditCopy {
            file: AUDIT_FILE.into(),
            records: report.records,
            head: report.head,
            bytes: len,
            sha256,
            kept,
        },
    };
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| io_err(&to.join(MANIFEST), e))?;
    write_new(&to.join(MANIFEST), format!("{text}\n").as_bytes())?;
    sync_dir(to)?;
    Ok(Written {
        dir: to.to_path_buf(),
        manifest,
    })
}

/// A backup just written: where, and its manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Written {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "backup written to {} ({MANIFEST} last)",
            self.dir.display()
        )?;
        write!(f, "{}", self.manifest)
    }
}
