//! What a process writes about itself: the log on stderr (text or JSON lines, filtered by
//! `RUST_LOG`) and, with `[trace] otlp_endpoint`, OpenTelemetry traces exported over
//! OTLP/HTTP (JSON) in batches from a background thread. A send is one trace: `send` on the
//! gateway that read it (until its ack), `store` on the worker that stored it, `fanout` on
//! each gateway that delivered it, joined by the `traceparent` header the message carries
//! through NATS (`natskit::trace`).

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TraceConfig};

/// The running telemetry: dropping it flushes the spans not yet exported.
#[derive(Debug)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("traces: the last spans were not all exported: {e}");
            }
        }
    }
}

/// Starts the log (filtered by `RUST_LOG`, else `default_filter`) and, when configured, the
/// trace export.
pub fn init(
    default_filter: &str,
    format: LogFormat,
    trace: &TraceConfig,
) -> Result<Telemetry, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let provider = match &trace.otlp_endpoint {
        Some(url) => Some(provider(url, trace)?),
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("chatmesh")));
    let base = tracing_subscriber::registry().with(filter).with(otel);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        // Colour only for a person at a terminal: log files and collectors get plain text.
        LogFormat::Text => base
            .with(logs.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        // One object per line, the event's fields at its top level beside timestamp, level
        // and target; `span` is the innermost span, `spans` every span it is in.
        LogFormat::Json => base
            .with(
                logs.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(true),
            )
            .init(),
    }
    if provider.is_some() {
        natskit::trace::enable();
    }
    Ok(Telemetry { traces: provider })
}

fn provider(url: &str, trace: &TraceConfig) -> Result<SdkTracerProvider, String> {
    // reqwest's rustls has no provider of its own here: ring, as everywhere in chatmesh.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(url)
        .build()
        .map_err(|e| format!("trace.otlp_endpoint {url:?}: {e}"))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(trace.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(trace.service_name.clone())
                .build(),
        )
        .build())
}
