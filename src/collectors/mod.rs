//! Collectors: read-only tools that measure a system and answer with compact evidence.
//!
//! Each collector says what it measured, in which unit, and whether that is normal; a signal it
//! cannot read is reported with the reason instead of failing the whole answer. Collectors never
//! change the system they look at.

pub mod changes;
pub mod host;
pub mod outputs;
pub mod postgres;
pub mod prometheus;
pub mod traces;
