//! The audit log: every action request, decision, execution and measured effect, append-only and
//! hash-chained, so an edited, removed or reordered record is found by [`verify`].
//!
//! One JSON object per line: `{"seq", "at", "kind", "data", "prev", "hash"}`, where `hash` is the
//! sha256 of `seq`, `at`, `kind`, `data` and `prev` in canonical JSON and `prev` is the hash of the
//! record before it (64 zeros for the first). Records are redacted before they are written.
//! Removing records from the end leaves a valid shorter chain; [`verify`] checks against a known
//! head (`--head`) to catch that too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// `request`, `decision`, `execution`, `effect` or `refusal`.
    pub kind: String,
    pub data: Value,
    pub prev: String,
    pub hash: String,
}

fn digest(seq: u64, at: &DateTime<Utc>, kind: &str, data: &Value, prev: &str) -> String {
    let body = json!({"seq": seq, "at": at, "kind": kind, "data": data, "prev": prev});
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {reason}")]
    Io { path: String, reason: String },
}

/// An append-only, hash-chained log in a file (or in memory when no file is configured).
pub struct AuditLog {
    path: Option<PathBuf>,
    /// The file, locked for this process: one writer per audit log, or chains would fork.
    file: Option<Mutex<nix::fcntl::Flock<std::fs::File>>>,
    /// (next seq, last hash, records kept in memory).
    state: Mutex<(u64, String, Vec<Record>)>,
}

impl AuditLog {
    /// A log kept in memory only (tests, one-shot runs).
    pub fn in_memory() -> AuditLog {
        AuditLog {
            path: None,
            file: None,
            state: Mutex::new((1, GENESIS.into(), vec![])),
        }
    }

    /// Opens (or creates) a log file and continues its chain. A broken chain is refused: appending
    /// to it would hide the break.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io = |reason: String| AuditError::Io {
            path: path.display().to_string(),
            reason,
        };
        let (next, last, kept) = match std::fs::read_to_string(path) {
            Ok(text) => {
                let (report, kept) = check(&text, None);
                if let Some(p) = report.problems.first() {
                    return Err(io(format!(
                        "the chain is broken ({p}); run `oncall audit verify` and keep the file for review"
                    )));
                }
                (report.records as u64 + 1, report.head, kept)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
                }
                (1, GENESIS.to_string(), vec![])
            }
            Err(e) => return Err(io(e.to_string())),
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(e.to_string()))?;
        let locked = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                io(format!(
                    "it is in use by another oncall process ({e}); one writer per audit log: give each replica its own [policy] audit_file or [server] data_dir"
                ))
            })?;
        Ok(AuditLog {
            path: Some(path.to_path_buf()),
            file: Some(Mutex::new(locked)),
            state: Mutex::new((next, last, kept)),
        })
    }

    /// Appends one record (redacted) and returns it. The record reaches the file before this
    /// returns (written and synced).
    pub fn append(&self, kind: &str, data: Value) -> Result<Record, AuditError> {
        let io = |reason: String| AuditError::Io {
            path: self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(memory)".into()),
            reason,
        };
        let mut data = data;
        super::redact::redact_value(&mut data);
        let mut st = self
            .state
            .lock()
            .map_err(|_| io("the log's lock was poisoned".into()))?;
        let at = Utc::now();
        let hash = digest(st.0, &at, kind, &data, &st.1);
        let rec = Record {
            seq: st.0,
            at,
            kind: kind.to_string(),
            data,
            prev: st.1.clone(),
            hash: hash.clone(),
        };
        if let Some(file) = &self.file {
            let line = serde_json::to_string(&rec).map_err(|e| io(e.to_string()))?;
            let mut f = file
                .lock()
                .map_err(|_| io("the file's lock was poisoned".into()))?;
            writeln!(*f, "{line}").map_err(|e| io(e.to_string()))?;
            f.sync_data().map_err(|e| io(e.to_string()))?;
        }
        st.0 += 1;
        st.1 = hash;
        st.2.push(rec.clone());
        Ok(rec)
    }

    /// Every record: those in the file when it was opened, then those appended since.
    pub fn records(&self) -> Vec<Record> {
        self.state.lock().map(|s| s.2.clone()).unwrap_or_default()
    }

    /// The hash of the last record (keep it elsewhere to detect a truncated tail).
    pub fn head(&self) -> String {
        self.state
            .lock()
            .map(|s| s.1.clone())
            .unwrap_or_else(|_| GENESIS.into())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub records: usize,
    /// The hash of the last valid record.
    pub head: String,
    /// Each problem with its line number; empty: the chain is intact.
    pub problems: Vec<String>,
}

/// Checks a log's chain: each record's hash, its link to the one before, and the sequence. With
/// `expected_head`, also that the log ends where it should (nothing removed from the end).
pub fn verify(text: &str, expected_head: Option<&str>) -> VerifyReport {
    check(text, expected_head).0
}

/// [`verify`], keeping the records it read.
fn check(text: &str, expected_head: Option<&str>) -> (VerifyReport, Vec<Record>) {
    let mut records = vec![];
    let mut problems = vec![];
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1u64;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        n += 1;
        let r: Record = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("line {ln}: not an audit record: {e}"));
                continue;
            }
        };
        if r.hash != digest(r.seq, &r.at, &r.kind, &r.data, &r.prev) {
            problems.push(format!(
                "line {ln}: record {} was edited (its hash does not match its content)",
                r.seq
            ));
        }
        if r.seq != expected_seq {
            problems.push(format!(
                "line {ln}: record {} where {expected_seq} was expected (a record was removed or moved)",
                r.seq
            ));
        }
        if r.prev != prev {
            problems.push(format!(
                "line {ln}: record {} does not follow the record before it (removed, reordered or inserted records)",
                r.seq
            ));
        }
        prev = r.hash.clone();
        expected_seq = r.seq + 1;
        records.push(r);
    }
    if let Some(h) = expected_head
        && h != prev
    {
        problems.push(format!(
            "the log ends at {} but the expected head is {h}: records were removed from the end",
            &prev[..12.min(prev.len())]
        ));
    }
    (
        VerifyReport {
            records: n,
            head: prev,
            problems,
        },
        records,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let a = AuditLog::open(&p).unwrap();
        for i in 0..n {
            a.append(
                "request",
                json!({"i": i, "dsn": "postgres://u:hunter2@db/app"}),
            )
            .unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        (dir, p, text)
    }

    #[test]
    fn an_intact_chain_verifies_and_continues_across_opens() {
        let (_d, p, text) = log(3);
        let r = verify(&text, None);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.records, 3);
        assert!(!text.contains("hunter2"), "records are redacted");
        let a = AuditLog::open(&p).unwrap();
        let rec = a.append("decision", json!({})).unwrap();
        assert_eq!(rec.seq, 4);
        let r = verify(&std::fs::read_to_string(&p).unwrap(), Some(&rec.hash));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn edited_removed_reordered_and_truncated_records_are_found() {
        let (_d, _p, text) = log(4);
        let lines: Vec<&str> = text.lines().collect();
        let edited = text.replacen("\"i\":1", "\"i\":7", 1);
        assert!(
            verify(&edited, None).problems[0].contains("line 2: record 2 was edited"),
            "{:?}",
            verify(&edited, None)
        );
        let removed = [lines[0], lines[2], lines[3]].join("\n");
        let r = verify(&removed, None);
        assert!(
            r.problems.iter().any(|p| p.contains("line 2")),
            "{:?}",
            r.problems
        );
        let reordered = [lines[0], lines[2], lines[1], lines[3]].join("\n");
        assert!(!verify(&reordered, None).problems.is_empty());
        let head = verify(&text, None).head;
        let truncated = lines[..3].join("\n");
        assert!(verify(&truncated, None).problems.is_empty());
        assert!(verify(&truncated, Some(&head)).problems[0].contains("removed from the end"));
    }

    #[test]
    fn a_broken_log_is_not_appended_to() {
        let (_d, p, text) = log(2);
        std::fs::write(&p, text.replacen("\"i\":0", "\"i\":9", 1)).unwrap();
        let e = AuditLog::open(&p).err().expect("refused").to_string();
        assert!(e.contains("broken") && e.contains("audit verify"), "{e}");
    }

    #[test]
    fn one_writer_per_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let first = AuditLog::open(&path).unwrap();
        first.append("request", json!({"n": 1})).unwrap();
        let err = AuditLog::open(&path)
            .err()
            .expect("a second writer is refused");
        assert!(
            err.to_string().contains("in use by another oncall process"),
            "{err}"
        );
        drop(first);
        let again = AuditLog::open(&path).unwrap();
        assert_eq!(again.append("request", json!({"n": 2})).unwrap().seq, 2);
    }
}
