//! Prometheus metrics: the process's recorder (the one the API renders at `/metrics`),
//! the description of every series shopstream emits (the roles that serve no API render
//! it on `HEALTH_ADDR`: see `crate::health`).
//!
//! Labels are bounded by the code: aggregate types, projector and consumer names, saga
//! phases and outcomes, GraphQL root fields and error codes; never ids or client input.

use std::sync::Once;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::PrometheusHandle;

/// Installs the process's recorder (once) and describes every series.
pub fn install() -> Option<PrometheusHandle> {
    static DESCRIBED: Once = Once::new();
    let handle = api::metrics::prometheus();
    if handle.is_some() {
        DESCRIBED.call_once(describe);
    }
    handle
}

fn describe() {
    // Commands and the event store (infra-nats).
    describe_histogram!(
        "shopstream_command_seconds",
        Unit::Seconds,
        "Commands through a CommandBus, by aggregate type and outcome (committed, duplicate, rejected, conflict, unavailable, corrupt), conflict retries included"
    );
    describe_counter!(
        "shopstream_command_conflicts_total",
        "Appends the server refused because the aggregate had moved on (each is retried on fresh state)"
    );
    describe_counter!(
        "shopstream_appends_total",
        "Commits appended to the EVENTS stream, by aggregate type"
    );
    describe_counter!(
        "shopstream_appended_events_total",
        "Events appended (a commit holds every event of one command), by aggregate type"
    );
    describe_histogram!(
        "shopstream_append_seconds",
        Unit::Seconds,
        "Publish to JetStream acknowledgement of one commit, by aggregate type"
    );
    // Projectors.
    describe_histogram!(
        "shopstream_projector_batch_seconds",
        Unit::Seconds,
        "One projector batch, from receipt to committed transaction (retries included)"
    );
    describe_counter!(
        "shopstream_projector_commits_total",
        "Commits a projector handled, by result (applied, skipped, parked)"
    );
    // Sampled from JetStream and PostgreSQL (`sampler`).
    describe_gauge!(
        "shopstream_consumer_lag_events",
        "Commits a consumer (projector or saga) has not finished, from its durable consumer"
    );
    describe_gauge!(
        "shopstream_consumer_lag_seconds",
        Unit::Seconds,
        "How far behind the log a consumer is in time (0 when caught up)"
    );
    describe_gauge!(
        "shopstream_dead_letters",
        "Commits parked in the dead-letter queue, by consumer"
    );
    describe_gauge!(
        "shopstream_dead_letters_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest parked commit, by consumer (0 when none)"
    );
    describe_gauge!(
        "shopstream_sagas",
        "Order sagas by phase (reserving, authorising, completing, completed, compensating, compensated, compensation_failed), from the sagas read model"
    );
    describe_gauge!(
        "shopstream_stream_last_position",
        "The EVENTS stream's last sequence (the global position)"
    );
    // The saga.
    describe_counter!(
        "shopstream_saga_outcomes_total",
        "Sagas brought to rest, by outcome (completed, compensated, compensation_failed)"
    );
    describe_histogram!(
        "shopstream_saga_duration_seconds",
        Unit::Seconds,
        "From an order's placement to its saga at rest, by outcome"
    );
    describe_histogram!(
        "shopstream_saga_phase_seconds",
        Unit::Seconds,
        "One saga phase's effects and their recording, by phase"
    );
    // The API.
    describe_histogram!(
        "shopstream_graphql_request_seconds",
        Unit::Seconds,
        "GraphQL requests over HTTP, by outcome (ok, error)"
    );
    describe_histogram!(
        "shopstream_graphql_field_seconds",
        Unit::Seconds,
        "GraphQL root fields (each query or mutation field), by parent type and field"
    );
    describe_counter!(
        "shopstream_graphql_fields_total",
        "GraphQL root fields resolved, by parent type, field and outcome"
    );
    describe_counter!(
        "shopstream_graphql_errors_total",
        "GraphQL errors returned, by extensions.code"
    );
}
