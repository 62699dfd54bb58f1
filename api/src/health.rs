//! `/livez` says the process runs; `/readyz` says it can do its work right now.

use std::time::Duration;

use async_nats::connection::State;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sqlx::PgPool;

/// What readiness depends on.
#[derive(Clone)]
pub struct Dependencies {
    pub nats: async_nats::Client,
    pub db: PgPool,
    /// The most the read models the API serves may lag (in seconds of the log) while
    /// the API counts as ready; `None` does not check them.
    pub max_projector_lag: Option<Duration>,
}

/// The read models the GraphQL API reads.
const SERVED_READ_MODELS: [&str; 5] = ["catalog", "inventory", "orders", "payments", "sales"];

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: no dependency checks, so a NATS or PostgreSQL outage never restarts us.
pub async fn livez() -> &'static str {
    "ok"
}

/// Readiness: NATS connected and PostgreSQL answering, each within a bound.
pub async fn readyz(AxumState(deps): AxumState<Dependencies>) -> (StatusCode, Json<Value>) {
    let nats = match deps.nats.connection_state() {
        State::Connected => Ok(()),
        // Spelled out, not taken from `Debug`: the reason is part of the `/readyz` body.
        State::Pending => Err("pending".to_owned()),
        State::Disconnected => Err("disconnected".to_owned()),
    };
    let postgres = match tokio::time::timeout(
        CHECK_TIMEOUT,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&deps.db),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    let projectors = match (deps.max_projector_lag, &nats, &postgres) {
        (Some(bound), Ok(()), Ok(())) => projectors_within(&deps, bound).await,
        (Some(_), _, _) => Err("not checked: NATS or PostgreSQL is down".to_owned()),
        (None, _, _) => Ok(()),
    };
    let ready = nats.is_ok() && postgres.is_ok() && projectors.is_ok();
    let describe = |check: &Result<(), String>| match check {
        Ok(()) => json!({ "ok": true }),
        Err(reason) => json!({ "ok": false, "reason": reason }),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !ready {
        tracing::warn!(?nats, ?postgres, ?projectors, "not ready");
    }
    (
        status,
        Json(json!({
            "ready": ready,
            "nats": describe(&nats),
            "postgres": describe(&postgres),
            "projectors": describe(&projectors),
        })),
    )
}

/// Whether every served read model is within `bound` of the log's newest commit.
async fn projectors_within(deps: &Dependencies, bound: Duration) -> Result<(), String> {
    let jetstream = async_nats::jetstream::new(deps.nats.clone());
    let mut behind = Vec::new();
    for name in SERVED_READ_MODELS {
        let Some(projection) = projections::registry::by_name(name) else {
            continue;
        };
        let status = tokio::time::timeout(
            CHECK_TIMEOUT,
            projections::status::projector_status(&deps.db, &jetstream, &*projection),
        )
        .await
        .map_err(|_| format!("{name}: status timed out"))?
        .map_err(|error| format!("{name}: {error}"))?;
        if status.lag_seconds > bound.as_secs_f64() {
            behind.push(format!("{name} is {:.1} s behind", status.lag_seconds));
        }
    }
    if behind.is_empty() {
        Ok(())
    } else {
        Err(behind.join(", "))
    }
}
