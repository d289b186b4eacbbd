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

use crate::config::Config;
use crate::policy::audit;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io::Write;
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

/// The sha256 (hex) and length of a file.
fn file_sha256(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(|e| io_err(path, e))?;
    Ok((hex::encode(h.finalize()), n))
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(path, format!("cannot sync: {e}")))
}

/// Syncs a directory, so the names created or renamed in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    sync_file(dir)
}

/// Writes `bytes` to `path` through a temporary name, synced, then renamed into place.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let tmp = partial(path);
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Copies a file through a temporary name, synced, then renamed into place.
fn copy_new(from: &Path, to: &Path) -> Result<(), BackupError> {
    let tmp = partial(to);
    std::fs::copy(from, &tmp)
        .map_err(|e| io_err(to, format!("cannot copy {}: {e}", from.display())))?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, to).map_err(|e| io_err(to, e))
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// The counts a store copy is described by.
struct Counts {
    schema_version: i64,
    incidents: i64,
    events: i64,
    tokens: i64,
    memory: i64,
}

/// Checks a SQLite file's integrity and counts its rows.
fn check_sqlite(path: &Path) -> Result<Counts, BackupError> {
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
fn snapshot_sqlite(db: &Path, to: &Path) -> Result<Counts, BackupError> {
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
fn audit_prefix(path: &Path) -> Result<(Vec<u8>, audit::VerifyReport), BackupError> {
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

/// Reads and checks a backup's manifest.
pub fn read_manifest(from: &Path) -> Result<Manifest, BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        dir: from.display().to_string(),
        reason,
    };
    let path = from.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        invalid(format!(
            "{}: {e} (a backup is complete only once `oncall backup` wrote its manifest)",
            path.display()
        ))
    })?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if m.format != FORMAT {
        return Err(invalid(format!(
            "format {:?}, this oncall restores {FORMAT:?}",
            m.format
        )));
    }
    Ok(m)
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub manifest: Manifest,
    /// Files that were in the way, moved aside (`--force`).
    pub moved_aside: Vec<PathBuf>,
}

impl fmt::Display for Restored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "restored into {}", self.data_dir.display())?;
        writeln!(f, "{}", self.manifest)?;
        for p in &self.moved_aside {
            writeln!(f, "moved aside: {}", p.display())?;
        }
        write!(
            f,
            "the restored audit chain verifies up to head {}: `oncall audit verify --head {}` checks it until the server appends again (the head then stays in the chain)",
            self.manifest.audit.head, self.manifest.audit.head
        )
    }
}

/// Restores the backup in `from` into the data `config` names. The data directory must not be
/// in use; with `force`, a store or audit log already there is moved aside, never deleted.
pub fn restore(config: &Config, from: &Path, force: bool) -> Result<Restored, BackupError> {
    let m = read_manifest(from)?;
    let paths = Paths::of(config);
    let invalid = |reason: String| BackupError::Invalid {
        dir: from.display().to_string(),
        reason,
    };
    match (m.store.kind.as_str(), &paths.db) {
        ("sqlite", Some(_)) | ("postgresql", None) => {}
        ("sqlite", None) => {
            return Err(BackupError::Refused(format!(
                "this backup holds a SQLite store, but [server] database_url points at PostgreSQL; unset it to restore into {}",
                paths.data_dir.display()
            )));
        }
        ("postgresql", Some(_)) => {
            return Err(BackupError::Refused(
                "this backup's store is PostgreSQL: set [server] database_url to the database you restored with pg_restore, then run restore again (it restores the audit log)".into(),
            ));
        }
        (other, _) => return Err(invalid(format!("unknown store kind {other:?}"))),
    }

    // Every file is checked before anything in the data directory is touched.
    let audit_src = from.join(&m.audit.file);
    let (sha, len) = file_sha256(&audit_src)?;
    if sha != m.audit.sha256 || len != m.audit.bytes {
        return Err(invalid(format!(
            "{} changed since the backup (sha256 {sha}, {len} bytes; the manifest says {}, {} bytes)",
            audit_src.display(),
            m.audit.sha256,
            m.audit.bytes
        )));
    }
    let audit_bytes = std::fs::read(&audit_src).map_err(|e| io_err(&audit_src, e))?;
    let r = audit::verify_bytes(&audit_bytes, Some(&m.audit.head));
    if !r.problems.is_empty() || r.records != m.audit.records {
        return Err(invalid(format!(
            "the audit log copy does not verify against the manifest's head ({} record(s), {})",
            r.records,
            r.problems.join("; ")
        )));
    }
    for k in &m.audit.kept {
        let p = from.join(&k.file);
        if file_sha256(&p)?.0 != k.sha256 {
            return Err(invalid(format!("{} changed since the backup", p.display())));
        }
    }
    if let (Some(file), Some(want)) = (&m.store.file, &m.store.sha256) {
        let p = from.join(file);
        let (sha, _) = file_sha256(&p)?;
        if &sha != want {
            return Err(invalid(format!(
                "{} changed since the backup (sha256 {sha}, the manifest says {want})",
                p.display()
            )));
        }
    }

    std::fs::create_dir_all(&paths.data_dir).map_err(|e| io_err(&paths.data_dir, e))?;
    if let Some(dir) = paths.audit.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    // A running oncall holds the audit log's lock: never restore under it, --force or not.
    // The lock is held until the restore is done, so a server starting meanwhile is refused.
    let _held = lock_audit(&paths.audit)?;

    let mut in_the_way = vec![];
    if let Some(db) = &paths.db {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = db.clone().into_os_string();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                in_the_way.push(p);
            }
        }
    }
    if paths.audit.exists() {
        in_the_way.push(paths.audit.clone());
    }
    in_the_way.extend(torn_copies(&paths.audit));
    let substantial: Vec<&PathBuf> = in_the_way
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|md| md.len() > 0))
        .collect();
    if !substantial.is_empty() && !force {
        return Err(BackupError::Refused(format!(
            "{} already holds data ({}); restore only into an empty, stopped data directory, or pass --force to move these aside to <name>.before-restore-<time> first",
            paths.data_dir.display(),
            substantial
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut moved_aside = vec![];
    for p in &in_the_way {
        // An empty file (a log nothing was recorded in, an idle WAL) holds nothing to keep.
        if std::fs::metadata(p).is_ok_and(|md| md.len() == 0) {
            std::fs::remove_file(p).map_err(|e| io_err(p, e))?;
            continue;
        }
        let mut to = p.clone().into_os_string();
        to.push(format!(".before-restore-{stamp}"));
        let to = PathBuf::from(to);
        std::fs::rename(p, &to).map_err(|e| io_err(p, format!("cannot move it aside: {e}")))?;
        moved_aside.push(to);
    }

    // The store: copied under a temporary name, checked against the manifest, renamed.
    if let (Some(db), Some(file)) = (&paths.db, &m.store.file) {
        let src = from.join(file);
        let tmp = partial(db);
        std::fs::copy(&src, &tmp)
            .map_err(|e| io_err(&tmp, format!("cannot copy {}: {e}", src.display())))?;
        sync_file(&tmp)?;
        let c = check_sqlite(&tmp)?;
        let got = (Some(c.incidents), Some(c.events), Some(c.tokens));
        if got != (m.store.incidents, m.store.events, m.store.tokens) {
            let _ = std::fs::remove_file(&tmp);
            return Err(invalid(format!(
                "the store copy holds {} incident(s), {} event(s), {} token(s), not what the manifest says",
                c.incidents, c.events, c.tokens
            )));
        }
        std::fs::rename(&tmp, db).map_err(|e| io_err(db, e))?;
        if let Some(dir) = db.parent() {
            sync_dir(dir)?;
        }
    }
    // The audit log and the torn-write copies its records name, beside it.
    let dir = paths
        .audit
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    for k in &m.audit.kept {
        copy_new(&from.join(&k.file), &dir.join(&k.file))?;
    }
    write_new(&paths.audit, &audit_bytes)?;
    sync_dir(&dir)?;

    // What was written is what was verified.
    let back = std::fs::read(&paths.audit).map_err(|e| io_err(&paths.audit, e))?;
    let r = audit::verify_bytes(&back, Some(&m.audit.head));
    if !r.problems.is_empty() {
        return Err(BackupError::Io {
            path: paths.audit.display().to_string(),
            reason: format!(
                "the restored audit log does not verify: {}",
                r.problems.join("; ")
            ),
        });
    }
    Ok(Restored {
        data_dir: paths.data_dir,
        manifest: m,
        moved_aside,
    })
}

/// Takes the audit log's lock (the one `oncall serve` holds while it runs), creating nothing.
fn lock_audit(path: &Path) -> Result<Option<nix::fcntl::Flock<File>>, BackupError> {
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
fn torn_copies(audit: &Path) -> Vec<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
