//! Prometheus metrics: one recorder per process, rendered at `/metrics`.
//!
//! Labels are bounded by the schema, never by client input: GraphQL latency is recorded
//! per root field (`products`, `orderPlace`), not per operation name.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ServerResult, Value};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls reuse it) and returns
/// its handle; `None` when another recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                ])
                .ok()?
                // A saga takes as long as its payment provider: seconds, up to the phase
                // deadlines.
                .set_buckets_for_metric(
                    Matcher::Full("shopstream_saga_duration_seconds".to_owned()),
                    &[
                        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// `GET /metrics`.
pub async fn render() -> (axum::http::StatusCode, String) {
    match prometheus() {
        Some(handle) => (axum::http::StatusCode::OK, handle.render()),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n".to_owned(),
        ),
    }
}

/// Records latency and errors of every root field.
pub struct RootFieldMetrics;

impl ExtensionFactory for RootFieldMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RootFieldMetricsExtension)
    }
}

struct RootFieldMetricsExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for RootFieldMetricsExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() || info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        let field = info.name.to_owned();
        let parent = info.parent_type.to_owned();
        let started = Instant::now();
        let result = next.run(ctx, info).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!("shopstream_graphql_field_seconds", "type" => parent.clone(), "field" => field.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("shopstream_graphql_fields_total", "type" => parent, "field" => field, "outcome" => outcome)
            .increment(1);
        result
    }
}
