//! `/projections`: where every projector is, for operators and dashboards.

use async_nats::jetstream;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::Dependencies;

/// Position, lag (commits and seconds), parked commits and gaps of every projector, as
/// `shopstream projections status --json` prints them. 503 when NATS or PostgreSQL
/// cannot answer.
pub async fn projections(State(deps): State<Dependencies>) -> (StatusCode, Json<Value>) {
    let jetstream = jetstream::new(deps.nats.clone());
    let mut statuses = Vec::new();
    for projection in projections::registry::all() {
        match projections::status::projector_status(&deps.db, &jetstream, &*projection).await {
            Ok(status) => statuses.push(status),
            Err(error) => {
                tracing::warn!(
                    projection = projection.name(),
                    error = %infra_nats::ErrorChain(&error),
                    "projector status unavailable"
                );
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "error": error.to_string() })),
                );
            }
        }
    }
    (StatusCode::OK, Json(json!({ "projectors": statuses })))
}
