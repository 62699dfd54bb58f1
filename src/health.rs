//! A small HTTP endpoint for the roles that serve no API (`project`, `saga`): `/livez`
//! and `/metrics` on `HEALTH_ADDR`, for container healthchecks and Prometheus. Off unless
//! the address is set.

use std::net::SocketAddr;

use anyhow::Context;
use axum::routing::get;
use clap::Args;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::info;

/// Where a role without an API serves its health endpoint.
#[derive(Debug, Clone, Default, Args)]
pub struct HealthSettings {
    /// Serve `/livez` and `/metrics` on this address (unset: no HTTP listener).
    #[arg(long, env = "HEALTH_ADDR", value_name = "HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,
}

/// The running endpoint; it stops when dropped, after the role has stopped.
pub struct HealthServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Installs the metrics recorder and serves `/livez` and `/metrics` on `HEALTH_ADDR`, if
/// set. `/livez` checks no dependency, like the API's: it says the process and its
/// runtime answer, so an outage of NATS or PostgreSQL (which the role rides out by
/// reconnecting) never gets it restarted.
///
/// # Errors
/// When the address cannot be bound; the message names `HEALTH_ADDR`.
pub async fn serve(settings: &HealthSettings) -> anyhow::Result<Option<HealthServer>> {
    let Some(addr) = settings.health_addr else {
        return Ok(None);
    };
    // Installed before the role records anything, so every metric reaches `/metrics`.
    let _ = crate::telemetry::metrics::install();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding HEALTH_ADDR {addr}"))?;
    let addr = listener.local_addr().context("reading HEALTH_ADDR")?;
    let router = axum::Router::new()
        .route("/livez", get(livez))
        .route("/metrics", get(api::metrics::render));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the health endpoint stopped");
        }
    });
    info!(%addr, "serving /livez and /metrics");
    Ok(Some(HealthServer { addr, task }))
}

async fn livez() -> &'static str {
    "ok"
}
