//! oncall's own telemetry: log lines on stderr (text or JSON, through the redactor) and, when an
//! OTLP endpoint is set in the standard OpenTelemetry variables, oncall's own spans exported over
//! OTLP/HTTP: one `investigation` span per round (under `oncall serve`, inside an
//! `incident_round` span that names the incident and the round), a `model_call` per model turn
//! and a `tool_call` per tool, with the tool name, tokens and duration as attributes.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base; `/v1/traces` is appended) is set, and
//! `OTEL_SDK_DISABLED` is not `true`. `OTEL_EXPORTER_OTLP_HEADERS` carries the receiver's
//! credentials (`authorization=Bearer%20<token>`), `OTEL_SERVICE_NAME` names the service
//! (`oncall` by default). Only oncall's own spans are exported, never the HTTP client's (so an
//! export never traces itself), and span attributes carry names, ids and numbers, never tool
//! arguments or outputs.

use crate::config::{Config, LogFormat};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The variables that turn the export on.
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The provider, for [`flush`] at a forced exit (the guard's drop does not run then).
static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

/// Sends the spans still buffered, within a few seconds: for a process about to end without
/// returning from `main` (`oncall serve` after a stop it could not finish in time).
pub fn flush() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.force_flush()
    {
        eprintln!("warning: oncall's own traces: the last spans were not sent: {e}");
    }
}

/// Keeps the exporter alive; dropping it sends the spans still buffered (within a few seconds).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Where spans go, for the log: the endpoint, or none.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            eprintln!("warning: oncall's own traces: the last spans were not sent: {e}");
        }
    }
}

fn set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether the environment asks for the export.
pub fn export_wanted() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true");
    !disabled && ENDPOINT_VARS.iter().any(|v| set(v))
}

/// The span exporter's tracer provider, from the standard variables.
fn provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP exporter could not be built: {e}"))?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "oncall".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the log output (filtered by `log`, the `RUST_LOG` syntax) and, when asked for, the
/// span export. Call once, before the async runtime starts; keep the guard until exit.
pub fn init(config: &Config) -> Telemetry {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("warn"));
    // Log lines pass the same redactor as prompts, in either format.
    let fmt = tracing_subscriber::fmt::layer().with_writer(|| crate::redact::RedactingStderr);
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(filter);
    let (otel, provider, failed) = if export_wanted() {
        match provider() {
            Ok(p) => {
                let _ = PROVIDER.set(p.clone());
                // Spans only, and only oncall's: log events (which may quote a tool's
                // arguments or a model's reply) stay in the redacted log and never become span
                // events.
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(p.tracer("oncall"))
                    .with_filter(filter_fn(|m| {
                        m.is_span() && m.target().starts_with("oncall") && *m.level() <= Level::INFO
                    }));
                (Some(layer), Some(p), None)
            }
            Err(e) => (None, None, Some(e)),
        }
    } else {
        (None, None, None)
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(e) = failed {
        tracing::warn!("oncall's own traces are not exported: {e}");
    }
    Telemetry { provider }
}
