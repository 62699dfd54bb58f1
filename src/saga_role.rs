//! The saga role (`shopstream saga`) and the operator commands on sagas (`shopstream sagas`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use domain::{Actor, OrderId};
use saga::{SagaConfig, SagaDriver, TriggerConfig};

use crate::{command_side, connect_database, connect_nats, payment_provider, Settings};

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
        let provider = payment_provider(settings, &db).await?;
        let commands = command_side(settings, &nats).await?;
        let driver = SagaDriver::new(commands.buses.clone(), provider, db, saga.saga_config());
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
pub async fn sagas_show(settings: &Settings, order_id: OrderId, json: bool) -> anyhow::Result<()> {
    let driver = SagaRole::build(settings, &saga_settings_from_env())
        .await?
        .driver;
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
    settings: &Settings,
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
    let driver = SagaRole::build(settings, &saga_settings_from_env())
        .await?
        .driver;
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
    settings: &Settings,
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
    let db = connect_database(&settings.database_url).await?;
    projections::migrate(&db)
        .await
        .context("migrating PostgreSQL")?;
    let filter = SagaFilter {
        state,
        ..SagaFilter::default()
    };
    let first = usize::try_from(limit.clamp(1, 1000)).unwrap_or(50);
    let page = sagas::list(&db, &filter, PageRequest::first(first)).await?;
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
