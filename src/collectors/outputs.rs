//! What the read-only tools publish: the types of their answers, as the model and the offline
//! reasoner read them back from the conversation (JSON), plus the two pure functions that read
//! those answers (the tables a statement names, a program's label). This is the only part of
//! the collectors the agent and the reasoner may use: they see tool outputs as data, never a
//! collector's sampling, sessions or parsers (tests/architecture.rs checks it).

pub use super::changes::{ChangeKind, ChangesAnswer, RecentChange};
pub use super::host::UseSnapshot;
pub use super::host::fd::FdUse;
pub use super::host::memory::OomKill;
pub use super::host::process::{
    BlockedTasks, IoUse, MemLimit, ProcessInfo, ProcessReport, ProgramGroup, label,
};
pub use super::host::signal::{ResourceReport, Signal, Status};
pub use super::host::sockets::{Direction, LossyPeer};
pub use super::postgres::activity::Activity;
pub use super::postgres::blocking::Blocking;
pub use super::postgres::connections::Connections;
pub use super::postgres::explain::PlanSummary;
pub use super::postgres::statements::{QueryDelta, TopQueries};
pub use super::postgres::tables::TableStat;
pub use super::postgres::{PgAnswer, PgProblem, ProblemKind, tables_in};
pub use super::prometheus::Severity;
pub use super::traces::analysis::CriticalPath;
pub use super::traces::{ErrorsAnswer, RedAnswer};
