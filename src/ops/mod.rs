//! Operating oncall: what an operator runs beside `oncall serve`, never on a request path.
//!
//! - [`backup`]: `oncall backup --to DIR` takes a consistent online copy of the data directory
//!   (the SQLite incident store and the hash-chained audit log, with a manifest), and
//!   `oncall restore --from DIR` puts it back into a stopped, empty data directory.
//!
//! This module reads the store and the audit log through their own files and formats; it must
//! never change a live data directory (restore refuses one that a running oncall holds).

pub mod backup;
