//! The saga role (`shopstream saga`) and the operator commands on sagas (`shopstream sagas`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use domain::{Actor, OrderId};
use saga::{SagaConfig, SagaDriver, TriggerConfig};
use serde_json::json;
use sqlx::PgPool;

use crate::cli::{actor, CliCommand, SUCCESS};
use crate::cli_auth::{Caller, Gate};
use crate::health::HealthSettings;
use crate::{
    command_side, connect_database, connect_nats, payment_provider, Connections, Settings,
};

/// `shopstream saga`: the saga role.
#[derive(Debug, Args)]
pub struct SagaCommand {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub saga: SagaSettings,
    #[command(flatten)]
    pub health: HealthSettings,
}

impl CliCommand for SagaCommand {
    fn settings(&self) -> Option<&Settings> {
        Some(&self.settings)
    }

    fn role(&self) -> &'static str {
        "saga"
    }

    /// Builds the [`SagaRole`] (it connects on its own) and drives sagas until signalled.
    async fn run(self, _: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        let _health = crate::health::serve(&self.health).await?;
        let role = SagaRole::build(&self.settings, &self.saga).await?;
        crate::run_until_signalled(self.settings.shutdown_timeout(), |stopping| {
            role.run_until_stopped(stopping)
        })
        .await?;
        Ok(SUCCESS)
    }
}

/// `shopstream sagas ...`.
#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// Sagas by state, newest first.
    List {
        /// running, waiting, stuck_past_deadline, compensation_failed, completed or compensated.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// One saga: its state and every event it recorded.
    Show {
        /// The order id (a saga's id is its order's).
        order_id: OrderId,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Take over a running saga whose driver seems gone, and drive it on.
    Resume(SagaActionArgs),
    /// Run a failed compensation again.
    Retry(SagaActionArgs),
    /// Undo whatever the saga did and cancel the order (asks for confirmation).
    Compensate(SagaActionArgs),
}

/// The arguments of `sagas resume|retry|compensate`.
#[derive(Debug, Args)]
pub struct SagaActionArgs {
    /// The order id.
    pub order_id: OrderId,
    /// Why; recorded on the saga with the signed-in caller.
    #[arg(long)]
    pub reason: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub settings: Settings,
}

impl SagaActionArgs {
    /// The arguments as recorded with a refusal.
    fn to_json(&self) -> serde_json::Value {
        json!({ "order_id": self.order_id, "reason": self.reason, "force": self.force })
    }

    async fn act(self, conns: &Connections, action: SagaAction, actor: &str) -> anyhow::Result<()> {
        sagas_act(
            conns,
            self.order_id,
            action,
            actor,
            &self.reason,
            self.force,
        )
        .await
    }
}

impl CliCommand for SagasCommand {
    fn settings(&self) -> Option<&Settings> {
        match self {
            SagasCommand::List { settings, .. }
            | SagasCommand::Show { settings, .. }
            | SagasCommand::Resume(SagaActionArgs { settings, .. })
            | SagasCommand::Retry(SagaActionArgs { settings, .. })
            | SagasCommand::Compensate(SagaActionArgs { settings, .. }) => Some(settings),
        }
    }

    fn gate(&self) -> Option<Gate> {
        Some(match self {
            SagasCommand::List { state, limit, .. } => {
                Gate::operator("sagas list", json!({ "state": state, "limit": limit }))
            }
            SagasCommand::Show { order_id, .. } => {
                Gate::operator("sagas show", json!({ "order_id": order_id }))
            }
            SagasCommand::Resume(a) => Gate::operator("sagas resume", a.to_json()),
            SagasCommand::Retry(a) => Gate::operator("sagas retry", a.to_json()),
            SagasCommand::Compensate(a) => Gate::operator("sagas compensate", a.to_json()),
        })
    }

    async fn run(self, conns: &Connections, caller: Option<&Caller>) -> anyhow::Result<i32> {
        match self {
            SagasCommand::List {
                state, limit, json, ..
            } => sagas_list(conns, state.as_deref(), limit, json).await?,
            SagasCommand::Show { order_id, json, .. } => sagas_show(conns, order_id, json).await?,
            SagasCommand::Resume(a) => a.act(conns, SagaAction::Resume, actor(caller)?).await?,
            SagasCommand::Retry(a) => a.act(conns, SagaAction::Retry, actor(caller)?).await?,
            SagasCommand::Compensate(a) => {
                a.act(conns, SagaAction::Compensate, actor(caller)?).await?;
            }
        }
        Ok(SUCCESS)
    }
}

/// How the saga role runs (the payment provider is configured in [`Settings`], alike for
/// every role).
#[derive(Debug, Clone, Args)]
pub struct SagaSettings {
    /// How long a phase (reserve, authorise, complete) may take before the saga compensates.
    #[arg(long, env = "SAGA_STEP_TIMEOUT_MS", default_value_t = 10_000)]
    pub step_timeout_ms: u64,
    /// How long an unacknowledged trigger waits before another replica takes it over.
    #[arg(long, env = "SAGA_ACK_WAIT_MS", default_value_t = 15_000)]
    pub ack_wait_ms: u64,
    /// Sagas one replica drives at once.
    #[arg(long, env = "SAGA_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,
}

impl SagaSettings {
    fn saga_config(&self) -> SagaConfig {
        let step = Duration::from_millis(self.step_timeout_ms);
        SagaConfig {
            reserve_timeout: step,
            authorise_timeout: step,
            complete_timeout: step,
            ..SagaConfig::default()
        }
    }

    fn trigger_config(&self) -> TriggerConfig {
        TriggerConfig {
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            max_in_flight: self.max_in_flight.max(1),
            ..TriggerConfig::default()
        }
    }
}

/// The saga role, built (connected, migrated, its driver on the shared command side) and
/// not yet running.
pub struct SagaRole {
    driver: Arc<SagaDriver>,
    nats: async_nats::Client,
    trigger: TriggerConfig,
}

impl SagaRole {
    /// Connects to NATS and PostgreSQL, migrates, installs the payment provider and opens
    /// the command side the driver sends its steps through.
    ///
    /// # Errors
    /// A bad setting, or a dependency that cannot be reached.
    pub async fn build(settings: &Settings, saga: &SagaSettings) -> anyhow::Result<Self> {
        // Installed before anything records, so every metric reaches `/metrics`.
        let _ = crate::telemetry::metrics::install();
        let nats = connect_nats(settings).await?;
        let db = connect_database(&settings.database_url).await?;
        projections::migrate(&db)
            .await
            .context("migrating PostgreSQL")?;
        let driver = driver(settings, &nats, db, saga).await?;
        Ok(Self {
            driver: Arc::new(driver),
            nats,
            trigger: saga.trigger_config(),
        })
    }

    /// Drives placed orders until `shutdown` completes, then drains NATS.
    ///
    /// # Errors
    /// When the consumer cannot be read.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        saga::run(
            self.driver,
            async_nats::jetstream::new(self.nats.clone()),
            self.trigger,
            shutdown,
        )
        .await?;
        self.nats.drain().await.ok();
        Ok(())
    }
}

/// Runs the saga role until `shutdown` completes.
///
/// # Errors
/// When NATS or PostgreSQL cannot be reached, or the consumer cannot be read.
pub async fn run_saga(
    settings: &Settings,
    saga: &SagaSettings,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    SagaRole::build(settings, saga)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// The saga driver on `nats` and `db`: the payment provider installed and the command
/// side opened, alike for the role and the operator commands.
async fn driver(
    settings: &Settings,
    nats: &async_nats::Client,
    db: PgPool,
    saga: &SagaSettings,
) -> anyhow::Result<SagaDriver> {
    let provider = payment_provider(settings, &db).await?;
    let commands = command_side(settings, nats).await?;
    Ok(SagaDriver::new(
        commands.buses.clone(),
        provider,
        db,
        saga.saga_config(),
    ))
}

/// The driver the operator commands act through, on the invocation's connections, with
/// the role's deadlines.
async fn operator_driver(conns: &Connections) -> anyhow::Result<SagaDriver> {
    let nats = conns.nats().await?;
    let db = conns.db().await?.clone();
    driver(conns.settings()?, nats, db, &saga_settings_from_env()).await
}

/// What an operator does to one saga.
#[derive(Debug, Clone, Copy)]
pub enum SagaAction {
    /// Take over a running saga and drive it on.
    Resume,
    /// Run a failed compensation again.
    Retry,
    /// Undo whatever the saga did and cancel the order.
    Compensate,
}

/// `sagas show`: the saga's state and every event it recorded.
///
/// # Errors
/// When the saga does not exist or NATS fails.
pub async fn sagas_show(conns: &Connections, order_id: OrderId, json: bool) -> anyhow::Result<()> {
    let driver = operator_driver(conns).await?;
    let view = saga::admin::show(&driver, order_id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let run = view.saga.run().context("the saga has not started")?;
    println!(
        "saga {}  phase {}  owner {:?}",
        run.order_id, run.phase, run.owner
    );
    println!(
        "{:>10}  {:>3}  {:<25}  {:<16}  event",
        "position", "ver", "at", "actor"
    );
    for entry in &view.history {
        println!(
            "{:>10}  {:>3}  {:<25}  {:<16}  {}",
            entry.position,
            entry.version,
            entry.at.to_rfc3339(),
            entry.actor,
            serde_json::to_string(&entry.event)?
        );
    }
    Ok(())
}

/// `sagas resume|retry|compensate`.
///
/// # Errors
/// When the saga refuses the action, the operator declines, or NATS fails.
pub async fn sagas_act(
    conns: &Connections,
    order_id: OrderId,
    action: SagaAction,
    actor: &str,
    reason: &str,
    force: bool,
) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        bail!("--reason must not be blank");
    }
    let actor: Actor = actor.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if matches!(action, SagaAction::Compensate) && !force {
        eprint!("Compensate the saga of order {order_id}: refund or void its payment, return its stock and cancel it? [y/N] ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not confirmed; nothing changed");
        }
    }
    let driver = operator_driver(conns).await?;
    let outcome = match action {
        SagaAction::Resume => saga::admin::resume(&driver, order_id, &actor, reason).await?,
        SagaAction::Retry => saga::admin::retry(&driver, order_id, &actor, reason).await?,
        SagaAction::Compensate => {
            saga::admin::compensate(&driver, order_id, &actor, reason).await?
        }
    };
    println!("{outcome:?}");
    Ok(())
}

/// The saga settings from the environment (or their defaults), for operator commands:
/// their driver gives the same deadlines as the role's.
fn saga_settings_from_env() -> SagaSettings {
    #[derive(clap::Parser)]
    struct FromEnv {
        #[command(flatten)]
        saga: SagaSettings,
    }
    <FromEnv as clap::Parser>::parse_from(["shopstream"]).saga
}

/// `sagas list`: sagas by state from the `sagas` read model, newest first.
///
/// # Errors
/// When the state is unknown or PostgreSQL fails.
pub async fn sagas_list(
    conns: &Connections,
    state: Option<&str>,
    limit: i64,
    json: bool,
) -> anyhow::Result<()> {
    use projections::page::PageRequest;
    use projections::sagas::{self, SagaFilter, SagaState};
    let state = state
        .map(|s| {
            s.parse::<SagaState>().map_err(|_| {
                let known: Vec<_> = SagaState::ALL.iter().map(|s| s.as_str()).collect();
                anyhow::anyhow!("unknown state `{s}`; one of: {}", known.join(", "))
            })
        })
        .transpose()?;
    let db = conns.db().await?;
    let filter = SagaFilter {
        state,
        ..SagaFilter::default()
    };
    let first = usize::try_from(limit.clamp(1, 1000)).unwrap_or(50);
    let page = sagas::list(db, &filter, PageRequest::first(first)).await?;
    let total_count = page.total_count;
    let sagas = page.into_nodes();
    if json {
        println!("{}", serde_json::to_string_pretty(&sagas)?);
        return Ok(());
    }
    println!(
        "{:<36}  {:<19}  {:<25}  {:<25}  reason",
        "order", "phase", "updated", "deadline"
    );
    for saga in &sagas {
        println!(
            "{:<36}  {:<19}  {:<25}  {:<25}  {}",
            saga.order_id,
            saga.phase.as_str(),
            saga.updated_at.to_rfc3339(),
            saga.deadline_at.map(|d| d.to_rfc3339()).unwrap_or_default(),
            saga.reason.as_deref().unwrap_or(""),
        );
    }
    if let Some(total) = total_count {
        println!("{} of {total}", sagas.len());
    }
    Ok(())
}
