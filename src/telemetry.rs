//! What a shopstream process tells its operators: logs (text or JSON lines), traces
//! (OpenTelemetry, exported over OTLP only when configured) and metrics (Prometheus, see
//! `metrics` and `sampler`).
//!
//! Traces are on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not `true`.
//! Otherwise no OpenTelemetry layer is installed: spans are plain `tracing` spans, no
//! trace context is written to NATS headers, and nothing is exported.

pub mod json;
pub mod metrics;
pub mod sampler;

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::LogFormat;

/// The process's tracer provider, flushed on [`Telemetry::shutdown`].
#[must_use = "call `shutdown` before exiting, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces_exported(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("exporting the last spans failed: {error}");
            }
        }
    }
}

/// Whether OTLP export is configured in the environment.
pub fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the process's logging (and, when configured, tracing) subscriber. `role`
/// names the service in traces (`shopstream-<role>`) unless `OTEL_SERVICE_NAME` is set.
///
/// # Errors
/// When the OTLP exporter cannot be built from its environment variables.
pub fn init(format: LogFormat, role: &str) -> anyhow::Result<Telemetry> {
    let provider = if otlp_configured() {
        Some(otlp_provider(role)?)
    } else {
        None
    };
    let tracer = provider
        .as_ref()
        .map(|provider| provider.tracer("shopstream"));
    // Only fails when a subscriber is already installed (a test harness): keep that one.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = subscriber(format, filter, tracer, std::io::stderr).try_init();
    Ok(Telemetry { provider })
}

fn otlp_provider(role: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("building the OTLP span exporter (OTEL_EXPORTER_OTLP_* variables)")?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(format!("shopstream-{role}"));
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The subscriber every process uses: `filter` (from `RUST_LOG`), the OpenTelemetry layer
/// when `tracer` is given, and logs in `format` to `writer`. Tests pass their own tracer
/// (with an in-memory exporter) and writer.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    tracer: Option<SdkTracer>,
    writer: W,
) -> impl Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let otel = tracer.map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    let dispatch = Arc::new(OnceLock::new());
    let (text, json) = match format {
        LogFormat::Text => (
            Some(tracing_subscriber::fmt::layer().with_writer(writer)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(json::JsonLines::new(Arc::clone(&dispatch)))
                    .with_writer(writer),
            ),
        ),
    };
    // The OpenTelemetry layer comes first, so that a span's trace context exists when a
    // log line inside it is written.
    Registry::default()
        .with(filter)
        .with(otel)
        .with(DispatchHandle(dispatch))
        .with(text)
        .with(json)
}

/// Hands the JSON formatter the dispatcher it runs in, through which it asks the
/// OpenTelemetry layer for a span's trace id.
struct DispatchHandle(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> Layer<S> for DispatchHandle {
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.0.set(dispatch.downgrade());
    }
}
