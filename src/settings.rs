//! Configuration from the environment (or flags), with defaults for a local run.
//!
//! A bad value stops start-up with clap's message, which names the variable.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

/// Everything a shopstream process needs to connect and serve.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// NATS server(s), comma-separated for a cluster.
    #[arg(
        long,
        env = "NATS_URL",
        value_name = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    /// PostgreSQL connection URL; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/shopstream"
    )]
    pub database_url: String,

    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(
        long,
        env = "HTTP_ADDR",
        value_name = "HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,

    /// Replicas of the events stream and buckets: 1 on one server, 3 on a cluster.
    #[arg(long, env = "NATS_REPLICAS", value_name = "NATS_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,

    /// Snapshot an aggregate after this many events (0 disables snapshots).
    #[arg(
        long,
        env = "SNAPSHOT_EVERY",
        value_name = "SNAPSHOT_EVERY",
        default_value_t = 100
    )]
    pub snapshot_every: usize,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
