//! Fuzz target: any bytes as an audit log. The reader (`verify_bytes`, `verify`) must not panic,
//! and `AuditLog::open` on a file holding them must either refuse it or leave a log that verifies
//! (a torn last line kept aside, the chain continued), never panic.
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

fuzz_target!(|data: &[u8]| {
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
