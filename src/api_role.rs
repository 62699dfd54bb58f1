//! The API role (`shopstream serve`) and its wiring: accounts, the command buses,
//! read-model positions and the GraphQL schema with its limits; and the commands about
//! the API: `accounts create` and `schema`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use api::auth::{Accounts, AuthConfig, Role};
use api::consistency::ReadModelPositions;
use api::graphql::{build_schema, GraphqlConfig, SchemaLimits, Services};
use api::limits::{RateLimitConfig, RateLimits};
use application::storefront::{Carts, IdempotencyKeys};
use application::{CheckoutAdmission, Shop};
use clap::{Args, Subcommand};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::cli::{CliCommand, SUCCESS};
use crate::cli_auth::Caller;
use crate::{ApiMode, ApiSettings, Application, Connections, Settings};

/// `shopstream serve`: the API role.
#[derive(Debug, Args)]
pub struct ServeCommand {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub api: ApiSettings,
}

impl CliCommand for ServeCommand {
    fn settings(&self) -> Option<&Settings> {
        Some(&self.settings)
    }

    fn role(&self) -> &'static str {
        "api"
    }

    /// Builds the [`Application`] (it connects on its own) and serves until signalled.
    async fn run(self, _: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        let app = Application::build(&self.settings, &self.api).await?;
        crate::run_until_signalled(self.settings.shutdown_timeout(), |stopping| {
            app.run_until_stopped(stopping)
        })
        .await?;
        Ok(SUCCESS)
    }
}

/// `shopstream accounts ...`.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account.
    Create {
        /// The email it signs in with.
        #[arg(long)]
        email: String,
        /// Its password (at least 8 characters).
        #[arg(long, env = "SHOPSTREAM_PASSWORD", hide_env_values = true)]
        password: String,
        /// customer, admin, auditor or operator.
        #[arg(long, default_value = "admin")]
        role: String,
        #[command(flatten)]
        settings: Settings,
    },
}

impl CliCommand for AccountsCommand {
    fn settings(&self) -> Option<&Settings> {
        match self {
            AccountsCommand::Create { settings, .. } => Some(settings),
        }
    }

    async fn run(self, conns: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        match self {
            AccountsCommand::Create {
                email,
                password,
                role,
                ..
            } => create_account(conns, &email, &password, &role).await?,
        }
        Ok(SUCCESS)
    }
}

/// `shopstream schema`: prints the GraphQL schema (SDL); connects to nothing.
#[derive(Debug, Args)]
pub struct SchemaCommand {}

impl CliCommand for SchemaCommand {
    fn settings(&self) -> Option<&Settings> {
        None
    }

    async fn run(self, _: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        print!("{}", api::graphql::sdl());
        Ok(SUCCESS)
    }
}

/// The GraphQL routes with everything behind them.
///
/// # Errors
/// A bad setting (`JWT_SECRET`), or a dependency that cannot be reached.
pub async fn graphql_router(
    settings: &Settings,
    api_settings: &ApiSettings,
    nats: &async_nats::Client,
    db: &PgPool,
) -> anyhow::Result<axum::Router> {
    let accounts = accounts(api_settings, db.clone())?;
    let production = api_settings.api_mode == ApiMode::Production;
    // The API's reads get a statement timeout, so one slow query cannot hold a
    // connection (and the request) for long.
    let options = PgConnectOptions::from_str(&settings.database_url)
        .context("parsing DATABASE_URL")?
        .options([(
            "statement_timeout",
            format!("{}ms", api_settings.pg_statement_timeout_ms),
        )]);
    // No ping before each checkout: a broken connection fails its query and is dropped,
    // and the ping would double the round trips of every read.
    let reads = PgPoolOptions::new()
        .max_connections(api_settings.api_pg_max_connections)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("connecting the API's read pool to DATABASE_URL")?;
    let commands = crate::command_side(settings, nats).await?;
    let jetstream = async_nats::jetstream::new(nats.clone());
    let positions = ReadModelPositions::start(
        db.clone(),
        jetstream.clone(),
        Duration::from_millis(api_settings.read_your_writes_timeout_ms),
    )
    .await
    .context("following the read models' positions")?;
    let shop = Shop {
        commands,
        // Refunds go to the provider the saga pays through, configured alike.
        provider: crate::payment_provider(settings, db).await?,
        carts: Carts::new(db.clone()),
        idempotency: IdempotencyKeys::new(db.clone()),
        admission: CheckoutAdmission::start(
            jetstream.clone(),
            Duration::from_millis(api_settings.checkout_max_saga_lag_ms),
        ),
    };
    let services = Arc::new(Services {
        db: reads,
        jetstream: jetstream.clone(),
        accounts: accounts.clone(),
        shop: Arc::new(shop),
        positions,
    });
    let schema = build_schema(
        services.clone(),
        SchemaLimits {
            max_depth: api_settings.graphql_max_depth,
            max_complexity: api_settings.graphql_max_complexity,
            introspection: !production,
            suggestions: !production,
        },
    );
    let limits = RateLimits::new(
        RateLimitConfig {
            per_ip_per_second: api_settings.rate_limit_ip_per_second,
            per_ip_burst: api_settings.rate_limit_ip_burst,
            per_user_per_second: api_settings.rate_limit_user_per_second,
            per_user_burst: api_settings.rate_limit_user_burst,
            trust_forwarded_for: api_settings.trust_forwarded_for,
        },
        accounts,
    );
    Ok(api::graphql::router(
        schema,
        &services,
        &GraphqlConfig {
            max_body_bytes: api_settings.graphql_max_body_bytes,
            cors_origins: api_settings.cors_origins.clone(),
            graphiql: !production,
        },
        limits,
    ))
}

fn accounts(api_settings: &ApiSettings, db: PgPool) -> anyhow::Result<Accounts> {
    let secret = match (&api_settings.jwt_secret, api_settings.api_mode) {
        (Some(secret), _) => secret.as_bytes().to_vec(),
        (None, ApiMode::Production) => bail!("JWT_SECRET is required with API_MODE=production"),
        (None, ApiMode::Development) => {
            tracing::warn!(
                "JWT_SECRET is not set: using a random one, so tokens die with this process \
                 and other replicas refuse them"
            );
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).context("drawing a random JWT secret")?;
            secret
        }
    };
    let config = AuthConfig::new(
        secret,
        api_settings.jwt_issuer.clone(),
        api_settings.jwt_audience.clone(),
        Duration::from_secs(api_settings.access_token_ttl_secs),
        Duration::from_secs(api_settings.refresh_token_ttl_secs),
    )
    .context("JWT_SECRET must be at least 32 bytes")?;
    Ok(Accounts::new(db, config))
}

/// `shopstream accounts create`: makes an account of any role (the first admin).
///
/// # Errors
/// A bad email, password or role, a taken email, or PostgreSQL unreachable.
pub async fn create_account(
    conns: &Connections,
    email: &str,
    password: &str,
    role: &str,
) -> anyhow::Result<()> {
    let role = Role::from_str(role)
        .map_err(|_| anyhow::anyhow!("--role must be customer, admin, auditor or operator"))?;
    let db = conns.db().await?;
    let account = cli_accounts(db.clone())?
        .create(email, password, role)
        .await
        .with_context(|| format!("creating {role} account {email}"))?;
    println!(
        "created {} account {} ({})",
        account.role, account.email, account.id
    );
    Ok(())
}

/// The account service for command-line use: it hashes and checks passwords and starts
/// CLI sessions, and never signs an access token, so it needs no `JWT_SECRET`.
///
/// # Errors
/// Never in practice: the placeholder secret has the required length.
pub fn cli_accounts(db: PgPool) -> anyhow::Result<Accounts> {
    let config = AuthConfig::new(
        vec![0u8; 32],
        "cli",
        "cli",
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .context("building the account service")?;
    Ok(Accounts::new(db, config))
}
