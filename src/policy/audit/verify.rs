//! Reading a log back: each record's hash, its link to the one before and the sequence, a torn
//! last line told from tampering, and the recoveries so far.

use super::recover::Recovery;
use super::{GENESIS, RECOVERED, Record, digest};
use serde::Serialize;

/// A torn last line: bytes after the last complete record that do not form a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TornTail {
    /// The line they start on (from 1).
    pub line: usize,
    /// The byte they start at: the log is cut back to here.
    pub offset: usize,
    /// How many bytes (to the end of the file).
    pub bytes: usize,
    /// The sequence number of the last complete record (0: none).
    pub follows_seq: u64,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub records: usize,
    /// The hash of the last valid record.
    pub head: String,
    /// Each problem with its line number; empty: the chain is intact. A torn last line not yet
    /// recovered is one of them (and is described in `torn`).
    pub problems: Vec<String>,
    /// A torn last line that `oncall serve` has not recovered yet.
    pub torn: Option<TornTail>,
    /// The torn writes recovered so far, in order.
    pub recoveries: Vec<Recovery>,
}

/// Checks a log's chain: each record's hash, its link to the one before, and the sequence. With
/// `expected_head`, also that the log ends where it should (nothing removed from the end).
pub fn verify(text: &str, expected_head: Option<&str>) -> VerifyReport {
    verify_bytes(text.as_bytes(), expected_head)
}

/// [`verify`] of a file's bytes (a torn last line need not be UTF-8).
pub fn verify_bytes(bytes: &[u8], expected_head: Option<&str>) -> VerifyReport {
    let mut s = scan(bytes, expected_head);
    if let Some(t) = &s.torn {
        s.problems.push(format!(
            "line {}: a torn write: the last {} bytes do not form a record (a write cut short by a crash or a full disk); `oncall serve` keeps them aside and continues the chain at its next start",
            t.line, t.bytes
        ));
    }
    let recoveries = s
        .records
        .iter()
        .zip(&s.lines)
        .filter(|(r, _)| r.kind == RECOVERED)
        .map(|(r, line)| Recovery {
            line: *line,
            seq: r.seq,
            bytes: r.data["bytes"].as_u64().unwrap_or(0),
            sha256: r.data["sha256"].as_str().unwrap_or_default().to_string(),
            kept_in: r.data["kept_in"].as_str().unwrap_or_default().to_string(),
            also_kept: r.data["also_kept"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    VerifyReport {
        records: s.count,
        head: s.head,
        problems: s.problems,
        torn: s.torn,
        recoveries,
    }
}

/// Whether a log's bytes hold record `seq` with hash `hash` (`seq` 0: the empty log, always
/// held). A replica records its last record's sequence and hash in the shared store at each
/// heartbeat: a log that no longer holds it was cut back or rewritten.
pub fn holds(bytes: &[u8], seq: u64, hash: &str) -> bool {
    if seq == 0 {
        return true;
    }
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Record>(line).ok())
        .any(|r| r.seq == seq && r.hash == hash)
}

/// What [`scan`] read.
pub(super) struct Scan {
    /// Non-blank lines other than a torn last line.
    count: usize,
    pub(super) head: String,
    /// Problems, not counting a torn last line.
    pub(super) problems: Vec<String>,
    pub(super) torn: Option<TornTail>,
    pub(super) records: Vec<Record>,
    /// The line of each record.
    lines: Vec<usize>,
}

/// Reads a log's records and checks the chain; a last line that is not a record is reported as
/// torn, not as a problem.
pub(super) fn scan(bytes: &[u8], expected_head: Option<&str>) -> Scan {
    let mut spans = vec![];
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            spans.push((start, &bytes[start..i]));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        spans.push((start, &bytes[start..]));
    }
    let blank = |l: &[u8]| l.trim_ascii().is_empty();
    let last = spans.iter().rposition(|(_, l)| !blank(l));
    let mut records: Vec<Record> = vec![];
    let mut lines = vec![];
    let mut problems = vec![];
    let mut torn = None;
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1u64;
    let mut n = 0;
    for (i, (offset, line)) in spans.iter().enumerate() {
        let ln = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if blank(line) {
            continue;
        }
        let r: Record = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(_) if Some(i) == last => {
                torn = Some(TornTail {
                    line: ln,
                    offset: *offset,
                    bytes: bytes.len() - offset,
                    follows_seq: records.last().map_or(0, |r| r.seq),
                });
                continue;
            }
            Err(e) => {
                n += 1;
                problems.push(format!("line {ln}: not an audit record: {e}"));
                continue;
            }
        };
        n += 1;
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
        expected_seq = r.seq.saturating_add(1);
        records.push(r);
        lines.push(ln);
    }
    if let Some(h) = expected_head
        && h != prev
    {
        problems.push(format!(
            "the log ends at {} but the expected head is {h}: records were removed from the end",
            prev.get(..12).unwrap_or(&prev)
        ));
    }
    Scan {
        count: n,
        head: prev,
        problems,
        torn,
        records,
        lines,
    }
}
