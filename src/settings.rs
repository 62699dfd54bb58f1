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

    /// After SIGTERM, how long a role may take to finish in-flight work and drain NATS
    /// before it exits anyway (its unacknowledged messages are redelivered elsewhere).
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT_MS",
        value_name = "SHUTDOWN_TIMEOUT_MS",
        default_value_t = 20_000
    )]
    pub shutdown_timeout_ms: u64,

    /// The payment provider: one configuration for every role that calls it (the saga
    /// takes payments, the API gives refunds).
    #[command(flatten)]
    pub payments: PaymentSettings,
}

impl Settings {
    /// How long a role may take to stop after SIGTERM.
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// The settings of a test or benchmark run against its own servers: every default,
    /// an HTTP port picked by the system, and the given NATS and PostgreSQL.
    pub fn for_test(nats_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let mut settings = <Only as clap::Parser>::parse_from(["shopstream"]).settings;
        settings.nats_url = nats_url.into();
        settings.database_url = database_url.into();
        settings.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings
    }
}

/// How the payment provider behaves (today the simulator, whose behaviour is tuned here
/// for load tests and fault drills).
#[derive(Debug, Clone, Args)]
pub struct PaymentSettings {
    /// Simulated provider: latency added to every call.
    #[arg(long, env = "PAYMENT_LATENCY_MS", default_value_t = 0)]
    pub payment_latency_ms: u64,
    /// Simulated provider: how long `tok_hang` hangs.
    #[arg(long, env = "PAYMENT_HANG_MS", default_value_t = 30_000)]
    pub payment_hang_ms: u64,
    /// Simulated provider: share of payments declined at random (0.0 to 1.0).
    #[arg(long, env = "PAYMENT_FAILURE_RATE", default_value_t = 0.0)]
    pub payment_failure_rate: f64,
    /// Simulated provider: seed of the random declines.
    #[arg(long, env = "PAYMENT_SEED", default_value_t = 0)]
    pub payment_seed: u64,
}

impl PaymentSettings {
    /// The provider these settings describe.
    ///
    /// # Errors
    /// A failure rate outside 0 to 1.
    pub fn provider(&self) -> anyhow::Result<application::ProviderSettings> {
        if !(0.0..=1.0).contains(&self.payment_failure_rate) {
            anyhow::bail!(
                "PAYMENT_FAILURE_RATE must be between 0 and 1, not {}",
                self.payment_failure_rate
            );
        }
        Ok(application::ProviderSettings {
            simulator: application::payments::SimulatorConfig {
                latency: std::time::Duration::from_millis(self.payment_latency_ms),
                hang_for: std::time::Duration::from_millis(self.payment_hang_ms),
                failure_rate: self.payment_failure_rate,
                seed: self.payment_seed,
            },
        })
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How the API role serves GraphQL: tokens, limits, protection.
#[derive(Debug, Clone, Args)]
pub struct ApiSettings {
    /// `production` turns off introspection, field suggestions and GraphiQL, and
    /// requires `JWT_SECRET`; `development` allows all three and makes up a secret.
    #[arg(long, env = "API_MODE", default_value = "development")]
    pub api_mode: ApiMode,
    /// HS256 key of the access tokens, at least 32 bytes; the same on every replica.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The `iss` of access tokens.
    #[arg(long, env = "JWT_ISSUER", default_value = "shopstream")]
    pub jwt_issuer: String,
    /// The `aud` of access tokens.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "shopstream-api")]
    pub jwt_audience: String,
    /// How long an access token lives.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,
    /// How long a refresh token lives.
    #[arg(long, env = "REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,
    /// Deepest selection nesting a query may have.
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value_t = 12)]
    pub graphql_max_depth: usize,
    /// Most complexity points a query may cost.
    #[arg(long, env = "GRAPHQL_MAX_COMPLEXITY", default_value_t = 2_500)]
    pub graphql_max_complexity: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "GRAPHQL_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub graphql_max_body_bytes: usize,
    /// Browser origins allowed by CORS, comma-separated; `*` for any.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Requests per second per client IP (0 turns the limit off).
    #[arg(long, env = "RATE_LIMIT_IP_PER_SECOND", default_value_t = 200)]
    pub rate_limit_ip_per_second: u32,
    /// Burst per client IP.
    #[arg(long, env = "RATE_LIMIT_IP_BURST", default_value_t = 400)]
    pub rate_limit_ip_burst: u32,
    /// Requests per second per signed-in user (0 turns the limit off).
    #[arg(long, env = "RATE_LIMIT_USER_PER_SECOND", default_value_t = 50)]
    pub rate_limit_user_per_second: u32,
    /// Burst per signed-in user.
    #[arg(long, env = "RATE_LIMIT_USER_BURST", default_value_t = 100)]
    pub rate_limit_user_burst: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a proxy that sets it).
    #[arg(long, env = "TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// Connections of the API's read pool to PostgreSQL.
    #[arg(long, env = "API_PG_MAX_CONNECTIONS", default_value_t = 32)]
    pub api_pg_max_connections: u32,
    /// PostgreSQL statement timeout of the API's queries.
    #[arg(long, env = "PG_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub pg_statement_timeout_ms: u64,
    /// `/readyz` fails while a read model the API serves lags more than this.
    #[arg(long, env = "READYZ_MAX_PROJECTOR_LAG_SECS", default_value_t = 30)]
    pub readyz_max_projector_lag_secs: u64,
    /// Longest wait of a read for a read model to reach `X-Min-Position`.
    #[arg(long, env = "READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 5_000)]
    pub read_your_writes_timeout_ms: u64,
    /// Refuse `orderPlace` (`OVERLOADED`) while the order saga's oldest unfinished
    /// order commit is older than this; 0 admits every checkout.
    #[arg(long, env = "CHECKOUT_MAX_SAGA_LAG_MS", default_value_t = 3_000)]
    pub checkout_max_saga_lag_ms: u64,
}

/// Whether the API is tuned for developers or for the public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiMode {
    Development,
    Production,
}

impl ApiSettings {
    /// The settings from the environment and defaults alone (for tests and tools).
    pub fn from_env() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            api: ApiSettings,
        }
        <Only as clap::Parser>::parse_from(["shopstream"]).api
    }
}
