//! The HTTP face of shopstream: health and projector status now, the GraphQL API later.
//!
//! A library: `router(..)` builds the axum router that the binary serves and tests call.
//! It holds no state of its own beyond handles to NATS and PostgreSQL, so any number of
//! replicas can serve behind a load balancer.

mod health;
mod projectors;

pub use health::Dependencies;

use axum::routing::get;
use axum::Router;

/// The router with every endpoint.
pub fn router(dependencies: Dependencies) -> Router {
    Router::new()
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/projections", get(projectors::projections))
        .with_state(dependencies)
}
