//! # oncall: a debugging copilot for the people on call
//!
//! oncall turns the incident protocol (Detect -> Triage -> Stabilize -> Diagnose -> Fix ->
//! Post-mortem) into software. The map of the crate, one line per module:
//!
//! - [`app`]: the composition root: builds the tools, the registry under the policy and the
//!   model from the configuration; nothing below it builds another module's parts.
//! - [`cli`]: the command line: its shape (clap) and one module per command; `src/main.rs`
//!   parses and dispatches.
//! - [`config`]: layered settings: built-in defaults -> `oncall.toml` -> `ONCALL_*` env;
//!   [`config::check`] explains the effective settings with secrets masked.
//! - [`taxonomy`]: the root-cause categories every hypothesis and eval case uses.
//! - [`redact`]: secrets out of everything that reaches a model, a log or an event.
//! - [`tool`]: the Tool contract (`area.verb`, schemars-typed args, risk class, evidence output).
//! - [`registry`]: the one ordered list of tools it is given, and the only door to call them: it
//!   refuses unapproved risky calls.
//! - [`collectors`]: read-only tools; [`collectors::host`] measures this host by the USE method in
//!   one sampling window (CPU, memory, disks, filesystems, network, fds, processes, PSI), with
//!   processes grouped per program as operators name them ([`collectors::host::identity`]) and
//!   TCP connections judged per socket ([`collectors::host::sockets`]);
//!   [`collectors::postgres`] reads a database's own views (statement deltas, activity, the
//!   blocking tree, connections, table stats, plans); [`collectors::traces`] keeps OTLP spans in a
//!   bounded store (or reads the team's Tempo or Jaeger) and answers RED, slowest traces,
//!   critical paths and error groups; [`collectors::prometheus`] measures the fleet: USE per
//!   instance and RED per service through Prometheus, ranked by deviation from a baseline.
//!   [`collectors::outputs`] is what they publish: the only part the agent and the reasoner read.
//! - [`toolsets`]: tools from outside oncall: the tools of external MCP servers
//!   (`[[mcp.servers]]`), under the same policy, redaction and token budget as oncall's own.
//! - [`pg`]: PostgreSQL sessions for the collectors, actions and the store: libpq's `sslmode`
//!   and `sslrootcert` through rustls, session settings, pools (deadpool-postgres) and their
//!   numbers.
//! - [`actions`]: live actions (`host.signal_process`, `postgres.cancel_backend`,
//!   `postgres.terminate_backend`), runnable only with an approval.
//! - [`policy`]: roles, the policy rules, action requests, the approvals bound to exact
//!   arguments, and the hash-chained audit log.
//! - [`desk`]: the approval desk: requests filed, decided by a human, executed at most once
//!   (write-ahead record first), shared between replicas through the store.
//! - [`llm`]: model transport only: the `ChatModel` interface, any OpenAI-compatible endpoint
//!   (tool calls written as text read as calls), recorded turns; tokens, cost and latency
//!   accounting, and the one retry policy.
//! - [`reasoner`]: the built-in offline reasoner, a peer of the model behind the same
//!   `ChatModel` trait (rules over the same tools' outputs); [`reasoner::investigate`] runs an
//!   investigation with it standing by.
//! - [`agent`]: the investigation, the hypothesis [`agent::board`] (confidence moves only with
//!   cited evidence), triage, next steps and the text rendering of the debug log.
//! - [`eval`]: replayable incident cases (`oncall-case/1`): record, replay, score.
//! - [`incidents`]: the incident store: each incident an append-only event log, in SQLite (WAL,
//!   the embedded default) or PostgreSQL (replicas sharing one database).
//! - [`postmortem`]: the post-mortem draft, built from an incident's own log.
//! - [`memory`]: incident memory: resolved incidents embedded (hashed TF-IDF by default) and
//!   kept with the incident store; `memory.similar` finds the past incidents like this one.
//! - [`ops`]: operating it: `oncall backup` (a consistent online copy of the store and the
//!   audit log, with a manifest) and `oncall restore` (into a stopped, empty data directory).
//! - [`server`]: `oncall serve`: bearer tokens with roles, the incident API with live events
//!   (SSE), approvals that run an action once and record its effect, Slack and the web page as
//!   subscribers of the incident event bus, metrics, OTLP/HTTP trace ingest into the span store,
//!   and the OpenAPI document generated from the handlers (browsable at `/api/v1/docs`).
//! - [`telemetry`]: oncall's own log lines (redacted) and, when the standard `OTEL_EXPORTER_OTLP_*`
//!   variables name a receiver, its own spans (investigation, model call, tool call) over OTLP.
//!
//! ## The flow of one investigation
//!
//! ```text
//! report ──> agent::triage::read_report (impact, suspects, versions)
//!        ──> loop: ChatModel (offline | openai | replay) asks for tools
//!              ──> registry::Registry::call(...)  e.g. host.use_snapshot, postgres.*, traces.*
//!                  (ids c1, c2, ...; outputs redacted, compacted, capped, fenced as data)
//!              ──> board.propose / board.evidence (citing call ids) / board.conclude
//!        ──> agent::board decides status and rank from cited evidence
//!        ──> triage (severity, scope, blast radius), stabilize proposals, next steps
//!        ──> agent::render::text  |  --json  |  POST /api/v1/triage
//!
//! under `oncall serve`, each step above is also an incident event (an incidents::EventKind):
//!   server::runner ──> incidents::Store::append ──> server::bus ──> subscribers:
//!                      sse (the web page, API clients) · slack_bridge (the incident's thread)
//!   spans: investigation ──> model_call, tool_call (exported over OTLP by telemetry)
//!   stabilizing proposals ──> desk request ──> a human approves (API, web, Slack)
//!                         ──> desk executes once ──> effect measured ──> events + audit log
//! ```
//!
//! Nothing in this flow can run a live action: the registry demands an
//! [`policy::Approval`], and only a human approver can make one.

pub mod actions;
pub mod agent;
pub mod app;
pub mod cli;
pub mod collectors;
pub mod config;
pub mod desk;
pub mod eval;
pub mod incidents;
pub mod llm;
pub mod memory;
pub mod ops;
pub mod pg;
pub mod policy;
pub mod postmortem;
pub mod reasoner;
pub mod redact;
pub mod registry;
pub mod server;
pub mod taxonomy;
pub mod telemetry;
pub mod tool;
pub mod toolsets;
