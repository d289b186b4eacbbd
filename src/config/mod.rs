//! Layered settings: built-in defaults, then `oncall.toml`, then `ONCALL_*` environment variables.
//!
//! The file comes from `--config PATH`, else `ONCALL_CONFIG`, else `./oncall.toml` when it exists.
//! Environment variables use `__` between levels: `ONCALL_HOST__WINDOW_MS=500` sets
//! `[host] window_ms`. Every struct denies unknown fields, so a misspelt key is an error that names
//! it instead of a silently ignored setting. Other `ONCALL_*` names (secrets such as
//! `ONCALL_PG_PASSWORD` that a setting names) are not settings: see [`env`]. [`check`] explains
//! the effective settings with secrets masked. This module only reads settings; it never acts on
//! them.

pub mod check;
mod env;

pub use env::NotASetting;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What went wrong while loading settings. Each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {reason} (fix the path given by --config / ONCALL_CONFIG, or remove it to use the defaults)"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message and fields.
    Json,
}

/// All of oncall's settings. `Config::default()` is the embedded default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Log filter for stderr (`error`, `warn`, `info`, `debug`, or a tracing directive).
    pub log: String,
    /// Log lines as `text` (for people) or `json` (one object per line, for a log pipeline).
    pub log_format: LogFormat,
    /// How the host collectors sample.
    pub host: HostSettings,
    /// Where a signal stops being normal, and how sure the board must be.
    pub thresholds: Thresholds,
    /// The policy layer's settings.
    pub policy: PolicySettings,
    /// Which reasoner drives the investigation, and how oncall talks to a model.
    pub llm: LlmSettings,
    /// PostgreSQL databases to investigate, by name: `[postgres.<name>] url = "postgres://..."`.
    pub postgres: std::collections::BTreeMap<String, PgSettings>,
    /// The embedded span store that `oncall serve` fills from OTLP.
    pub traces: TraceSettings,
    /// `oncall serve`: where it listens and how it protects itself.
    pub server: ServerSettings,
    /// The change log (deploys, config, flags) that `changes.recent` reads.
    pub changes: ChangeSettings,
    /// Declarative actions (rollback, flag off, circuit open, ...).
    pub actions: ActionSettings,
    /// Slack: the slash command, app mentions and approval buttons.
    pub slack: SlackSettings,
    /// Incident memory: how resolved incidents are embedded and where they are searched.
    pub memory: MemorySettings,
    /// The fleet through Prometheus: with a URL, the fleet tools replace the host tools.
    pub prometheus: PrometheusSettings,
}

/// Prometheus: USE per instance from node-exporter metrics and RED per service from the team's
/// request metrics, over the incident window beside a baseline window before it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusSettings {
    /// Base URL, e.g. `http://prometheus:9090`. Empty: no fleet tools (this host is measured).
    pub url: String,
    /// Variable holding a bearer token for Prometheus (may be unset).
    pub bearer_token_env: String,
    /// Seconds one query may take (sent to Prometheus as `timeout` too).
    pub timeout_s: u64,
    /// The incident window in seconds, ending now.
    pub window_s: u64,
    /// The baseline window in seconds, ending where the incident window begins.
    pub baseline_s: u64,
    /// At most this many series per query (`topk`): a fleet of thousands answers in bounds.
    pub max_series: usize,
    /// The label naming an instance (node-exporter target).
    pub instance_label: String,
    /// The label naming a service in the request metrics.
    pub service_label: String,
    /// Counter of requests, with a status label.
    pub requests_metric: String,
    /// The status label of `requests_metric`.
    pub status_label: String,
    /// Regex of the status values that are errors.
    pub error_status: String,
    /// Histogram of request durations in seconds (its `_bucket` series are read).
    pub duration_metric: String,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        PrometheusSettings {
            url: String::new(),
            bearer_token_env: "PROMETHEUS_TOKEN".into(),
            timeout_s: 10,
            window_s: 300,
            baseline_s: 3600,
            max_series: 200,
            instance_label: "instance".into(),
            service_label: "job".into(),
            requests_metric: "http_requests_total".into(),
            status_label: "code".into(),
            error_status: "5..".into(),
            duration_metric: "http_request_duration_seconds".into(),
        }
    }
}

/// Which embedder turns an incident into a vector.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmbedderKind {
    /// Hashed word and character n-grams with TF-IDF weights: no network, no model download.
    #[default]
    Hashed,
    /// all-MiniLM-L6-v2 run locally by candle (cargo feature `minilm`; weights fetched by
    /// `scripts/fetch-minilm.sh`).
    Minilm,
    /// The OpenAI-compatible `/v1/embeddings` endpoint of `[llm]` (or `[memory] base_url`).
    Openai,
}

/// Where the vectors are kept and searched.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MemoryBackend {
    /// An exact in-process index, persisted in the incident store (the embedded default).
    #[default]
    Exact,
    /// A Qdrant server or cluster through qdrant-client (cargo feature `qdrant`).
    Qdrant,
}

/// Incident memory settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    pub embedder: EmbedderKind,
    pub backend: MemoryBackend,
    /// Dimensions of the hashed embedder (a power of two).
    pub hashed_dims: usize,
    /// Directory holding all-MiniLM-L6-v2's `model.safetensors`, `config.json` and `tokenizer.json`.
    pub minilm_dir: PathBuf,
    /// Embeddings endpoint base URL; empty: `[llm] base_url`.
    pub base_url: String,
    /// Embedding model for the `openai` embedder.
    pub model: String,
    /// Variable holding the embeddings API key; empty: `[llm] api_key_env`.
    pub api_key_env: String,
    /// Seconds one embeddings request may take.
    pub timeout_s: u64,
    /// Qdrant's gRPC URL, e.g. `http://127.0.0.1:6334`.
    pub qdrant_url: String,
    /// Variable holding Qdrant's API key (may be unset).
    pub qdrant_api_key_env: String,
    /// Qdrant collection; the embedder's name is appended (one collection per embedder).
    pub collection: String,
    /// Past incidents scoring below this cosine similarity are not shown as similar.
    pub min_score: f32,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            embedder: EmbedderKind::Hashed,
            backend: MemoryBackend::Exact,
            hashed_dims: 4096,
            minilm_dir: PathBuf::from("models/all-MiniLM-L6-v2"),
            base_url: String::new(),
            model: "text-embedding-3-small".into(),
            api_key_env: String::new(),
            timeout_s: 20,
            qdrant_url: "http://127.0.0.1:6334".into(),
            qdrant_api_key_env: "QDRANT_API_KEY".into(),
            collection: "oncall_incidents".into(),
            min_score: 0.2,
        }
    }
}

/// Slack settings. Slack is on when the signing secret's variable is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// Variable holding the app's signing secret (verifies every request from Slack).
    pub signing_secret_env: String,
    /// Variable holding the bot token (`xoxb-...`) used to post into threads.
    pub bot_token_env: String,
    /// The Web API base URL (tests point it at a local capture server).
    pub api_base: String,
    /// Slack user id -> oncall name, for the people who may press Approve. Nobody else can.
    pub approvers: std::collections::BTreeMap<String, String>,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            signing_secret_env: "SLACK_SIGNING_SECRET".into(),
            bot_token_env: "SLACK_BOT_TOKEN".into(),
            api_base: "https://slack.com/api".into(),
            approvers: Default::default(),
        }
    }
}

/// Where the declarative actions come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ActionSettings {
    /// A directory of action files (`*.toml` but `policy.toml`); none: the shipped ones.
    pub dir: Option<PathBuf>,
}

/// Where recent changes come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeSettings {
    /// A JSON Lines change log, one `{"at", "kind", "what", "service"}` per line; empty: none.
    pub file: Option<PathBuf>,
}

/// Span store settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSettings {
    /// Hard memory bound of the span store, bytes; the oldest spans are dropped first.
    pub max_bytes: u64,
    /// How long spans are kept, seconds.
    pub retention_s: u64,
    /// The incident window the traces tools look at by default, seconds (the baseline is the
    /// same length before it).
    pub window_s: u64,
    /// Where the traces tools read spans: `embedded` (the OTLP receiver's store), or the team's
    /// `tempo` or `jaeger` through its HTTP query API at `backend_url`.
    pub backend: TraceBackendKind,
    /// The backend's base URL, e.g. `http://tempo:3200` or `http://jaeger-query:16686`.
    pub backend_url: String,
    /// Variable holding a bearer token for the backend (may be unset).
    pub backend_token_env: String,
    /// Seconds one backend request may take.
    pub backend_timeout_s: u64,
    /// At most this many traces are fetched per question (the slowest and failing ones are
    /// what the tools look at).
    pub backend_max_traces: usize,
}

/// Where spans come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TraceBackendKind {
    #[default]
    Embedded,
    Tempo,
    Jaeger,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            max_bytes: 256 << 20,
            retention_s: 3600,
            window_s: 300,
            backend: TraceBackendKind::Embedded,
            backend_url: String::new(),
            backend_token_env: "TRACES_TOKEN".into(),
            backend_timeout_s: 10,
            backend_max_traces: 200,
        }
    }
}

/// Server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on (4318 is OTLP/HTTP's port).
    pub listen: String,
    /// Name of the environment variable holding the bearer token every request must carry.
    pub token_env: String,
    /// Largest request body accepted, bytes (after decompression too).
    pub max_body_bytes: usize,
    /// OTLP exports decoded at once; more get 503 with Retry-After.
    pub max_concurrent_exports: usize,
    /// Spans accepted per second; beyond it exports get 429 with Retry-After.
    pub max_spans_per_s: u64,
    /// Where the embedded incident store and audit log live.
    pub data_dir: PathBuf,
    /// The incident store: none means `sqlite:<data_dir>/oncall.db`; `postgres://...` lets several
    /// replicas share one PostgreSQL.
    pub database_url: Option<String>,
    /// Name of an environment variable holding the password of `database_url`'s role
    /// (optional; empty: the URL's own, if any).
    pub database_password_env: String,
    /// TLS to the store's database (`database_url`), as libpq's `sslmode`: `disable`, `prefer`,
    /// `require`, `verify-ca` or `verify-full` (see `[postgres.<name>] sslmode`). Unset: the
    /// URL's `?sslmode=`, else `prefer`.
    pub database_sslmode: Option<SslMode>,
    /// The CA certificate file (PEM) for `database_sslmode` `verify-ca` / `verify-full`. Unset:
    /// the URL's `?sslrootcert=`.
    pub database_sslrootcert: Option<PathBuf>,
    /// Connections the store may hold to its database at once (the pool's size).
    pub database_pool_max_size: usize,
    /// How long a store operation waits for a pooled connection before it fails, s.
    pub database_pool_wait_timeout_s: u64,
    /// Seconds to wait for a new connection to the store's database.
    pub database_connect_timeout_s: u64,
    /// This replica's name (default: the host name); it owns the investigations it runs.
    pub replica: Option<String>,
    /// A request taking longer is answered 503 (streams excepted).
    pub request_timeout_s: u64,
    /// Requests handled at once; beyond it new ones get 503 at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// Requests per second per caller (token or Slack team); beyond it 429 with Retry-After.
    pub requests_per_s: u64,
    /// Live event streams open at once; beyond it 503.
    pub max_streams: usize,
    /// Live event streams one caller (token) may have open at once; beyond it 429 naming the
    /// streams open. A closed stream or a dropped connection frees its slot.
    pub max_streams_per_user: usize,
    /// Investigations running at once; beyond it new incidents wait their turn.
    pub max_investigations: usize,
    /// Investigations one caller (token, or Slack user) may have running or waiting at once,
    /// whatever starts them (opening an incident, an alert, a message, resume, triage, record,
    /// Slack); beyond it 429 naming them. A finished round frees its slot.
    pub max_investigations_per_user: usize,
    /// Wrong bearer tokens one source address may present per `auth_failure_window_s`; beyond
    /// it every request from that address gets 429 with Retry-After until the window ends.
    pub max_auth_failures: u32,
    /// The window of `max_auth_failures`, seconds.
    pub auth_failure_window_s: u64,
    /// How long an approved action waits for the incident's previous action to be verified.
    pub action_wait_s: u64,
    /// A replica whose heartbeat in the shared store is older than this is dead: another
    /// replica marks its investigations interrupted and its executions in flight
    /// `outcome_unknown`. Each replica beats every fifth of it.
    pub replica_timeout_s: u64,
}

impl ServerSettings {
    /// The incident store's URL: `database_url`, else the SQLite file in `data_dir`.
    pub fn store_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("oncall.db").display()))
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:4318".into(),
            token_env: "ONCALL_TOKEN".into(),
            max_body_bytes: 8 << 20,
            max_concurrent_exports: 8,
            max_spans_per_s: 500_000,
            data_dir: PathBuf::from("oncall-data"),
            database_url: None,
            database_password_env: String::new(),
            database_sslmode: None,
            database_sslrootcert: None,
            database_pool_max_size: 8,
            database_pool_wait_timeout_s: 10,
            database_connect_timeout_s: 5,
            replica: None,
            request_timeout_s: 30,
            max_concurrent_requests: 1024,
            requests_per_s: 200,
            max_streams: 2000,
            max_streams_per_user: 16,
            max_investigations: 2,
            max_investigations_per_user: 3,
            max_auth_failures: 30,
            auth_failure_window_s: 60,
            action_wait_s: 600,
            replica_timeout_s: 15,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log: "warn".into(),
            log_format: LogFormat::Text,
            host: HostSettings::default(),
            thresholds: Thresholds::default(),
            policy: PolicySettings::default(),
            llm: LlmSettings::default(),
            postgres: Default::default(),
            traces: TraceSettings::default(),
            server: ServerSettings::default(),
            changes: ChangeSettings::default(),
            actions: ActionSettings::default(),
            slack: SlackSettings::default(),
            memory: MemorySettings::default(),
            prometheus: PrometheusSettings::default(),
        }
    }
}

/// Host collector settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostSettings {
    /// The one sampling window, in ms, over which every rate and utilization is measured (100-1000).
    pub window_ms: u64,
    /// How many processes to list by CPU, by memory and by open files.
    pub top_processes: usize,
    /// The /proc root to read (tests and replays may point it elsewhere).
    pub proc_root: PathBuf,
    /// How much longer (ms, 0-5000) the few processes whose memory grows are followed after the
    /// window, so that a steady leak is told from a burst and a low rate is measured over
    /// enough time. Only taken when some process grows; 0 turns it off.
    pub growth_extend_ms: u64,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            window_ms: 250,
            top_processes: 5,
            proc_root: PathBuf::from("/proc"),
            growth_extend_ms: 600,
        }
    }
}

/// Thresholds. Defaults follow published USE-method guidance (Brendan Gregg's USE checklist for
/// Linux: saturation is any run queue beyond the core count, any swapping, device utilization
/// above 60-70 %, any interface error), tuned so a busy-but-healthy machine is not a finding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Hypotheses below this confidence are not findings; when none is above it, oncall abstains.
    pub confidence: f64,
    /// A hypothesis is confirmed at or above this confidence (and only with cited evidence).
    pub confirm: f64,
    /// A hypothesis is rejected at or below this confidence (and only with evidence against it).
    pub reject: f64,
    pub cpu: CpuThresholds,
    pub memory: MemoryThresholds,
    pub disk: DiskThresholds,
    pub filesystem: FilesystemThresholds,
    pub network: NetworkThresholds,
    pub fd: FdThresholds,
    pub postgres: PgThresholds,
    pub traces: TraceThresholds,
    pub changes: ChangeThresholds,
}

/// When a change is a suspect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeThresholds {
    /// A change this many minutes or less before the investigation is a suspect for a regression
    /// found now; older changes are shown but not blamed.
    pub suspect_within_min: f64,
}

impl Default for ChangeThresholds {
    fn default() -> Self {
        ChangeThresholds {
            suspect_within_min: 60.0,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            confidence: 0.5,
            confirm: 0.7,
            reject: 0.15,
            cpu: CpuThresholds::default(),
            memory: MemoryThresholds::default(),
            disk: DiskThresholds::default(),
            filesystem: FilesystemThresholds::default(),
            network: NetworkThresholds::default(),
            fd: FdThresholds::default(),
            postgres: PgThresholds::default(),
            traces: TraceThresholds::default(),
            changes: ChangeThresholds::default(),
        }
    }
}

/// A warning and a critical level for one signal. Which side is bad depends on the signal.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub warn: f64,
    pub crit: f64,
}

const fn lvl(warn: f64, crit: f64) -> Level {
    Level { warn, crit }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CpuThresholds {
    /// Busy % of all cores over the window.
    pub utilization_pct: Level,
    /// Runnable threads per core, averaged over the window (procs_running / cores).
    pub run_queue_per_core: Level,
    /// Share of the window in which some task waited for a CPU (PSI cpu some), %.
    pub psi_some_pct: Level,
    /// Time stolen by the hypervisor, % of all CPU time.
    pub steal_pct: Level,
}

impl Default for CpuThresholds {
    fn default() -> Self {
        CpuThresholds {
            utilization_pct: lvl(90.0, 98.0),
            run_queue_per_core: lvl(1.5, 2.0),
            psi_some_pct: lvl(25.0, 50.0),
            steal_pct: lvl(10.0, 25.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryThresholds {
    /// Used share of memory (100 - MemAvailable %).
    pub used_pct: Level,
    /// Pages swapped in + out per second.
    pub swap_pages_per_s: Level,
    /// Major page faults per second.
    pub major_faults_per_s: Level,
    /// Share of the window in which some task stalled on memory (PSI memory some), %.
    pub psi_some_pct: Level,
    /// OOM kills during the window.
    pub oom_kills: Level,
    /// OOM kills the kernel log shows this many seconds back count as recent (read from
    /// /dev/kmsg, root only; only when the kernel's OOM counter is non-zero).
    pub oom_lookback_s: f64,
    /// A kill at most this many seconds old bears on the incident whatever the report says; an
    /// older one counts only with memory pressure now, the victim back and growing, or a report
    /// about memory or dying processes (else it is listed as a secondary finding).
    pub oom_recent_s: f64,
    /// A process whose RSS grows at least this fast (MiB/s) is a growth suspect...
    pub process_growth_mib_per_s: f64,
    /// ...if it also grew at least this much (MiB) over the whole look (the window and its
    /// extension, `host.growth_extend_ms`), steadily: a burst or a process starting up is not a leak.
    pub process_growth_min_mib: f64,
    /// Growth that would exhaust available memory within this many seconds is a finding (it
    /// leans towards memory pressure); slower growth is shown but stays below the threshold.
    pub exhaustion_horizon_s: f64,
}

impl Default for MemoryThresholds {
    fn default() -> Self {
        MemoryThresholds {
            used_pct: lvl(90.0, 95.0),
            swap_pages_per_s: lvl(100.0, 1000.0),
            major_faults_per_s: lvl(100.0, 1000.0),
            psi_some_pct: lvl(10.0, 30.0),
            oom_kills: lvl(1.0, 1.0),
            oom_lookback_s: 900.0,
            oom_recent_s: 120.0,
            process_growth_mib_per_s: 20.0,
            process_growth_min_mib: 16.0,
            exhaustion_horizon_s: 300.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskThresholds {
    /// Device busy % (io_ticks over the window).
    pub utilization_pct: Level,
    /// Average time per completed I/O, ms.
    pub await_ms: Level,
    /// Average number of requests in flight (aqu-sz).
    pub queue_depth: Level,
    /// Share of the window in which some task stalled on I/O (PSI io some), %.
    pub psi_some_pct: Level,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        DiskThresholds {
            utilization_pct: lvl(70.0, 90.0),
            await_ms: lvl(50.0, 200.0),
            queue_depth: lvl(4.0, 16.0),
            psi_some_pct: lvl(20.0, 50.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemThresholds {
    /// Used space, % of the space available to unprivileged users.
    pub used_pct: Level,
    /// Used inodes, %.
    pub inodes_pct: Level,
}

impl Default for FilesystemThresholds {
    fn default() -> Self {
        FilesystemThresholds {
            used_pct: lvl(90.0, 97.0),
            inodes_pct: lvl(90.0, 97.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkThresholds {
    /// Interface receive + transmit errors per second.
    pub errors_per_s: Level,
    /// Interface receive + transmit drops per second.
    pub drops_per_s: Level,
    /// TCP segments retransmitted, % of segments sent.
    pub retrans_pct: Level,
    /// Listen-queue overflows during the window.
    pub listen_overflows: Level,
    /// Per-socket view (inet_diag): segments retransmitted by the TCP connections to one peer
    /// `ip:port` (or accepted on one local service port), % of the data segments they sent, over
    /// the connections' lifetimes.
    pub socket_retrans_pct: Level,
    /// The fewest retransmitted segments such a group must show before it can be called lossy
    /// (a stray retransmit or two is never a finding).
    pub socket_min_retrans: u64,
    /// The fewest data segments such a group must have sent before its ratio is judged at all
    /// (fewer is "too few to judge").
    pub socket_min_segs: u64,
    /// Connection-tracking table use, % of `nf_conntrack_max`: when it is full the kernel drops
    /// new connections ("nf_conntrack: table full, dropping packet").
    pub conntrack_used_pct: Level,
    /// A listener's accept queue, % of its backlog: connections the program has not accepted
    /// yet; at 100 % the kernel drops new ones.
    pub accept_queue_pct: Level,
}

impl Default for NetworkThresholds {
    fn default() -> Self {
        NetworkThresholds {
            errors_per_s: lvl(1.0, 100.0),
            drops_per_s: lvl(10.0, 1000.0),
            retrans_pct: lvl(2.0, 10.0),
            listen_overflows: lvl(1.0, 100.0),
            socket_retrans_pct: lvl(5.0, 15.0),
            socket_min_retrans: 5,
            socket_min_segs: 20,
            conntrack_used_pct: lvl(80.0, 95.0),
            accept_queue_pct: lvl(80.0, 100.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FdThresholds {
    /// Open files of one process, % of its soft RLIMIT_NOFILE.
    pub process_used_pct: Level,
    /// Open files system-wide, % of fs.file-max.
    pub system_used_pct: Level,
}

impl Default for FdThresholds {
    fn default() -> Self {
        FdThresholds {
            process_used_pct: lvl(80.0, 95.0),
            system_used_pct: lvl(80.0, 95.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PgThresholds {
    /// Mean execution time of a statement in the incident window, ms.
    pub query_mean_ms: Level,
    /// Share of all statement time in the window taken by one statement, %.
    pub query_share_pct: f64,
    /// How long the longest waiter has waited on a lock, s.
    pub lock_wait_s: Level,
    /// How many sessions wait on locks at once (a queue behind one request grows fast).
    pub lock_waiters: Level,
    /// Age of a transaction left idle in transaction, s.
    pub idle_in_transaction_s: Level,
    /// Client connections, % of max_connections minus the reserved ones.
    pub connections_used_pct: Level,
}

impl Default for PgThresholds {
    fn default() -> Self {
        PgThresholds {
            query_mean_ms: lvl(50.0, 250.0),
            query_share_pct: 50.0,
            lock_wait_s: lvl(5.0, 30.0),
            lock_waiters: lvl(3.0, 10.0),
            idle_in_transaction_s: lvl(60.0, 300.0),
            connections_used_pct: lvl(80.0, 95.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceThresholds {
    /// A downstream holding this share (%) of the critical path of the slowest traces dominates it.
    pub critical_path_share_pct: Level,
    /// ...if it also takes at least this much self time per trace, ms.
    pub min_self_ms: f64,
    /// Error ratio of the entry service's operations (0 to 1).
    pub error_ratio: Level,
    /// Error spans needed before an error group counts.
    pub min_errors: u64,
}

impl Default for TraceThresholds {
    fn default() -> Self {
        TraceThresholds {
            critical_path_share_pct: lvl(50.0, 70.0),
            min_self_ms: 100.0,
            error_ratio: lvl(0.05, 0.2),
            min_errors: 3,
        }
    }
}

/// TLS to a PostgreSQL server, with libpq's names and meanings (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a root certificate is
    /// given: then as `verify-ca`, as libpq does).
    Require,
    /// TLS, and the server's certificate chain must lead to the root certificate.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses libpq's spelling (`allow` counts as `prefer`).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One PostgreSQL database. Use a read-only role (pg_monitor); see the README.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PgSettings {
    /// Connection URL of the read-only role, e.g. `postgres://oncall@db:5432/app`. Put the
    /// password in `password_env`, not here.
    pub url: String,
    /// Name of an environment variable holding the password (optional).
    pub password_env: String,
    /// URL of a role with pg_signal_backend, used only by the approved cancel/terminate actions.
    /// Empty: the actions use `url`. Nothing that reads (EXPLAIN ANALYZE included) uses it.
    pub action_url: String,
    /// Name of an environment variable holding the password of `action_url`'s role (optional;
    /// empty: `password_env`), so the two roles need not share a password.
    pub action_password_env: String,
    /// statement_timeout set on every oncall session, ms.
    pub statement_timeout_ms: u64,
    /// Seconds to wait for a connection.
    pub connect_timeout_s: u64,
    /// The incident window that postgres.top_queries measures deltas over, ms.
    pub window_ms: u64,
    /// TLS to this database, as libpq's `sslmode`: `disable`, `prefer` (TLS when the server
    /// offers it, no certificate check), `require` (TLS, no certificate check unless
    /// `sslrootcert` is set), `verify-ca` (the chain must lead to `sslrootcert`) or
    /// `verify-full` (the chain, and the certificate must name the host in the URL). Unset: the
    /// URL's `?sslmode=`, else `prefer`. Applies to `url` and `action_url`.
    pub sslmode: Option<SslMode>,
    /// The CA certificate file (PEM) that signed the server's certificate; needed by
    /// `verify-ca` and `verify-full`. Unset: the URL's `?sslrootcert=`.
    pub sslrootcert: Option<PathBuf>,
    /// Connections the tools may hold to this database at once (the pool's size). Parallel
    /// tools beyond it wait for one; when the database refuses new sessions (too many
    /// connections), they share the ones the pool already has.
    pub pool_max_size: usize,
    /// How long a tool waits for a pooled connection before it reports a timeout, s.
    pub pool_wait_timeout_s: u64,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            url: String::new(),
            password_env: String::new(),
            action_url: String::new(),
            action_password_env: String::new(),
            statement_timeout_ms: 5000,
            connect_timeout_s: 5,
            window_ms: 2000,
            sslmode: None,
            sslrootcert: None,
            pool_max_size: 4,
            pool_wait_timeout_s: 10,
        }
    }
}

/// Policy settings: the rules file, the environment, approvals, the audit log, redaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// How long an approval stays valid, in seconds.
    pub approval_ttl_s: u64,
    /// The environment the policy's rules are applied in (`production`, `staging`, ...).
    pub environment: String,
    /// The policy file; none: the shipped `tools/policy.toml` (compiled in).
    pub file: Option<PathBuf>,
    /// The append-only, hash-chained audit log; none: kept in memory for this run only.
    pub audit_file: Option<PathBuf>,
    /// Extra secrets to redact, each `{ kind = "ticket", pattern = "TCK-[0-9]+" }`.
    pub redact: Vec<CustomRedaction>,
}

pub use crate::redact::CustomRedaction;

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            approval_ttl_s: 900,
            environment: "production".into(),
            file: None,
            audit_file: None,
            redact: vec![],
        }
    }
}

/// Which model drives an investigation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// `openai` when `base_url` is set, else `offline`.
    Auto,
    /// The built-in reasoner: rules over the same tools, no network.
    Offline,
    /// Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server).
    Openai,
    /// Recorded model turns from `replay_file` (tests, eval).
    Replay,
}

/// How tool outputs reach the model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceMode {
    /// Compacted to the signals that matter, capped in tokens (the default).
    Compact,
    /// The unabridged output, still capped: the baseline that compact evidence is measured against.
    Raw,
}

/// Model settings. The API key is never stored here: `api_key_env` names the variable holding it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub provider: Provider,
    /// Base URL of the OpenAI-compatible API, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8080/v1` for llama.cpp's server.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable that holds the API key (may be unset for local servers).
    pub api_key_env: String,
    /// Extra HTTP headers sent with every request (e.g. an organization or a gateway key name).
    pub extra_headers: std::collections::BTreeMap<String, String>,
    /// Seconds one model request may take before it is abandoned and retried.
    pub timeout_s: u64,
    /// Seconds all attempts at one step may take together, retries and backoff included.
    pub deadline_s: u64,
    /// Attempts per step before the endpoint counts as unavailable.
    pub max_attempts: u32,
    /// Model turns with tools; after this the tools are withdrawn and the model must answer.
    pub max_steps: u32,
    /// Completion tokens the model may write per turn.
    pub max_completion_tokens: u32,
    /// The model's context window in tokens; evidence caps and history compaction scale with it.
    pub context_window: u32,
    /// tiktoken encoding (`o200k_base`, `cl100k_base`); empty: derived from `model`, else o200k_base.
    pub encoding: String,
    /// USD per million prompt tokens (0: cost not shown).
    pub price_prompt_per_mtok: f64,
    /// USD per million completion tokens.
    pub price_completion_per_mtok: f64,
    /// Directory with prompt templates; missing files fall back to the compiled-in copies.
    pub prompts_dir: std::path::PathBuf,
    /// Recorded turns for the replay provider.
    pub replay_file: std::path::PathBuf,
    pub evidence: EvidenceMode,
    pub temperature: f32,
    /// The request field for the completion limit: `max_tokens` (widest support: llama.cpp,
    /// vLLM, Ollama, older OpenAI models) or `max_completion_tokens` (OpenAI's reasoning models).
    pub max_tokens_field: String,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            provider: Provider::Auto,
            base_url: String::new(),
            model: "gpt-4o-mini".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            extra_headers: Default::default(),
            timeout_s: 60,
            deadline_s: 180,
            max_attempts: 3,
            max_steps: 8,
            max_completion_tokens: 1024,
            context_window: 128_000,
            encoding: String::new(),
            price_prompt_per_mtok: 0.0,
            price_completion_per_mtok: 0.0,
            prompts_dir: std::path::PathBuf::from("prompts"),
            replay_file: std::path::PathBuf::new(),
            evidence: EvidenceMode::Compact,
            temperature: 0.0,
            max_tokens_field: "max_tokens".into(),
        }
    }
}

impl LlmSettings {
    /// The provider after resolving `auto`.
    pub fn effective_provider(&self) -> Provider {
        match self.provider {
            Provider::Auto if self.base_url.trim().is_empty() => Provider::Offline,
            Provider::Auto => Provider::Openai,
            p => p,
        }
    }
}

/// Settings as loaded, with what `oncall config check` shows: where each value came from, and
/// the `ONCALL_*` variables that were not read as settings.
pub struct Loaded {
    pub config: Config,
    /// The settings file, when one was read.
    pub file: Option<PathBuf>,
    /// Every layer, for the provenance of each value.
    pub figment: Figment,
    /// `ONCALL_*` variables that are not settings (secrets named by a setting, ...).
    pub not_settings: Vec<NotASetting>,
}

impl Config {
    /// Loads settings: defaults, then the file (explicit path, `ONCALL_CONFIG`, or `./oncall.toml`),
    /// then `ONCALL_*` variables from the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Ok(Self::load_explained(explicit)?.config)
    }

    /// [`Config::load`], keeping the layers and the variables that were not settings.
    pub fn load_explained(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
        let from_env = std::env::var_os("ONCALL_CONFIG").map(PathBuf::from);
        let path = match (explicit, from_env) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) => Some(p),
            (None, None) => {
                let local = PathBuf::from("oncall.toml");
                local.exists().then_some(local)
            }
        };
        Self::load_from_explained(path.as_deref(), Env::prefixed(env::PREFIX))
    }

    /// Loads settings from an optional file and a given environment provider (tests pass their own).
    pub fn load_from(path: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        Ok(Self::load_from_explained(path, env)?.config)
    }

    fn load_from_explained(path: Option<&Path>, env: Env) -> Result<Loaded, ConfigError> {
        let defaults = Config::default();
        let mut figment = Figment::from(Serialized::defaults(&defaults));
        if let Some(path) = path {
            // Figment skips a missing file silently; a file the user named must exist.
            std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let default_tree = serde_json::to_value(&defaults).unwrap_or_default();
        let (env, not_settings) = env::settings_only(&figment, &default_tree, env);
        let figment = figment.merge(env.split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(one_line(&e.to_string())))?;
        config.validate()?;
        Ok(Loaded {
            config,
            file: path.map(Path::to_path_buf),
            figment,
            not_settings,
        })
    }

    /// Range checks that serde cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        let tr = &self.traces;
        if tr.backend != TraceBackendKind::Embedded
            && !(tr.backend_url.starts_with("http://") || tr.backend_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "traces.backend = {:?} needs traces.backend_url (http:// or https://), got {:?}",
                tr.backend, tr.backend_url
            )));
        }
        if !(1..=300).contains(&tr.backend_timeout_s)
            || !(1..=5000).contains(&tr.backend_max_traces)
        {
            return Err(ConfigError::Invalid(format!(
                "[traces] backend_timeout_s {} (1-300) or backend_max_traces {} (1-5000) is out of range",
                tr.backend_timeout_s, tr.backend_max_traces
            )));
        }
        let p = &self.prometheus;
        if !(p.url.is_empty() || p.url.starts_with("http://") || p.url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "prometheus.url = {:?} must start with http:// or https://",
                p.url
            )));
        }
        if !(1..=300).contains(&p.timeout_s)
            || !(30..=86_400).contains(&p.window_s)
            || !(60..=7 * 86_400).contains(&p.baseline_s)
            || !(1..=10_000).contains(&p.max_series)
        {
            return Err(ConfigError::Invalid(format!(
                "[prometheus] out of range: timeout_s {} (1-300), window_s {} (30-86400), baseline_s {} (60-604800), max_series {} (1-10000)",
                p.timeout_s, p.window_s, p.baseline_s, p.max_series
            )));
        }
        if let Err(e) = regex::Regex::new(&p.error_status) {
            return Err(ConfigError::Invalid(format!(
                "prometheus.error_status = {:?} is not a regex: {e}",
                p.error_status
            )));
        }
        let m = &self.memory;
        if !m.hashed_dims.is_power_of_two() || !(256..=65536).contains(&m.hashed_dims) {
            return Err(ConfigError::Invalid(format!(
                "memory.hashed_dims = {} must be a power of two from 256 to 65536",
                m.hashed_dims
            )));
        }
        if !(-1.0..=1.0).contains(&m.min_score) {
            return Err(ConfigError::Invalid(format!(
                "memory.min_score = {} is a cosine similarity: use -1 to 1",
                m.min_score
            )));
        }
        let t = &self.thresholds;
        if !(100..=1000).contains(&self.host.window_ms) {
            return Err(ConfigError::Invalid(format!(
                "host.window_ms = {} is out of range: use 100 to 1000 (one sampling window of at most 1 s)",
                self.host.window_ms
            )));
        }
        if self.host.growth_extend_ms > 5000 {
            return Err(ConfigError::Invalid(format!(
                "host.growth_extend_ms = {} is out of range: use 0 to 5000",
                self.host.growth_extend_ms
            )));
        }
        if !(1..=50).contains(&self.host.top_processes) {
            return Err(ConfigError::Invalid(format!(
                "host.top_processes = {} is out of range: use 1 to 50",
                self.host.top_processes
            )));
        }
        for (name, v) in [
            ("thresholds.confidence", t.confidence),
            ("thresholds.confirm", t.confirm),
            ("thresholds.reject", t.reject),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "{name} = {v} is out of range: use a number between 0 and 1"
                )));
            }
        }
        let l = &self.llm;
        if l.effective_provider() == Provider::Openai && l.base_url.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "llm.provider = \"openai\" needs llm.base_url, e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1".into(),
            ));
        }
        if l.effective_provider() == Provider::Replay && l.replay_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "llm.provider = \"replay\" needs llm.replay_file".into(),
            ));
        }
        if !["max_tokens", "max_completion_tokens"].contains(&l.max_tokens_field.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "llm.max_tokens_field = {:?}: use \"max_tokens\" or \"max_completion_tokens\"",
                l.max_tokens_field
            )));
        }
        if l.max_steps == 0 || l.max_attempts == 0 || l.timeout_s == 0 || l.context_window < 2048 {
            return Err(ConfigError::Invalid(
                "llm.max_steps, llm.max_attempts and llm.timeout_s must be at least 1, and llm.context_window at least 2048".into(),
            ));
        }
        for (name, pg) in &self.postgres {
            if pg.url.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "postgres.{name}.url is empty: set it to the read-only role's URL, e.g. postgres://oncall@db:5432/app"
                )));
            }
            if !(100..=30_000).contains(&pg.window_ms) {
                return Err(ConfigError::Invalid(format!(
                    "postgres.{name}.window_ms = {} is out of range: use 100 to 30000",
                    pg.window_ms
                )));
            }
            if !(1..=100).contains(&pg.pool_max_size)
                || !(1..=300).contains(&pg.pool_wait_timeout_s)
            {
                return Err(ConfigError::Invalid(format!(
                    "postgres.{name}: pool_max_size = {} (1-100) or pool_wait_timeout_s = {} (1-300) is out of range",
                    pg.pool_max_size, pg.pool_wait_timeout_s
                )));
            }
            for (field, url) in [("url", &pg.url), ("action_url", &pg.action_url)] {
                if !url.trim().is_empty() {
                    check_tls(
                        &format!("postgres.{name}.{field}"),
                        url,
                        pg.sslmode,
                        pg.sslrootcert.as_deref(),
                    )?;
                }
            }
        }
        let sv = &self.server;
        if let Some(url) = &sv.database_url
            && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            check_tls(
                "server.database_url",
                url,
                sv.database_sslmode,
                sv.database_sslrootcert.as_deref(),
            )?;
        }
        if !(1..=100).contains(&sv.database_pool_max_size)
            || !(1..=300).contains(&sv.database_pool_wait_timeout_s)
            || !(1..=300).contains(&sv.database_connect_timeout_s)
        {
            return Err(ConfigError::Invalid(format!(
                "[server] database_pool_max_size = {} (1-100), database_pool_wait_timeout_s = {} (1-300) or database_connect_timeout_s = {} (1-300) is out of range",
                sv.database_pool_max_size,
                sv.database_pool_wait_timeout_s,
                sv.database_connect_timeout_s
            )));
        }
        if !(5..=86_400).contains(&self.traces.window_s)
            || self.traces.retention_s < self.traces.window_s * 2
        {
            return Err(ConfigError::Invalid(format!(
                "traces.window_s = {} must be 5 to 86400, and traces.retention_s ({}) at least twice it (the baseline window)",
                self.traces.window_s, self.traces.retention_s
            )));
        }
        if t.reject >= t.confirm {
            return Err(ConfigError::Invalid(format!(
                "thresholds.reject ({}) must be below thresholds.confirm ({})",
                t.reject, t.confirm
            )));
        }
        Ok(())
    }
}

/// The TLS settings of one URL agree with the fields beside it: a mode known to libpq, and the
/// same mode and root certificate where both say one.
fn check_tls(
    what: &str,
    url: &str,
    mode: Option<SslMode>,
    rootcert: Option<&Path>,
) -> Result<(), ConfigError> {
    let (_, url_mode, url_root) = split_tls_params(url).map_err(ConfigError::Invalid)?;
    if let (Some(a), Some(b)) = (url_mode, mode)
        && a != b
    {
        return Err(ConfigError::Invalid(format!(
            "{what} says sslmode={a} but the setting beside it says sslmode = \"{b}\": keep one"
        )));
    }
    if let (Some(a), Some(b)) = (&url_root, rootcert)
        && a.as_path() != b
    {
        return Err(ConfigError::Invalid(format!(
            "{what} says sslrootcert={} but the setting beside it says {}: keep one",
            a.display(),
            b.display()
        )));
    }
    // A verify mode without a root certificate is refused when connecting (each setting may
    // come from its own layer: the file, then one variable at a time).
    Ok(())
}

/// Splits libpq's `sslmode` and `sslrootcert` off a `postgres://` URL's query (tokio-postgres
/// does not know `verify-ca` and `verify-full`): the URL without them, and their values.
pub fn split_tls_params(url: &str) -> Result<(String, Option<SslMode>, Option<PathBuf>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let (mut mode, mut root, mut rest) = (None, None, vec![]);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={v}"))
                .ok()
                .and_then(|mut x| x.pop())
                .map(|(_, v)| v)
                .unwrap_or_else(|| v.to_string())
        };
        match k {
            "sslmode" => {
                let v = decoded();
                mode = Some(SslMode::parse(&v).ok_or_else(|| {
                    format!(
                        "sslmode={v} is not one of disable, prefer, require, verify-ca, verify-full"
                    )
                })?);
            }
            "sslrootcert" => root = Some(PathBuf::from(decoded())),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, mode, root))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
        explained(jail, file).map(|l| l.config)
    }

    #[test]
    fn defaults_load_without_file_or_env() {
        Jail::expect_with(|jail| {
            assert_eq!(load_in_jail(jail, None).unwrap(), Config::default());
            Ok(())
        });
    }

    #[test]
    fn file_then_env_override_defaults() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST__TOP_PROCESSES", "7");
            let c = load_in_jail(
                jail,
                Some("[host]\nwindow_ms = 500\ntop_processes = 3\n[thresholds.cpu]\nsteal_pct = { warn = 5, crit = 20 }\n"),
            )
            .unwrap();
            assert_eq!(c.host.window_ms, 500);
            assert_eq!(c.host.top_processes, 7, "env wins over the file");
            assert_eq!(c.thresholds.cpu.steal_pct.warn, 5.0);
            assert_eq!(
                c.thresholds.cpu.utilization_pct,
                CpuThresholds::default().utilization_pct
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        Jail::expect_with(|jail| {
            let err = load_in_jail(jail, Some("[host]\nwindow_msec = 500\n")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("window_msec"), "{msg}");
            assert!(!msg.contains('\n'));
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST__WINDOWMS", "500");
            let msg = load_in_jail(jail, None).unwrap_err().to_string();
            assert!(msg.contains("windowms"), "{msg}");
            Ok(())
        });
    }

    fn explained(jail: &Jail, file: Option<&str>) -> Result<Loaded, ConfigError> {
        let path = file.map(|contents| {
            jail.create_file("oncall.toml", contents).unwrap();
            jail.directory().join("oncall.toml")
        });
        Config::load_from_explained(path.as_deref(), Env::prefixed("ONCALL_"))
    }

    #[test]
    fn secrets_under_the_prefix_are_not_settings() {
        Jail::expect_with(|jail| {
            // The README's example: a password variable inside the ONCALL_ namespace, and the
            // shipped actions' ${env:ONCALL_FLAGS_*} variables.
            jail.set_env("ONCALL_PG_PASSWORD", "hunter2");
            jail.set_env("ONCALL_FLAGS_TOKEN", "t0k3n");
            jail.set_env("ONCALL_TOKEN", "operator");
            jail.set_env("ONCALL_LOG", "debug");
            jail.set_env("ONCALL_POSTGRES__APP__SECRET", "with-sections");
            let l = explained(
                jail,
                Some("[postgres.app]\nurl = \"postgres://oncall@db/app\"\npassword_env = \"ONCALL_PG_PASSWORD\"\naction_password_env = \"oncall_postgres__app__secret\"\n"),
            )
            .unwrap();
            assert_eq!(l.config.log, "debug", "ONCALL_LOG is still a setting");
            let why = |n: &str| {
                l.not_settings
                    .iter()
                    .find(|x| x.name == n)
                    .map(|x| x.why.clone())
                    .unwrap_or_else(|| panic!("{n} not listed: {:?}", l.not_settings))
            };
            assert_eq!(
                why("ONCALL_PG_PASSWORD"),
                "named by postgres.app.password_env"
            );
            assert_eq!(
                why("ONCALL_POSTGRES__APP__SECRET"),
                "named by postgres.app.action_password_env"
            );
            assert_eq!(why("ONCALL_TOKEN"), "named by server.token_env");
            assert!(why("ONCALL_FLAGS_TOKEN").starts_with("not a setting"));
            assert!(l.not_settings.iter().all(|n| n.did_you_mean.is_none()));
            Ok(())
        });
    }

    #[test]
    fn one_underscore_short_of_a_setting_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST_WINDOW_MS", "500");
            let l = explained(jail, None).unwrap();
            assert_eq!(l.config.host.window_ms, HostSettings::default().window_ms);
            let n = &l.not_settings[0];
            assert_eq!(n.did_you_mean.as_deref(), Some("ONCALL_HOST__WINDOW_MS"));
            Ok(())
        });
    }

    #[test]
    fn check_shows_sources_and_masks_secrets() {
        Jail::expect_with(|jail| {
            jail.set_env("ONCALL_HOST__TOP_PROCESSES", "7");
            jail.set_env("ONCALL_PG_PASSWORD", "hunter2");
            let l = explained(
                jail,
                Some("[postgres.app]\nurl = \"postgres://oncall:inline-pw@db/app\"\npassword_env = \"ONCALL_PG_PASSWORD\"\n[llm.extra_headers]\nX-Gateway-Key = \"gw-secret-value\"\n"),
            )
            .unwrap();
            let r = check::explain(&l, &|n| n == "ONCALL_PG_PASSWORD");
            let get = |k: &str| r.settings.iter().find(|s| s.key == k).unwrap().clone();
            assert_eq!(
                get("host.top_processes").source,
                "env ONCALL_HOST__TOP_PROCESSES"
            );
            assert_eq!(get("host.window_ms").source, "default");
            assert!(
                get("postgres.app.url").source.starts_with("file "),
                "{:?}",
                get("postgres.app.url")
            );
            assert_eq!(
                get("postgres.app.url").value,
                "postgres://oncall:****@db/app"
            );
            assert_eq!(get("postgres.app.password_env").variable_set, Some(true));
            assert_eq!(get("llm.api_key_env").variable_set, Some(false));
            let text = check::render(&r);
            for secret in ["inline-pw", "hunter2", "gw-secret-value"] {
                assert!(!text.contains(secret), "{secret} leaked:\n{text}");
            }
            assert!(
                text.contains("ONCALL_PG_PASSWORD: named by postgres.app.password_env"),
                "{text}"
            );
            Ok(())
        });
    }

    #[test]
    fn wrong_type_names_key_and_type() {
        Jail::expect_with(|jail| {
            let msg = load_in_jail(jail, Some("[host]\nwindow_ms = \"fast\"\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("window_ms") && msg.contains("fast"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = Config::load_from(
            Some(Path::new("/nonexistent/oncall.toml")),
            Env::prefixed("ONCALL_"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/oncall.toml"));
    }

    #[test]
    fn libpq_tls_parameters_come_off_the_url_and_must_agree_with_the_settings() {
        let (url, mode, root) = split_tls_params(
            "postgres://u@db:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@db:5432/app?application_name=x");
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(root, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            split_tls_params("postgres://u@db/app?sslmode=verify-ca").unwrap(),
            ("postgres://u@db/app".into(), Some(SslMode::VerifyCa), None)
        );
        assert!(
            split_tls_params("postgres://u@db/app?sslmode=strict")
                .unwrap_err()
                .contains("sslmode=strict")
        );
        Jail::expect_with(|jail| {
            let msg = load_in_jail(
                jail,
                Some("[postgres.app]\nurl = \"postgres://u@db/app?sslmode=require\"\nsslmode = \"verify-full\"\nsslrootcert = \"/ca.pem\"\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(msg.contains("keep one"), "{msg}");
            let c = load_in_jail(
                jail,
                Some("[postgres.app]\nurl = \"postgres://u@db/app\"\nsslmode = \"verify-full\"\nsslrootcert = \"/ca.pem\"\n"),
            )
            .unwrap();
            assert_eq!(c.postgres["app"].sslmode, Some(SslMode::VerifyFull));
            Ok(())
        });
    }

    #[test]
    fn out_of_range_window_is_refused() {
        Jail::expect_with(|jail| {
            let msg = load_in_jail(jail, Some("[host]\nwindow_ms = 5000\n"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("host.window_ms") && msg.contains("100 to 1000"),
                "{msg}"
            );
            Ok(())
        });
    }
}
