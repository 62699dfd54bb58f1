//! The `shopstream` binary's library half: settings and the wiring of every crate
//! (the composition root). `main.rs` only parses the command line and calls in here,
//! so tests start the same application as production.
//!
//! Every subcommand is a type in the module that holds its functions, implementing
//! [`cli::CliCommand`]; one invocation shares one [`Connections`].

pub mod api_role;
pub mod auditing;
pub mod cli;
pub mod cli_auth;
pub mod health;
pub mod projecting;
pub mod replaying;
pub mod saga_role;
pub mod settings;
pub mod streams;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use infra_nats::StreamSettings;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tracing::info;

use cli::CliCommand;
use cli_auth::Caller;

pub use settings::{ApiMode, ApiSettings, LogFormat, PaymentSettings, Settings};

/// A built application: connected, provisioned, migrated and bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    nats: async_nats::Client,
}

impl Application {
    /// Connects to NATS (refusing servers that are too old or lack JetStream), provisions
    /// the stream and buckets, migrates PostgreSQL, builds the GraphQL API and binds the
    /// HTTP listener.
    ///
    /// # Errors
    /// Names the dependency or setting that failed.
    pub async fn build(settings: &Settings, api_settings: &ApiSettings) -> anyhow::Result<Self> {
        // Installed before anything records, so every metric reaches `/metrics`.
        let _ = telemetry::metrics::install();
        let nats = connect_nats(settings).await?;
        let db = connect_database(&settings.database_url).await?;
        migrate_all(&db).await?;
        let graphql = api_role::graphql_router(settings, api_settings, &nats, &db).await?;
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("binding HTTP_ADDR {}", settings.http_addr))?;
        let router = api::router(api::Dependencies {
            nats: nats.clone(),
            db,
            max_projector_lag: Some(std::time::Duration::from_secs(
                api_settings.readyz_max_projector_lag_secs,
            )),
        })
        .merge(graphql);
        Ok(Self {
            listener,
            router,
            nats,
        })
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and drains NATS.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        info!(addr = %self.local_addr()?, "serving HTTP");
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
        self.nats.drain().await.context("draining NATS")?;
        info!("stopped");
        Ok(())
    }
}

/// Connects, checks the server and provisions the event store.
///
/// # Errors
/// When NATS is unreachable, too old, lacks JetStream, or refuses the stream settings.
pub async fn connect_nats(settings: &Settings) -> anyhow::Result<async_nats::Client> {
    let client = infra_nats::connect(&settings.nats_url)
        .await
        .with_context(|| format!("connecting to NATS_URL {}", settings.nats_url))?;
    infra_nats::check_server(&client)
        .await
        .with_context(|| format!("checking the server at NATS_URL {}", settings.nats_url))?;
    let stream_settings = StreamSettings {
        replicas: usize::from(settings.nats_replicas),
        ..StreamSettings::default()
    };
    infra_nats::provision(
        &async_nats::jetstream::new(client.clone()),
        &stream_settings,
    )
    .await
    .context("provisioning the EVENTS stream")?;
    Ok(client)
}

/// The connections of one command-line invocation, opened when a command first asks
/// and then shared by everything it calls (the gate check included), so that a command
/// connects to NATS and to PostgreSQL at most once. The long-lived roles (`serve`,
/// `project`, `saga`) connect in their own `build` instead.
pub struct Connections {
    settings: Option<Settings>,
    nats: OnceCell<async_nats::Client>,
    db: OnceCell<PgPool>,
}

impl Connections {
    /// Nothing is opened yet.
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        Self::of(Some(settings))
    }

    /// The connections of a command that may have no connection settings (`schema`):
    /// asking such a command's holder for a connection is an error.
    #[must_use]
    pub fn of(settings: Option<Settings>) -> Self {
        Self {
            settings,
            nats: OnceCell::new(),
            db: OnceCell::new(),
        }
    }

    /// The settings the connections are opened with.
    ///
    /// # Errors
    /// When the command has none.
    pub fn settings(&self) -> anyhow::Result<&Settings> {
        self.settings
            .as_ref()
            .context("this command takes no connection settings")
    }

    /// NATS, connected, checked and provisioned ([`connect_nats`]) on first use.
    ///
    /// # Errors
    /// When NATS is unreachable, too old, lacks JetStream, or refuses the stream settings.
    pub async fn nats(&self) -> anyhow::Result<&async_nats::Client> {
        self.nats
            .get_or_try_init(|| async { connect_nats(self.settings()?).await })
            .await
    }

    /// PostgreSQL, created if needed and migrated ([`migrate_all`]) on first use: any
    /// command may be the first thing run against a new database.
    ///
    /// # Errors
    /// When PostgreSQL is unreachable or a migration fails.
    pub async fn db(&self) -> anyhow::Result<&PgPool> {
        self.db
            .get_or_try_init(|| async {
                let db = connect_database(&self.settings()?.database_url).await?;
                migrate_all(&db).await?;
                Ok(db)
            })
            .await
    }

    /// Closes the pool, if it was opened, so that PostgreSQL sees each session end.
    pub async fn close(&self) {
        if let Some(db) = self.db.get() {
            db.close().await;
        }
    }
}

/// The command side every role shares within a process: one bus per aggregate type
/// on `nats`.
///
/// # Errors
/// When the stream or its buckets cannot be opened.
pub async fn command_side(
    settings: &Settings,
    nats: &async_nats::Client,
) -> anyhow::Result<application::CommandSide> {
    let config = infra_nats::EventStoreConfig {
        snapshot_every: settings.snapshot_every,
        ..infra_nats::EventStoreConfig::default()
    };
    application::CommandSide::open(nats.clone(), config)
        .await
        .context("opening the command buses")
}

/// The payment provider of `settings` (one configuration for every role), with its
/// ledger in `db`.
///
/// # Errors
/// A bad `PAYMENT_*` setting, or the ledger cannot be installed.
pub async fn payment_provider(
    settings: &Settings,
    db: &PgPool,
) -> anyhow::Result<std::sync::Arc<dyn application::PaymentProvider>> {
    application::payments::install(db.clone(), &settings.payments.provider()?)
        .await
        .context("installing the payment provider")
}

/// Creates the database if needed and connects a pool.
///
/// # Errors
/// When PostgreSQL is unreachable.
pub async fn connect_database(database_url: &str) -> anyhow::Result<PgPool> {
    projections::ensure_database(database_url)
        .await
        .context("creating the DATABASE_URL database")?;
    PgPoolOptions::new()
        .max_connections(16)
        .connect(database_url)
        .await
        .context("connecting to DATABASE_URL")
}

/// `shopstream migrate`.
#[derive(Debug, Args)]
pub struct MigrateCommand {
    #[command(flatten)]
    pub settings: Settings,
}

impl CliCommand for MigrateCommand {
    fn settings(&self) -> Option<&Settings> {
        Some(&self.settings)
    }

    async fn run(self, conns: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        migrate(conns).await?;
        Ok(cli::SUCCESS)
    }
}

/// Applies every migration (the read models', the API's and the storefront's).
///
/// # Errors
/// When PostgreSQL is unreachable or a migration fails.
pub async fn migrate(conns: &Connections) -> anyhow::Result<()> {
    conns.db().await?;
    info!("migrations applied");
    Ok(())
}

/// Applies the read models' and the API's migrations (they share `_sqlx_migrations`).
///
/// # Errors
/// When a migration fails.
pub async fn migrate_all(db: &PgPool) -> anyhow::Result<()> {
    projections::migrate(db)
        .await
        .context("migrating the read models")?;
    api::migrate(db)
        .await
        .context("migrating the API's tables")?;
    application::migrate(db)
        .await
        .context("migrating the storefront's tables")?;
    Ok(())
}

/// Runs a long-lived role (`serve`, `project`, `saga`) until it stops after SIGTERM or
/// Ctrl-C, bounded: `role` gets a future that completes on the signal, during which it
/// stops taking work, finishes what is in flight and drains NATS; if it has not returned
/// `bound` after the signal, this returns an error (the process exits non-zero) and
/// whatever was unfinished is redelivered to another replica (nothing is acknowledged
/// before it is done).
///
/// # Errors
/// The role's error, or that it did not stop within `bound`.
pub async fn run_until_signalled<Role>(
    bound: Duration,
    role: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Role,
) -> anyhow::Result<()>
where
    Role: Future<Output = anyhow::Result<()>>,
{
    let (signalled, _) = tokio::sync::watch::channel(false);
    let stopping = {
        let mut signalled = signalled.subscribe();
        async move {
            let _ = signalled.wait_for(|s| *s).await;
        }
    };
    let deadline = {
        let mut signalled = signalled.subscribe();
        async move {
            if signalled.wait_for(|s| *s).await.is_ok() {
                tokio::time::sleep(bound).await;
            } else {
                std::future::pending::<()>().await;
            }
        }
    };
    let forward = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signalled.send(true);
        // Keep the sender: a dropped one would read as "never signalled".
        std::future::pending::<()>().await;
    });
    let role = role(Box::pin(stopping));
    let result = tokio::select! {
        result = role => result,
        () = deadline => {
            tracing::error!(bound_ms = bound.as_millis() as u64, "did not stop within the shutdown bound; exiting");
            Err(anyhow::anyhow!(
                "did not stop within {} ms of the shutdown signal (SHUTDOWN_TIMEOUT_MS)",
                bound.as_millis()
            ))
        }
    };
    forward.abort();
    result
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    info!("shutdown requested");
}
