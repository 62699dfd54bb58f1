//! Real servers for tests: a `nats-server -js` per test on a free port with its own store
//! directory, a three-node JetStream cluster on free loopback ports, a fresh PostgreSQL
//! database per test on the shared server, and a private PostgreSQL server for tests
//! that crash and restart it, and a signed-in `shopstream` command-line user. Nothing
//! here is a mock.
//!
//! The nats-server binary comes from `NATS_SERVER_BIN` (set by `scripts/env.sh` after
//! `scripts/install.sh`), else from `PATH`.

pub mod cli;
mod http;
mod nats;
mod nats_cluster;
mod postgres;
mod postgres_server;

pub use http::{http_get, http_post, HttpResponse};
pub use nats::{NatsServer, NatsServerOptions};
pub use nats_cluster::{NatsCluster, NatsClusterOptions};
pub use postgres::TestDatabase;
pub use postgres_server::PostgresServer;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
///
/// Read models and restarts are eventually consistent: tests wait with a bound, never
/// with a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
