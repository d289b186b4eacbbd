//! The audit log: every action request, decision, execution and measured effect, append-only and
//! hash-chained, so an edited, removed or reordered record is found by [`verify`].
//!
//! One JSON object per line: `{"seq", "at", "kind", "data", "prev", "hash"}`, where `hash` is the
//! sha256 of `seq`, `at`, `kind`, `data` and `prev` in canonical JSON and `prev` is the hash of the
//! record before it (64 zeros for the first). Records are redacted before they are written.
//! Removing records from the end leaves a valid shorter chain; [`verify`] checks against a known
//! head (`--head`) to catch that too.
//!
//! A write cut short (a crash, a full disk) can leave a torn last line: bytes after the last
//! complete record that do not form a record. Nothing was acknowledged for them (a record is
//! acknowledged only once its whole line is synced), so [`AuditLog::open`] keeps them aside in
//! `<log>.torn-<seq>-<unix time>` next to the log (written and synced first), cuts the log back
//! to its last complete record, and appends a [`RECOVERED`] record naming the byte count, their
//! sha256 and where they were kept. Every step leaves a state the next open recovers from
//! without losing the torn bytes. A bad line anywhere else, or a last line that is a record with
//! a wrong hash, sequence or link, is tampering: the log is refused with the line number.

mod recover;
mod verify;

pub use recover::Recovery;
pub use verify::{TornTail, VerifyReport, holds, verify, verify_bytes};

use verify::scan;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The kind of the record [`AuditLog::open`] appends after keeping a torn last line aside.
pub const RECOVERED: &str = "recovered";

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// `request`, `decision`, `execution`, `effect`, `refusal` or `recovered`.
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
    #[error(
        "audit log {path}: the chain is broken ({problem}); run `oncall audit verify` and keep the file for review"
    )]
    Broken { path: String, problem: String },
    #[error("audit log {path}: a torn last line could not be recovered: {reason}")]
    Recovery { path: String, reason: String },
}

/// Whether a failed write was undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undone {
    Yes,
    No,
}

/// Where the chain stands.
struct State {
    next: u64,
    head: String,
    records: Vec<Record>,
    /// Set when a failed write could not be undone: the file may end in a partial line, so
    /// nothing more is appended (a record after it would turn it into a broken middle line).
    poisoned: Option<String>,
}

/// An append-only, hash-chained log in a file (or in memory when no file is configured).
pub struct AuditLog {
    path: Option<PathBuf>,
    /// The file, locked for this process: one writer per audit log, or chains would fork.
    file: Option<Mutex<nix::fcntl::Flock<std::fs::File>>>,
    state: Mutex<State>,
}

impl AuditLog {
    /// A log kept in memory only (tests, one-shot runs).
    pub fn in_memory() -> AuditLog {
        AuditLog {
            path: None,
            file: None,
            state: Mutex::new(State {
                next: 1,
                head: GENESIS.into(),
                records: vec![],
                poisoned: None,
            }),
        }
    }

    /// Opens (or creates) a log file and continues its chain. A broken chain is refused:
    /// appending to it would hide the break. A torn last line (a write cut short) is kept aside
    /// and the log continues after a [`RECOVERED`] record (see the module docs).
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let shown = path.display().to_string();
        let io = |reason: String| AuditError::Io {
            path: shown.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| io(e.to_string()))?;
        // Locked before it is read: two processes must not both recover (or both append).
        let mut locked = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                io(format!(
                    "it is in use by another oncall process ({e}); one writer per audit log: give each replica its own [policy] audit_file or [server] data_dir"
                ))
            })?;
        let mut bytes = vec![];
        locked
            .read_to_end(&mut bytes)
            .map_err(|e| io(e.to_string()))?;
        let scan = scan(&bytes, None);
        if let Some(p) = scan.problems.first() {
            return Err(AuditError::Broken {
                path: shown.clone(),
                problem: p.clone(),
            });
        }
        let last_at = scan.records.last().map(|r| r.at.timestamp());
        let log = AuditLog {
            path: Some(path.to_path_buf()),
            file: Some(Mutex::new(locked)),
            state: Mutex::new(State {
                next: scan.records.last().map_or(1, |r| r.seq.saturating_add(1)),
                head: scan.head,
                records: scan.records,
                poisoned: None,
            }),
        };
        let recovery = |reason: String| AuditError::Recovery {
            path: shown.clone(),
            reason,
        };
        match scan.torn {
            Some(t) => log.recover(path, &bytes[t.offset..], &t, last_at)?,
            None => {
                // A last record whose newline was not written yet: complete its line.
                if bytes.last().is_some_and(|b| *b != b'\n') {
                    log.write_synced(b"\n").map_err(|(why, _)| io(why))?;
                }
                log.finish_cut_short_recovery(path, last_at)
                    .map_err(recovery)?;
            }
        }
        Ok(log)
    }

    /// Writes `bytes` to the end of the file and syncs them; on failure the file is cut back to
    /// where it was, so it never ends in a partial line while this process goes on. The error
    /// says whether that undo worked.
    fn write_synced(&self, bytes: &[u8]) -> Result<(), (String, Undone)> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut f = file
            .lock()
            .map_err(|_| ("the file's lock was poisoned".to_string(), Undone::Yes))?;
        let before = f
            .metadata()
            .map_err(|e| (e.to_string(), Undone::Yes))?
            .len();
        // One write call for the whole line (writeln! would write the newline separately).
        let written = f.write_all(bytes).and_then(|()| f.sync_data());
        if let Err(e) = written {
            return Err(match f.set_len(before).and_then(|()| f.sync_all()) {
                Ok(()) => (format!("{e} (the partial write was undone)"), Undone::Yes),
                Err(undo) => (
                    format!(
                        "{e}; the partial write could not be undone ({undo}): restart oncall to recover the log"
                    ),
                    Undone::No,
                ),
            });
        }
        Ok(())
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
        crate::redact::redact_value(&mut data);
        let mut st = self
            .state
            .lock()
            .map_err(|_| io("the log's lock was poisoned".into()))?;
        if let Some(why) = &st.poisoned {
            return Err(io(format!("not appending after an earlier failure: {why}")));
        }
        let at = Utc::now();
        let hash = digest(st.next, &at, kind, &data, &st.head);
        let rec = Record {
            seq: st.next,
            at,
            kind: kind.to_string(),
            data,
            prev: st.head.clone(),
            hash: hash.clone(),
        };
        if self.file.is_some() {
            let mut line = serde_json::to_string(&rec).map_err(|e| io(e.to_string()))?;
            line.push('\n');
            if let Err((why, undone)) = self.write_synced(line.as_bytes()) {
                if undone == Undone::No {
                    st.poisoned = Some(why.clone());
                }
                return Err(io(why));
            }
        }
        st.next += 1;
        st.head = hash;
        st.records.push(rec.clone());
        Ok(rec)
    }

    /// Every record: those in the file when it was opened, then those appended since.
    pub fn records(&self) -> Vec<Record> {
        self.state
            .lock()
            .map(|s| s.records.clone())
            .unwrap_or_default()
    }

    /// The sequence number and hash of the last record (0 and [`GENESIS`] for an empty log):
    /// what replicas record in the shared store, so `oncall audit verify --replicas` catches
    /// a log cut back below it.
    pub fn position(&self) -> (u64, String) {
        self.state
            .lock()
            .map(|s| (s.next.saturating_sub(1), s.head.clone()))
            .unwrap_or_else(|_| (0, GENESIS.into()))
    }

    /// Where the log is written (none: in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The hash of the last record (keep it elsewhere to detect a truncated tail).
    pub fn head(&self) -> String {
        self.state
            .lock()
            .map(|s| s.head.clone())
            .unwrap_or_else(|_| GENESIS.into())
    }
}

#[cfg(test)]
mod tests {
    use super::recover::{keep_aside, sha256_hex};
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

    /// The kept copies of `p`'s torn lines.
    fn kept(p: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|x| x.to_string_lossy().contains(".torn-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_torn_last_line_is_kept_aside_and_the_chain_continues() {
        for torn in [
            &br#"{"seq":4,"at":"2026-01-01T00:00:00Z","kind":"requ"#[..],
            &b"\0\0\0\0\0\0\0\0"[..],
            &b"{\"seq\":4,\xff\xfe not utf-8"[..],
            &b"garbage with its newline\n"[..],
        ] {
            let (_d, p, text) = log(3);
            let mut bytes = text.clone().into_bytes();
            bytes.extend_from_slice(torn);
            std::fs::write(&p, &bytes).unwrap();

            // Not recovered yet: verify names the line and fails.
            let r = verify_bytes(&bytes, None);
            assert_eq!(
                r.torn.as_ref().map(|t| (t.line, t.bytes)),
                Some((4, torn.len()))
            );
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.starts_with("line 4: a torn write")),
                "{:?}",
                r.problems
            );

            let a = AuditLog::open(&p).unwrap();
            let rec = a.records().pop().unwrap();
            assert_eq!(rec.kind, RECOVERED);
            assert_eq!(rec.seq, 4);
            assert_eq!(rec.data["what"], "recovered after torn write");
            assert_eq!(rec.data["bytes"], torn.len());
            assert_eq!(rec.data["sha256"], sha256_hex(torn));
            assert_eq!(rec.data["follows_seq"], 3);
            let copies = kept(&p);
            assert_eq!(copies.len(), 1);
            assert_eq!(
                std::fs::read(&copies[0]).unwrap(),
                torn,
                "the torn bytes are kept"
            );
            assert_eq!(rec.data["kept_in"], copies[0].display().to_string());
            assert!(
                copies[0]
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("audit.jsonl.torn-4-")
            );
            // The log is the old records plus the recovery, and goes on.
            let after = std::fs::read_to_string(&p).unwrap();
            assert!(after.starts_with(&text));
            assert_eq!(a.append("decision", json!({})).unwrap().seq, 5);
            let r = verify(&std::fs::read_to_string(&p).unwrap(), Some(&a.head()));
            assert!(
                r.problems.is_empty() && r.torn.is_none(),
                "{:?}",
                r.problems
            );
            assert_eq!(r.recoveries.len(), 1);
            assert_eq!(r.recoveries[0].line, 4);
            assert_eq!(r.recoveries[0].bytes, torn.len() as u64);
            assert_eq!(r.recoveries[0].check_kept(&p).unwrap(), copies[0]);
            // Opening again recovers nothing more.
            drop(a);
            let a = AuditLog::open(&p).unwrap();
            assert_eq!(a.records().len(), 5);
            assert_eq!(kept(&p).len(), 1);
        }
    }

    #[test]
    fn a_torn_first_record_is_recovered_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        std::fs::write(&p, br#"{"seq":1,"at":"20"#).unwrap();
        let a = AuditLog::open(&p).unwrap();
        let r = a.records();
        assert_eq!((r.len(), r[0].seq, r[0].kind.as_str()), (1, 1, RECOVERED));
        assert_eq!(r[0].data["follows_seq"], 0);
        assert_eq!(r[0].prev, GENESIS);
    }

    #[test]
    fn a_torn_middle_line_or_an_edited_last_or_recovery_record_stops_the_open() {
        let (_d, p, text) = log(3);
        let lines: Vec<&str> = text.lines().collect();
        // A torn line that is not the last: records were written after it.
        let middle = format!(
            "{}\n{{\"seq\":2,\"at\n{}\n{}\n",
            lines[0], lines[1], lines[2]
        );
        std::fs::write(&p, &middle).unwrap();
        let e = AuditLog::open(&p).err().expect("refused").to_string();
        assert!(
            e.contains("broken") && e.contains("line 2: not an audit record"),
            "{e}"
        );
        // The last line is a whole record whose content was edited: tampering, not a tear.
        let edited = text.replacen("\"i\":2", "\"i\":5", 1);
        std::fs::write(&p, &edited).unwrap();
        let e = AuditLog::open(&p).err().expect("refused").to_string();
        assert!(e.contains("line 3: record 3 was edited"), "{e}");
        // Also without its newline.
        std::fs::write(&p, edited.trim_end()).unwrap();
        let e = AuditLog::open(&p).err().expect("refused").to_string();
        assert!(e.contains("line 3: record 3 was edited"), "{e}");
        // Nothing was kept aside or appended.
        assert!(kept(&p).is_empty());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), edited.trim_end());

        // After a recovery, the `recovered` record is chained like any other: editing it (here
        // its byte count) stops the open.
        std::fs::write(&p, format!("{text}{{\"seq\":4")).unwrap();
        let a = AuditLog::open(&p).unwrap();
        a.append("decision", json!({})).unwrap();
        drop(a);
        let recovered = std::fs::read_to_string(&p).unwrap();
        let e = {
            std::fs::write(&p, recovered.replacen("\"bytes\":8", "\"bytes\":9", 1)).unwrap();
            AuditLog::open(&p).err().expect("refused").to_string()
        };
        assert!(e.contains("line 4: record 4 was edited"), "{e}");
    }

    #[test]
    fn a_last_record_without_its_newline_is_completed_not_recovered() {
        let (_d, p, text) = log(2);
        std::fs::write(&p, text.trim_end()).unwrap();
        let a = AuditLog::open(&p).unwrap();
        assert_eq!(a.append("decision", json!({})).unwrap().seq, 3);
        let r = verify(&std::fs::read_to_string(&p).unwrap(), None);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(r.recoveries.is_empty() && kept(&p).is_empty());
    }

    #[test]
    fn a_recovery_cut_short_at_any_step_is_finished_and_keeps_the_torn_bytes() {
        let torn = br#"{"seq":3,"at":"2026-01-01T"#;
        // 1. Cut short after the copy was kept, before the log was cut back: the copy is reused.
        let (_d, p, text) = log(2);
        std::fs::write(&p, [text.as_bytes(), torn].concat()).unwrap();
        let copy = keep_aside(&p, 3, torn).unwrap();
        let a = AuditLog::open(&p).unwrap();
        let rec = a.records().pop().unwrap();
        assert_eq!(rec.kind, RECOVERED);
        assert_eq!(rec.data["kept_in"], copy.display().to_string());
        assert_eq!(kept(&p), vec![copy.clone()]);
        drop(a);

        // 2. Cut short after the log was cut back, before the record: finished at the next open.
        let (_d, p, text) = log(2);
        let copy = keep_aside(&p, 3, torn).unwrap();
        let a = AuditLog::open(&p).unwrap();
        let rec = a.records().pop().unwrap();
        assert_eq!((rec.seq, rec.kind.as_str()), (3, RECOVERED));
        assert_eq!(rec.data["kept_in"], copy.display().to_string());
        assert_eq!(rec.data["sha256"], sha256_hex(torn));
        drop(a);
        // ...and only once.
        let a = AuditLog::open(&p).unwrap();
        assert_eq!(a.records().len(), 3);
        drop(a);
        assert!(std::fs::read_to_string(&p).unwrap().starts_with(&text));

        // 3. The `recovered` record itself was torn: its bytes are kept too, and the record
        // names the first copy as well.
        let (_d, p, text) = log(2);
        let first = keep_aside(&p, 3, torn).unwrap();
        let torn_record = br#"{"seq":3,"at":"2026-01-01T00:00:00Z","kind":"recovered","da"#;
        std::fs::write(&p, [text.as_bytes(), torn_record].concat()).unwrap();
        let a = AuditLog::open(&p).unwrap();
        let rec = a.records().pop().unwrap();
        assert_eq!(rec.kind, RECOVERED);
        assert_eq!(rec.data["also_kept"], json!([first.display().to_string()]));
        let second = PathBuf::from(rec.data["kept_in"].as_str().unwrap());
        assert_eq!(std::fs::read(&second).unwrap(), torn_record);
        assert_eq!(std::fs::read(&first).unwrap(), torn);
        let r = verify(&std::fs::read_to_string(&p).unwrap(), None);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.recoveries[0].also_kept, vec![first.display().to_string()]);
    }

    #[test]
    fn kept_copies_of_an_older_log_are_not_taken_for_this_one() {
        let (_d, p, _) = log(2);
        // A copy for seq 3 made before the last record was written belongs to another log.
        let old = p.with_file_name("audit.jsonl.torn-3-1000000000");
        std::fs::write(&old, b"old").unwrap();
        let a = AuditLog::open(&p).unwrap();
        assert_eq!(a.records().len(), 2);
    }

    #[test]
    fn a_moved_or_changed_kept_copy_is_named_by_check_kept() {
        let (_d, p, text) = log(1);
        std::fs::write(&p, format!("{text}{{\"se")).unwrap();
        let a = AuditLog::open(&p).unwrap();
        let r = verify(&std::fs::read_to_string(&p).unwrap(), None);
        let rec = &r.recoveries[0];
        let copy = rec.check_kept(&p).unwrap();
        std::fs::write(&copy, b"other").unwrap();
        assert!(
            rec.check_kept(&p)
                .unwrap_err()
                .contains("not the 4 bytes recorded")
        );
        std::fs::remove_file(&copy).unwrap();
        assert!(rec.check_kept(&p).unwrap_err().contains("is not there"));
        drop(a);
    }

    /// Stable counterpart of the `audit_read` fuzz target: mutated logs never panic the reader,
    /// and `open` either refuses a log or leaves one that verifies; a log cut anywhere (a torn
    /// write) is always recovered, never refused.
    #[test]
    fn mutated_logs_never_panic_and_torn_ones_always_recover() {
        let (_d, _p, text) = log(6);
        let valid = text.into_bytes();
        let head = verify_bytes(&valid, None).head;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut opened, mut refused, mut recovered) = (0, 0, 0);
        for round in 0..6_000 {
            let mut b = valid.clone();
            match round % 5 {
                0 => {
                    for _ in 0..(next() % 8 + 1) {
                        let i = (next() as usize) % b.len();
                        b[i] = next() as u8;
                    }
                }
                1 => b.truncate((next() as usize) % b.len()),
                2 => {
                    let i = (next() as usize) % b.len();
                    let extra: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
                    b.splice(i..i, extra);
                }
                3 => {
                    let i = (next() as usize) % b.len();
                    let j = (next() as usize) % b.len();
                    b.swap(i, j);
                }
                _ => b = (0..(next() % 512)).map(|_| next() as u8).collect(),
            }
            let r = verify_bytes(&b, Some(&head));
            assert!(r.records <= b.len());
            let _ = verify_bytes(&b, Some("é"));
            if round % 10 > 1 {
                continue;
            }
            let p = dir.path().join(format!("a{round}.jsonl"));
            std::fs::write(&p, &b).unwrap();
            match AuditLog::open(&p) {
                Ok(a) => {
                    opened += 1;
                    let after = std::fs::read(&p).unwrap();
                    let v = verify_bytes(&after, Some(&a.head()));
                    assert!(v.problems.is_empty(), "round {round}: {:?}", v.problems);
                    if let Some(t) = verify_bytes(&b, None).torn {
                        recovered += 1;
                        let rec = a.records().pop().unwrap();
                        assert_eq!(rec.kind, RECOVERED);
                        let copy = v.recoveries.last().unwrap().check_kept(&p).unwrap();
                        assert_eq!(std::fs::read(copy).unwrap(), b[t.offset..]);
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(
                        round % 5 != 1,
                        "round {round}: a log cut short was refused: {e}"
                    );
                    assert!(e.to_string().contains("line "), "{e}");
                }
            }
        }
        assert!(opened > 0 && refused > 0 && recovered > 0);
    }
}
