//! W3C trace context (`traceparent`, `tracestate`) on NATS messages.
//!
//! A commit carries the trace context of the span that appended it, in its message
//! headers (not in the envelope: the context says who was watching, not what happened,
//! so it stays out of the hash chain). Consumers continue the trace from it: the saga's
//! steps become children of the commit that triggered them, a projector's apply of a
//! commit a child of the commit.
//!
//! Without an OpenTelemetry layer in the process nothing is written or read: the current
//! span has no valid context, and a message without the header yields `None`.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::subjects::headers;

/// The trace context a message was published in (or a request was sent in), with its
/// correlation id.
#[derive(Debug, Clone)]
pub struct RemoteTrace {
    context: Context,
    span_context: SpanContext,
    correlation_id: Option<String>,
}

impl RemoteTrace {
    /// The context of the message's headers, if they carry a valid one.
    pub fn from_headers(map: Option<&HeaderMap>) -> Option<Self> {
        let map = map?;
        // Most messages of an untraced deployment have no header: skip the parser.
        map.get(headers::TRACEPARENT)?;
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(map));
        let correlation_id = map
            .get(headers::CORRELATION_ID)
            .map(|value| value.as_str().to_owned());
        Self::from_context(context, correlation_id)
    }

    /// The context in a request's `traceparent` and `tracestate` (HTTP headers have the
    /// same names), read through `get`.
    pub fn from_fields<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let fields: std::collections::HashMap<String, String> =
            [headers::TRACEPARENT, headers::TRACESTATE]
                .into_iter()
                .filter_map(|name| Some((name.to_owned(), get(name)?.to_owned())))
                .collect();
        fields.get(headers::TRACEPARENT)?;
        Self::from_context(TraceContextPropagator::new().extract(&fields), None)
    }

    fn from_context(context: Context, correlation_id: Option<String>) -> Option<Self> {
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then_some(Self {
            context,
            span_context,
            correlation_id,
        })
    }

    /// The correlation id the message carries, if any.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// Makes `span` a child of the span that published the message (only before `span`
    /// is first entered; a span without an OpenTelemetry layer ignores it).
    pub fn adopt(&self, span: &tracing::Span) {
        let _ = span.set_parent(self.context.clone());
    }

    /// Adds a link from `span` to the span that published the message.
    pub fn link(&self, span: &tracing::Span) {
        span.add_link(self.span_context().clone());
    }

    /// The publishing span's context: trace id, span id, flags.
    pub fn span_context(&self) -> &SpanContext {
        &self.span_context
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.span_context().trace_id().to_string()
    }
}

/// Writes the trace context of the current span into `map` (nothing when the span is not
/// part of an OpenTelemetry trace).
pub fn inject_current(map: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(map));
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_propagator_writes_the_headers_subjects_names() {
        let propagator = TraceContextPropagator::new();
        let fields: Vec<&str> = propagator.fields().collect();
        assert_eq!(fields, vec![headers::TRACEPARENT, headers::TRACESTATE]);
    }

    #[test]
    fn a_valid_traceparent_is_read_back() {
        let mut map = HeaderMap::new();
        map.insert(
            headers::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let trace = RemoteTrace::from_headers(Some(&map)).expect("a valid context");
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(trace.span_context().is_remote());
    }

    #[test]
    fn missing_or_malformed_context_is_none() {
        assert!(RemoteTrace::from_headers(None).is_none());
        assert!(RemoteTrace::from_headers(Some(&HeaderMap::new())).is_none());
        let mut map = HeaderMap::new();
        map.insert(headers::TRACEPARENT, "00-garbage");
        assert!(RemoteTrace::from_headers(Some(&map)).is_none());
    }

    #[test]
    fn outside_a_trace_nothing_is_injected() {
        let mut map = HeaderMap::new();
        inject_current(&mut map);
        assert!(map.get(headers::TRACEPARENT).is_none());
    }
}
