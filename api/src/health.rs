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
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: no dependency checks, so a NATS or PostgreSQL outage never restarts us.
pub async fn livez() -> &'static str {
    "ok"
}

/// Readiness: NATS connected and PostgreSQL answering, each within a bound.
pub async fn readyz(AxumState(deps): AxumState<Dependencies>) -> (StatusCode, Json<Value>) {
    let nats = match deps.nats.connection_state() {
        State::Connected => Ok(()),
        other => Err(format!("{other:?}").to_lowercase()),
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
    let ready = nats.is_ok() && postgres.is_ok();
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
        tracing::warn!(?nats, ?postgres, "not ready");
    }
    (
        status,
        Json(json!({ "ready": ready, "nats": describe(&nats), "postgres": describe(&postgres) })),
    )
}
