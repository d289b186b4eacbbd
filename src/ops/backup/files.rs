//! The files of a backup: written through temporary names and synced, the SQLite store
//! snapshotted and checked, the audit log read up to its last complete record.

use super::{BackupError, io_err, sql_err};
use crate::policy::audit;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The sha256 (hex) and length of a file.
pub(super) fn file_sha256(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(|e| io_err(path, e))?;
    Ok((hex::encode(h.finalize()), n))
}

pub(super) fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(path, format!("cannot sync: {e}")))
}

/// Syncs a directory, so the names created or renamed in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    sync_file(dir)
}

/// Writes `bytes` to `path` through a temporary name, synced, then renamed into place.
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let tmp = partial(path);
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Copies a file through a temporary name, synced, then renamed into place.
pub(super) fn copy_new(from: &Path, to: &Path) -> Result<(), BackupError> {
    let tmp = partial(to);
    std::fs::copy(from, &tmp)
        .map_err(|e| io_err(to, format!("cannot copy {}: {e}", from.display())))?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, to).map_err(|e| io_err(to, e))
}

pub(super) fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// The counts a store copy is described by.
pub(super) struct Counts {
    pub(super) schema_version: i64,
    pub(super) incidents: i64,
    pub(super) events: i64,
    pub(super) tokens: i64,
    pub(super) memory: i64,
}

/// Checks a SQLite file's integrity and counts its rows.
pub(super) fn check_sqlite(path: &Path) -> Result<Counts, BackupError> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_err(path, e))?;
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| sql_err(path, e))?;
    if ok != "ok" {
        return Err(sql_err(path, format!("integrity check failed: {ok}")));
    }
    let count = |sql: &str| -> Result<i64, BackupError> {
        c.query_row(sql, [], |r| r.get(0))
            .map_err(|e| sql_err(path, format!("{sql}: {e}")))
    };
    let has_memory =
        count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'memory'")? > 0;
    Ok(Counts {
        schema_version: count("SELECT COALESCE(MAX(version), 0) FROM schema_version")?,
        incidents: count("SELECT COUNT(*) FROM incidents")?,
        events: count("SELECT COUNT(*) FROM events")?,
        tokens: count("SELECT COUNT(*) FROM tokens")?,
        memory: if has_memory {
            count("SELECT COUNT(*) FROM memory")?
        } else {
            0
        },
    })
}

/// Copies the live SQLite store at `db` to `to` as one snapshot (`VACUUM INTO`, a single read
/// transaction that never blocks the server's writer in WAL mode), leaves the copy in
/// rollback-journal mode, and checks it.
pub(super) fn snapshot_sqlite(db: &Path, to: &Path) -> Result<Counts, BackupError> {
    if !db.is_file() {
        return Err(BackupError::Refused(format!(
            "there is no incident store at {}: nothing to back up (check [server] data_dir, or ONCALL_SERVER__DATA_DIR)",
            db.display()
        )));
    }
    let tmp = partial(to);
    let _ = std::fs::remove_file(&tmp);
    {
        // Never creates the file; reads through the WAL like any reader.
        let c = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(db, e))?;
        c.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| sql_err(db, e))?;
        let dest = tmp.to_str().ok_or_else(|| {
            io_err(
                &tmp,
                "the backup path is not valid UTF-8; choose another directory",
            )
        })?;
        c.execute("VACUUM INTO ?1", [dest])
            .map_err(|e| sql_err(db, format!("VACUUM INTO {dest}: {e}")))?;
    }
    {
        let c = Connection::open(&tmp).map_err(|e| sql_err(&tmp, e))?;
        c.pragma_update(None, "journal_mode", "DELETE")
            .map_err(|e| sql_err(&tmp, e))?;
    }
    let counts = check_sqlite(&tmp)?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, to).map_err(|e| io_err(to, e))?;
    Ok(counts)
}

/// The audit log's bytes up to its last complete line (a record written at this moment is left
/// out whole), verified.
pub(super) fn audit_prefix(path: &Path) -> Result<(Vec<u8>, audit::VerifyReport), BackupError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(io_err(path, e)),
    };
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let prefix = bytes[..end].to_vec();
    let report = audit::verify_bytes(&prefix, None);
    if !report.problems.is_empty() {
        return Err(BackupError::Refused(format!(
            "the audit log {} does not verify ({}); run `oncall audit verify` and keep the file for review: a backup would hide the break",
            path.display(),
            report.problems.join("; ")
        )));
    }
    Ok((prefix, report))
}

/// Takes the audit log's lock (the one `oncall serve` holds while it runs), creating nothing.
pub(super) fn lock_audit(path: &Path) -> Result<Option<nix::fcntl::Flock<File>>, BackupError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map(Some)
        .map_err(|(_, e)| {
            BackupError::Refused(format!(
                "{} is held by a running oncall ({e}): stop it before restoring; restore never writes under a live server",
                path.display()
            ))
        })
}

/// The torn-write copies kept beside an audit log (`<log>.torn-*`).
pub(super) fn torn_copies(audit: &Path) -> Vec<PathBuf> {
    let Some(name) = audit.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return vec![];
    };
    let dir = audit
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{name}.torn-");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && !n.contains(".before-restore-")
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}
