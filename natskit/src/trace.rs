//! Trace context across NATS: a send is one trace from the gateway that read it, through
//! JetStream, to the worker that stores it and every gateway that fans it out. The sender's
//! span context travels in the message's `traceparent` header (W3C Trace Context; JetStream
//! keeps headers and its republish copies them), and each hop continues it.
//!
//! Off unless the process exports traces ([`enable`], called once at start): until then
//! [`inject`] adds nothing and [`continue_from`] reads nothing, so the send path pays one
//! relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns propagation on (the process exports traces).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether trace context is carried.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Writes `span`'s context into `headers`.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut Headers(headers));
}

/// Makes `span` a child of the context in `headers`, if there is one.
pub fn continue_from(span: &tracing::Span, headers: Option<&HeaderMap>) {
    if !enabled() {
        return;
    }
    let Some(headers) = headers else { return };
    if headers.get("traceparent").is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeadersRef(headers));
    let _ = span.set_parent(cx);
}

struct Headers<'a>(&'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeadersRef<'a>(&'a HeaderMap);

impl Extractor for HeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}
