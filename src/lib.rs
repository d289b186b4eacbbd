//! # oncall: a debugging copilot for the people on call
//!
//! oncall turns the incident protocol (Detect -> Triage -> Stabilize -> Diagnose -> Fix ->
//! Post-mortem) into software. The map of the crate, one line per module:
//!
//! - [`config`]: layered settings: built-in defaults -> `oncall.toml` -> `ONCALL_*` env.
//! - [`taxonomy`]: the root-cause categories every hypothesis and eval case uses.
//! - [`tool`]: the Tool contract (`area.verb`, schemars-typed args, risk class, evidence output)
//!   and the one ordered [`tool::Registry`], which refuses unapproved risky calls.
//! - [`collectors`]: read-only tools; [`collectors::host`] measures this host by the USE method in
//!   one sampling window (CPU, memory, disks, filesystems, network, fds, processes, PSI).
//! - [`actions`]: live actions (`host.signal_process`), runnable only with an approval.
//! - [`policy`]: roles, action requests and the approvals bound to exact arguments.
//! - [`llm`]: reasoners; today the built-in [`llm::offline`] USE-method rules.
//! - [`agent`]: the investigation, the hypothesis [`agent::board`] (confidence moves only with
//!   cited evidence), triage, next steps and the text rendering of the debug log.
//! - [`server`]: `oncall serve`: OTLP/HTTP trace ingest into the span store, triage over HTTP.
//!
//! ## The flow of one investigation
//!
//! ```text
//! report ──> agent::triage::read_report (impact, suspects, versions)
//!        ──> tool::Registry::call("host.use_snapshot")      # id c1, recorded
//!        ──> llm::offline::host::judge per category          # verdicts citing c1
//!        ──> agent::board (propose, cite; board decides status and rank)
//!        ──> triage (severity, scope, blast radius), stabilize proposals, next steps
//!        ──> agent::render::text  |  --json
//! ```
//!
//! Nothing in this flow can run a live action: the registry demands an
//! [`policy::Approval`], and only a human approver can make one.

pub mod actions;
pub mod agent;
pub mod collectors;
pub mod config;
pub mod llm;
pub mod policy;
pub mod server;
pub mod taxonomy;
pub mod tool;
