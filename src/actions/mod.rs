//! Live actions: tools that change a running system. All are `live_action` class, so the
//! registry runs them only with an approval bound to their exact arguments. Each action validates
//! its own arguments strictly and refuses targets that would harm the host itself, and each has a
//! dry run that shows exactly what it would do. [`declarative`] loads the ones a team adds as
//! TOML files (rollback, flag off, circuit open).

pub mod declarative;
pub mod postgres;
mod process;

pub use postgres::{CancelBackend, TerminateBackend};
pub use process::{
    IdentityError, ProcessIdentity, ProcessSignal, SignalArgs, SignalProcess, bind_identity,
    identify, own_threads, protected, verify,
};
