//! A torn last line kept aside: its bytes copied next to the log, the log cut back, and a
//! [`RECOVERED`] record appended; a recovery cut short is finished at the next open.

use super::{AuditError, AuditLog, RECOVERED, TornTail};
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

impl AuditLog {
    /// Keeps the torn bytes aside, cuts the log back to its last complete record and appends a
    /// [`RECOVERED`] record. The kept copy is synced before the log is cut, so a crash at any
    /// step leaves either the torn tail in the log (redone at the next open, reusing an identical
    /// kept copy) or the kept copy without its record (finished at the next open by
    /// [`AuditLog::finish_cut_short_recovery`]).
    pub(super) fn recover(
        &self,
        path: &Path,
        torn: &[u8],
        t: &TornTail,
        last_at: Option<i64>,
    ) -> Result<(), AuditError> {
        let err = |reason: String| AuditError::Recovery {
            path: path.display().to_string(),
            reason,
        };
        let seq = t.follows_seq.saturating_add(1);
        let earlier = torn_siblings(path, seq, last_at).map_err(&err)?;
        let mut also = vec![];
        let mut kept = None;
        for p in earlier {
            match std::fs::read(&p) {
                Ok(b) if b == torn && kept.is_none() => kept = Some(p),
                _ => also.push(p),
            }
        }
        let kept = match kept {
            Some(p) => p,
            None => keep_aside(path, seq, torn).map_err(&err)?,
        };
        {
            let file = self.file.as_ref().ok_or_else(|| err("no file".into()))?;
            let f = file
                .lock()
                .map_err(|_| err("the file's lock was poisoned".into()))?;
            f.set_len(t.offset as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| err(format!("cannot cut the log back to byte {}: {e}", t.offset)))?;
        }
        self.append(RECOVERED, recovered_data(torn, &kept, t.follows_seq, &also))?;
        Ok(())
    }

    /// Finishes a recovery cut short after the log was cut back: a kept copy for the next
    /// sequence number, written after the last record, has no [`RECOVERED`] record yet.
    pub(super) fn finish_cut_short_recovery(
        &self,
        path: &Path,
        last_at: Option<i64>,
    ) -> Result<(), String> {
        let next = self
            .state
            .lock()
            .map_err(|_| "the log's lock was poisoned".to_string())?
            .next;
        let mut kept = torn_siblings(path, next, last_at)?;
        if kept.is_empty() {
            return Ok(());
        }
        let first = kept.remove(0);
        let torn = std::fs::read(&first).map_err(|e| format!("{}: {e}", first.display()))?;
        self.append(
            RECOVERED,
            recovered_data(&torn, &first, next.saturating_sub(1), &kept),
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The data of a [`RECOVERED`] record.
fn recovered_data(torn: &[u8], kept: &Path, follows_seq: u64, also: &[PathBuf]) -> Value {
    let mut d = json!({
        "what": "recovered after torn write",
        "bytes": torn.len(),
        "sha256": sha256_hex(torn),
        "kept_in": kept.display().to_string(),
        "follows_seq": follows_seq,
    });
    if !also.is_empty() {
        d["also_kept"] = json!(
            also.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        );
    }
    d
}

/// The directory `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `<file name>.torn-`: the start of the names of the kept copies of a log's torn lines.
fn torn_prefix(path: &Path) -> String {
    format!(
        "{}.torn-",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}

/// The kept copies for `seq` (`<log>.torn-<seq>-<unix time>[-<n>]`), oldest first, made at or
/// after `since` (the last record's time, unix seconds): older ones belong to an earlier log.
fn torn_siblings(path: &Path, seq: u64, since: Option<i64>) -> Result<Vec<PathBuf>, String> {
    let dir = dir_of(path);
    let prefix = format!("{}{seq}-", torn_prefix(path));
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found = vec![];
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let mut parts = rest.splitn(2, '-');
        let Some(ts) = parts.next().and_then(|t| t.parse::<i64>().ok()) else {
            continue;
        };
        let n = match parts.next() {
            None => 0,
            Some(n) => match n.parse::<u32>() {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if since.is_some_and(|s| ts < s) {
            continue;
        }
        found.push((ts, n, dir.join(&name)));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, _, p)| p).collect())
}

/// Writes `torn` to a new `<log>.torn-<seq>-<unix time>` next to the log, syncs it and its
/// directory, and returns its path.
pub(super) fn keep_aside(path: &Path, seq: u64, torn: &[u8]) -> Result<PathBuf, String> {
    let dir = dir_of(path);
    let base = format!("{}{seq}-{}", torn_prefix(path), Utc::now().timestamp());
    for n in 0..100 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let kept = dir.join(name);
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&kept)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "cannot keep the torn bytes in {}: {e}",
                    kept.display()
                ));
            }
        };
        f.write_all(torn)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot keep the torn bytes in {}: {e}", kept.display()))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
        return Ok(kept);
    }
    Err(format!("{base}: 100 kept copies already exist"))
}

/// A [`RECOVERED`] record found by [`verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// The line of the record (where the torn line was).
    pub line: usize,
    pub seq: u64,
    /// How many torn bytes were kept aside, their sha256, and where.
    pub bytes: u64,
    pub sha256: String,
    pub kept_in: String,
    /// Copies kept by earlier attempts that were cut short, if any.
    pub also_kept: Vec<String>,
}

impl Recovery {
    /// Checks the kept copy next to `log` (or where the record says) against the recorded byte
    /// count and sha256, returning where it was found.
    pub fn check_kept(&self, log: &Path) -> Result<PathBuf, String> {
        let named = PathBuf::from(&self.kept_in);
        let beside = named.file_name().map(|n| dir_of(log).join(n));
        let found = std::iter::once(named.clone())
            .chain(beside)
            .find(|p| p.is_file())
            .ok_or_else(|| format!("the kept copy {} is not there", self.kept_in))?;
        let b = std::fs::read(&found).map_err(|e| format!("{}: {e}", found.display()))?;
        if b.len() as u64 != self.bytes || sha256_hex(&b) != self.sha256 {
            return Err(format!(
                "{} holds {} bytes with sha256 {}, not the {} bytes recorded",
                found.display(),
                b.len(),
                sha256_hex(&b),
                self.bytes
            ));
        }
        Ok(found)
    }
}
