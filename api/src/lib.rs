//! The HTTP face of shopstream: health and projector status, accounts and sessions,
//! rate limits, and the GraphQL API.
//!
//! A library: `router(..)` builds the axum router that the binary serves and tests call.
//! It holds no state of its own beyond handles to NATS and PostgreSQL and in-memory rate
//! limit counters, so any number of replicas can serve behind a load balancer (each
//! replica counts its own rate limits).
//!
//! - [`auth`]: accounts, argon2id passwords, JWT access tokens, rotating refresh tokens.
//! - [`limits`]: per-IP and per-user rate limits as an axum middleware.
//! - [`audit_log`]: who read which aggregate's history or state (`audit.access_log`).
//! - `migrations/`: the `accounts` and `audit` schemas, applied by
//!   [`migrate`]. Versions start at 1001 so they share `_sqlx_migrations` with the
//!   projections' migrations.

pub mod audit_log;
pub mod auth;
pub mod consistency;
pub mod graphql;
mod health;
pub mod limits;
pub mod metrics;
mod projectors;

pub use health::Dependencies;

use axum::routing::get;
use axum::Router;
use sqlx::migrate::Migrator;
use sqlx::PgPool;

/// The api crate's schemas (`accounts`, `audit`), embedded in the binary.
///
/// It shares `_sqlx_migrations` with `projections::MIGRATOR`, so each ignores the
/// versions the other applied (`ignore_missing`).
pub static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations")
};

/// Applies every pending migration of the api crate; safe to run concurrently from
/// several replicas (sqlx takes an advisory lock), before or after
/// `projections::migrate`.
///
/// # Errors
/// When a migration fails or a previously applied one was changed.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The router with every endpoint.
pub fn router(dependencies: Dependencies) -> Router {
    Router::new()
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/projections", get(projectors::projections))
        .route("/metrics", get(metrics::render))
        .with_state(dependencies)
}
