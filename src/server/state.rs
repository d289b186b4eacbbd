//! What every handler shares ([`AppState`]): the stores, the desk, the limits, the bus, and the
//! set of investigations running on this replica.

use super::{ApiError, ServerError, auth, bus, limits, metrics, replicas, runner, slack_bridge};
use crate::collectors::traces::store::SpanStore;
use crate::config::Config;
use crate::desk::Desk;
use crate::incidents::{EventKind, Store};
use crate::policy::audit::AuditLog;
use crate::registry::Registry;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Semaphore, watch};

/// A token bucket for spans per second.
pub(super) struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn take(&mut self, n: f64) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        // A batch larger than one second's worth passes when the bucket is full, so it is
        // slowed down, not refused forever.
        if self.tokens >= n || self.tokens >= self.rate {
            self.tokens = (self.tokens - n).max(-self.rate);
            true
        } else {
            false
        }
    }
}

/// The incidents with a round of investigation running here. Its lock's guard tells watchers
/// when the set changed (when dropped), so a caller's investigation slot is freed the moment
/// the round leaves the set, however it ended.
pub(crate) struct RunningSet {
    set: Mutex<HashSet<String>>,
    changed: watch::Sender<()>,
}

/// The locked set; dropping it wakes the watchers of [`RunningSet::subscribe`] (they read the
/// set once this guard has released it).
pub(crate) struct RunningGuard<'a> {
    set: std::sync::MutexGuard<'a, HashSet<String>>,
    changed: &'a watch::Sender<()>,
}

impl std::ops::Deref for RunningGuard<'_> {
    type Target = HashSet<String>;
    fn deref(&self) -> &HashSet<String> {
        &self.set
    }
}

impl std::ops::DerefMut for RunningGuard<'_> {
    fn deref_mut(&mut self) -> &mut HashSet<String> {
        &mut self.set
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.changed.send_replace(());
    }
}

impl RunningSet {
    pub(super) fn new() -> RunningSet {
        RunningSet {
            set: Mutex::new(HashSet::new()),
            changed: watch::channel(()).0,
        }
    }

    pub(crate) fn lock(&self) -> Result<RunningGuard<'_>, String> {
        let set = self
            .set
            .lock()
            .map_err(|_| "the set of running investigations is unavailable".to_string())?;
        Ok(RunningGuard {
            set,
            changed: &self.changed,
        })
    }

    pub(crate) fn contains(&self, incident: &str) -> bool {
        self.set
            .lock()
            .map(|s| s.contains(incident))
            .unwrap_or(false)
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// What every handler shares.
pub struct AppState {
    pub config: Arc<Config>,
    /// The embedded span store OTLP exports fill.
    pub spans: Arc<SpanStore>,
    pub registry: Registry,
    /// Incident memory (resolved incidents, searched by `memory.similar`); none if it could not
    /// be opened (the reason is logged at start).
    pub memory: Option<Arc<crate::memory::Memory>>,
    /// Incidents: the append-only event logs.
    pub store: Arc<dyn Store>,
    /// Action requests, decisions and executions (audited).
    pub desk: Arc<Desk>,
    pub audit: Arc<AuditLog>,
    pub metrics: Arc<metrics::Metrics>,
    /// This replica's name; it owns the investigations it runs.
    pub replica: String,
    /// Every event this replica stored, for its subscribers: the event streams and Slack.
    pub(super) bus: bus::Bus,
    /// Incidents with a round of investigation running here.
    pub(super) running: RunningSet,
    pub(super) investigations: Semaphore,
    pub(super) streams: Arc<Semaphore>,
    /// Open event streams per caller (`[server] max_streams_per_user`).
    pub(super) streams_per_caller: Arc<limits::PerCaller>,
    /// Investigations running or waiting per caller (`[server] max_investigations_per_user`).
    pub(super) investigations_per_caller: Arc<limits::PerCaller>,
    /// Wrong tokens per source address (`[server] max_auth_failures`).
    pub(super) auth_failures: auth::AuthFailures,
    pub(super) operator_sha: Option<String>,
    pub(super) token_cache: auth::TokenCache,
    pub(super) limiter: auth::Limiter,
    pub(super) slack: Option<Arc<slack_bridge::Bridge>>,
    pub(super) exports: Semaphore,
    pub(super) spans_per_s: Mutex<Bucket>,
}

impl AppState {
    /// Opens the incident store (running its migrations) and the audit log, loads tools and
    /// policy, and marks investigations this replica left unfinished as interrupted.
    /// `operator_token`, when given, is accepted as `admin` with the approver role.
    pub async fn start(
        config: Arc<Config>,
        operator_token: Option<&str>,
    ) -> Result<Arc<AppState>, ServerError> {
        let s = &config.server;
        let (store, store_pool) = crate::incidents::open_configured(s)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        let audit_path = config
            .policy
            .audit_file
            .clone()
            .unwrap_or_else(|| s.data_dir.join("audit.jsonl"));
        let audit =
            Arc::new(AuditLog::open(&audit_path).map_err(|e| ServerError::Setup(e.to_string()))?);
        let spans = Arc::new(SpanStore::new(
            config.traces.max_bytes as usize,
            config.traces.retention_s,
        ));
        let registry = crate::app::load_registry(config.clone(), Some(spans.clone()))
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        let mut registry = crate::app::with_toolsets(registry, &config).await;
        let memory = match crate::memory::Memory::open(&config, store.clone()).await {
            Ok(m) => {
                let m = Arc::new(m);
                tracing::info!(
                    "incident memory: {} remembered incident(s), {}",
                    m.len().await.unwrap_or(0),
                    m.describe()
                );
                registry = crate::app::with_memory(registry, m.clone());
                Some(m)
            }
            Err(e @ crate::memory::MemoryError::Config(_)) => {
                return Err(ServerError::Setup(e.to_string()));
            }
            Err(e) => {
                tracing::error!("incident memory is unavailable, serving without it: {e}");
                None
            }
        };
        let replica = replica_name(s);
        let desk = Arc::new(
            Desk::new(
                audit.clone(),
                chrono::Duration::seconds(config.policy.approval_ttl_s as i64),
            )
            .waiting(std::time::Duration::from_secs(s.action_wait_s))
            // A Slack user mapped to an oncall user is that person for every approval check.
            .with_identities(crate::policy::Identities::new(
                config
                    .slack
                    .approvers
                    .iter()
                    .map(|(user, name)| (format!("slack:{user}"), name.clone())),
            ))
            // Requests and their executions are claimed in the store every replica shares.
            .with_shared(Arc::new(replicas::StoreShared {
                store: store.clone(),
                replica: replica.clone(),
            })),
        );
        let pg_pools = registry.pg_pools();
        let rate = s.max_spans_per_s as f64;
        let slack = slack_bridge::Bridge::from_config(&config).map(Arc::new);
        let st = Arc::new(AppState {
            spans,
            registry,
            memory,
            store,
            desk,
            audit,
            metrics: Arc::new(metrics::Metrics::with_pools(
                store_pool.into_iter().chain(pg_pools).collect(),
            )),
            replica,
            bus: bus::Bus::new(1024),
            running: RunningSet::new(),
            investigations: Semaphore::new(s.max_investigations.max(1)),
            streams: Arc::new(Semaphore::new(s.max_streams.max(1))),
            streams_per_caller: limits::PerCaller::new(
                "event streams",
                "[server] max_streams_per_user",
                "close one to open another",
                s.max_streams_per_user,
            ),
            investigations_per_caller: limits::PerCaller::new(
                "investigations",
                "[server] max_investigations_per_user",
                "wait for one to finish",
                s.max_investigations_per_user,
            ),
            auth_failures: auth::AuthFailures::new(s.max_auth_failures, s.auth_failure_window_s),
            operator_sha: operator_token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(auth::token_sha),
            token_cache: auth::TokenCache::default(),
            limiter: auth::Limiter::new(s.requests_per_s),
            slack,
            exports: Semaphore::new(s.max_concurrent_exports.max(1)),
            spans_per_s: Mutex::new(Bucket {
                tokens: rate,
                rate,
                at: Instant::now(),
            }),
            config,
        });
        // Slack follows the incidents like any client of the bus, from before the first event.
        slack_bridge::follow(&st);
        // Requests from this replica's audit log that the store does not have yet (a log from
        // before the store kept them), then the store's word on every request.
        replicas::backfill(&st)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        replicas::sync(&st)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        let n = runner::mark_interrupted(&st)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        if n > 0 {
            tracing::warn!(
                "{n} investigation(s) were interrupted by the last stop; resume them from the incident"
            );
        }
        let unknown = runner::announce_unknown_outcomes(&st)
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        if unknown > 0 {
            tracing::warn!(
                "{unknown} action(s) may or may not have run before the last stop: verify them by hand (see their incidents)"
            );
        }
        if let Err(e) = replicas::beat(&st).await {
            tracing::warn!("replica heartbeat: {e}");
        }
        replicas::watch(st.clone());
        Ok(st)
    }

    /// Appends an event to an incident's log and wakes its streams. Returns once it is stored.
    pub async fn publish(
        &self,
        incident: &str,
        kind: EventKind,
        actor: &str,
        data: serde_json::Value,
    ) -> Result<crate::incidents::Event, crate::incidents::StoreError> {
        let mut data = data;
        crate::redact::redact_value(&mut data);
        let e = self.store.append(incident, kind, actor, data).await?;
        self.bus.event(incident, e.clone());
        Ok(e)
    }

    /// Remembers a resolved incident in incident memory, in the background: its report,
    /// confirmed cause, evidence and what fixed it, then a `remembered` event. Failures are
    /// logged and recorded as the event's error; the resolution itself has already succeeded.
    pub fn remember(self: &Arc<Self>, incident: &str) {
        let Some(memory) = self.memory.clone() else {
            return;
        };
        let (st, id) = (self.clone(), incident.to_string());
        tokio::spawn(async move {
            let done = async {
                let inc = st
                    .store
                    .incident(&id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no incident {id}"))?;
                let events = st
                    .store
                    .events(&id, 0, 100_000)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(doc) = crate::memory::Doc::from_events(&inc, &events) else {
                    return Ok(None);
                };
                let cause = doc.cause.clone();
                memory.remember(doc).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(Some(cause))
            }
            .await;
            let data = match done {
                Ok(None) => return,
                Ok(Some(cause)) => serde_json::json!({"cause": cause, "memory": memory.describe()}),
                Err(e) => {
                    tracing::error!(incident = %id, "could not remember the incident: {e}");
                    serde_json::json!({"error": e, "memory": memory.describe()})
                }
            };
            let _ = st.publish(&id, EventKind::Remembered, "oncall", data).await;
        });
    }

    /// Wakes the event streams of `incident` on this replica (after a write made elsewhere).
    pub(crate) fn wake(&self, incident: &str) {
        self.bus.changed(incident);
    }

    /// Sets an incident's status (a `status_changed` event) and wakes its streams.
    pub async fn set_status(
        &self,
        incident: &str,
        status: crate::incidents::Status,
        severity: Option<&str>,
    ) -> Result<(), crate::incidents::StoreError> {
        let owner =
            (status == crate::incidents::Status::Investigating).then_some(self.replica.as_str());
        self.store
            .set_status(incident, status, severity, owner)
            .await?;
        self.bus.changed(incident);
        Ok(())
    }

    /// A field's length check as the API answers it: a refusal is counted (by field, never
    /// copied) and becomes a 400 naming the field and the limit.
    pub(crate) fn check(&self, r: Result<(), limits::TooLong>) -> Result<(), ApiError> {
        r.map_err(|e| {
            let field = e
                .field
                .split(['[', '.', ' '])
                .next()
                .unwrap_or("")
                .to_string();
            self.metrics.count(
                &self.metrics.refusals,
                &[("reason", "too_long"), ("field", &field)],
            );
            ApiError::TooLong(e)
        })
    }

    /// A slot for one more investigation of `caller` (`what` names it to them when they are at
    /// their cap), or the 429 that names the cap and what they have running.
    pub(crate) fn investigation_slot(
        &self,
        caller: &str,
        what: &str,
    ) -> Result<limits::Slot, limits::OverCap> {
        self.investigations_per_caller
            .acquire(caller, what)
            .inspect_err(|_| {
                self.metrics.count(
                    &self.metrics.refusals,
                    &[("reason", "over_cap"), ("field", "investigations")],
                )
            })
    }

    /// How many investigations `caller` has running or waiting (their slots).
    pub fn investigations_of(&self, caller: &str) -> usize {
        self.investigations_per_caller.held(caller)
    }

    /// How many event streams `caller` has open.
    pub fn streams_of(&self, caller: &str) -> usize {
        self.streams_per_caller.held(caller)
    }
}

/// This replica's name: `[server] replica`, else the host's name.
pub fn replica_name(s: &crate::config::ServerSettings) -> String {
    s.replica
        .clone()
        .unwrap_or_else(|| sysinfo::System::host_name().unwrap_or_else(|_| "oncall".into()))
}

/// Starts a round of investigation of `incident` holding `slot` until the round ends (however it
/// ends). False, and the slot freed at once, when a round of it is already running.
pub(crate) fn start_round_holding(st: &Arc<AppState>, incident: &str, slot: limits::Slot) -> bool {
    // Watching before starting: the round cannot leave the set unseen.
    let mut changed = st.running.subscribe();
    if !runner::start_round(st, incident) {
        return false;
    }
    let (st, incident) = (st.clone(), incident.to_string());
    tokio::spawn(async move {
        let _slot = slot;
        while st.running.contains(&incident) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    });
    true
}
