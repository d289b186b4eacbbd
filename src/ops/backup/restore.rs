//! `oncall restore`: every file checked against the manifest before the data directory is
//! touched, what is in the way moved aside, the audit chain verified once written.

use super::files::{
    check_sqlite, copy_new, file_sha256, lock_audit, partial, sync_dir, sync_file, torn_copies,
    write_new,
};
use super::{BackupError, FORMAT, MANIFEST, Manifest, Paths, io_err};
use crate::config::Config;
use crate::policy::audit;
use chrono::Utc;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

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
