//! Fuzz target: any bytes as an audit log. The reader (`verify_bytes`, `verify`) must not panic,
//! and `AuditLog::open` on a file holding them must either refuse it or leave a log that verifies
//! (a torn last line kept aside, the chain continued), never panic.
//!
//! The first byte picks how the rest is used: as the whole log, or as an edit (cut, overwrite,
//! insert at an offset taken from the next two bytes) of a valid six-record log, so the chain
//! checks and the torn-tail recovery are reached, not only the JSON parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncall::policy::audit::{AuditLog, verify, verify_bytes};
use std::path::PathBuf;
use std::sync::OnceLock;

/// A directory of this process's own for the log file (in memory where /dev/shm exists).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("oncall-fuzz-audit-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("fuzz dir");
        d
    })
}

/// A valid log of six records, as `AuditLog` writes it.
fn valid_log() -> &'static [u8] {
    static LOG: OnceLock<Vec<u8>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = AuditLog::in_memory();
        for i in 0..6 {
            let _ = log.append("request", serde_json::json!({"request": format!("r{i}")}));
        }
        let mut out = vec![];
        for r in log.records() {
            out.extend_from_slice(serde_json::to_string(&r).expect("a record").as_bytes());
            out.push(b'\n');
        }
        out
    })
}

/// The log to read: `input` itself or an edit of [`valid_log`].
fn log_from(input: &[u8]) -> Vec<u8> {
    let [mode, a, b, rest @ ..] = input else {
        return input.to_vec();
    };
    let valid = valid_log();
    let at = usize::from(u16::from_le_bytes([*a, *b])) % (valid.len() + 1);
    match mode % 4 {
        1 => [&valid[..at], rest].concat(),
        2 => {
            let mut v = valid.to_vec();
            for (i, x) in rest.iter().enumerate() {
                match v.get_mut(at + i) {
                    Some(slot) => *slot = *x,
                    None => v.push(*x),
                }
            }
            v
        }
        3 => [&valid[..at], rest, &valid[at..]].concat(),
        _ => input.to_vec(),
    }
}

fuzz_target!(|input: &[u8]| {
    let data = &log_from(input)[..];
    let r = verify_bytes(data, None);
    let _ = verify_bytes(data, Some(&r.head));
    let _ = verify_bytes(data, Some("é"));
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(verify(text, None), r);
    }

    let d = dir();
    for e in std::fs::read_dir(d).expect("fuzz dir").flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    let path = d.join("audit.jsonl");
    std::fs::write(&path, data).expect("write the log");
    if let Ok(log) = AuditLog::open(&path) {
        let after = std::fs::read(&path).expect("read the log");
        let v = verify_bytes(&after, Some(&log.head()));
        assert!(
            v.problems.is_empty(),
            "open left a broken log: {:?}",
            v.problems
        );
        if let Some(t) = r.torn {
            let rec = v.recoveries.last().expect("a recovered record");
            let kept = rec.check_kept(&path).expect("the kept copy");
            assert_eq!(
                std::fs::read(kept).expect("read the copy"),
                data[t.offset..]
            );
        }
    }
});
