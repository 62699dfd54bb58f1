//! `shopstream`: one binary, one subcommand per role or operator task.

use clap::{Args, Parser, Subcommand};
use projections::dead_letters::Action;
use shopstream::auditing::AuditCommand;
use shopstream::projecting;
use shopstream::saga_role::{self, SagaAction, SagaSettings};
use shopstream::{ApiSettings, LogFormat, Settings};
use tracing_subscriber::EnvFilter;

/// The saga and projector roles allocate many small, short-lived buffers per message;
/// mimalloc spends less CPU on them than glibc's allocator (measured in `benches/saga.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "shopstream",
    version,
    about = "Event-sourced commerce backend on NATS JetStream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect, provision the event store, migrate, and serve HTTP: the GraphQL API
    /// (/graphql, /graphql/ws), /livez, /readyz, /projections, /metrics.
    Serve {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        api: ApiSettings,
    },
    /// Accounts: create one of any role (the first admin).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Print the GraphQL schema (SDL), as checked in at schema.graphql.
    Schema,
    /// Apply the PostgreSQL migrations and exit.
    Migrate(Settings),
    /// Run every projector (active, or hot standby behind another replica) and the
    /// notification dispatcher.
    Project(Settings),
    /// Read models: progress and lag, rebuilds.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The sequenced dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Run the order saga: drive placed orders to confirmation or compensation (every
    /// replica shares the work).
    Saga {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        saga: SagaSettings,
    },
    /// Order sagas: list by state, show, resume, retry, compensate.
    #[command(subcommand)]
    Sagas(SagasCommand),
    /// The auditor's tools: verify the hash chain, history, state at a point, access log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
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

#[derive(Debug, Subcommand)]
enum SagasCommand {
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
        order_id: domain::OrderId,
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

#[derive(Debug, Args)]
struct SagaActionArgs {
    /// The order id.
    order_id: domain::OrderId,
    /// Why; recorded on the saga.
    #[arg(long)]
    reason: String,
    /// Who, as `user:<uuid>` or `system:<name>`; recorded on the saga.
    #[arg(long, env = "SHOPSTREAM_ACTOR", default_value = "system:operator-cli")]
    actor: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Position, lag (events and seconds), parked commits and gaps of every projector.
    Status {
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Rebuild a read model from the start of the log beside the live one, then switch.
    Rebuild {
        /// The projection (catalog, inventory, orders, payments, sales, notifier).
        name: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Parked commits, oldest first, or grouped by error.
    List {
        /// Only this consumer.
        #[arg(long)]
        consumer: Option<String>,
        /// Group by error fingerprint with counts and oldest age.
        #[arg(long)]
        group: bool,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply the parked sequence holding <ID> in order; stops at the first failure.
    Retry(DlqAction),
    /// Mark the head of the sequence holding <ID> as not applied, then retry the rest.
    Skip(DlqAction),
    /// Mark the whole sequence holding <ID> as not applied.
    Discard(DlqAction),
}

#[derive(Debug, Args)]
struct DlqAction {
    /// A dead-letter id (from `dlq list`).
    id: uuid::Uuid,
    /// Why; recorded with the action.
    #[arg(long)]
    reason: String,
    /// Who; recorded with the action.
    #[arg(long, env = "SHOPSTREAM_ACTOR", default_value = "operator:cli")]
    actor: String,
    #[command(flatten)]
    settings: Settings,
}

impl Command {
    /// The log format to use; the default for commands without settings.
    fn log_format(&self) -> LogFormat {
        match self {
            Command::Schema => LogFormat::Text,
            Command::Serve { settings, .. }
            | Command::Accounts(AccountsCommand::Create { settings, .. })
            | Command::Migrate(settings)
            | Command::Project(settings) => settings.log_format,
            other => other.settings().map_or(LogFormat::Text, |s| s.log_format),
        }
    }

    fn settings(&self) -> Option<&Settings> {
        Some(match self {
            Command::Schema => return None,
            Command::Serve { settings, .. }
            | Command::Accounts(AccountsCommand::Create { settings, .. })
            | Command::Migrate(settings)
            | Command::Project(settings) => settings,
            Command::Projections(
                ProjectionsCommand::Status { settings, .. }
                | ProjectionsCommand::Rebuild { settings, .. },
            ) => settings,
            Command::Dlq(DlqCommand::List { settings, .. })
            | Command::Dlq(
                DlqCommand::Retry(DlqAction { settings, .. })
                | DlqCommand::Skip(DlqAction { settings, .. })
                | DlqCommand::Discard(DlqAction { settings, .. }),
            ) => settings,
            Command::Audit(audit) => audit.settings(),
            Command::Saga { settings, .. }
            | Command::Sagas(
                SagasCommand::List { settings, .. }
                | SagasCommand::Show { settings, .. }
                | SagasCommand::Resume(SagaActionArgs { settings, .. })
                | SagasCommand::Retry(SagaActionArgs { settings, .. })
                | SagasCommand::Compensate(SagaActionArgs { settings, .. }),
            ) => settings,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.command.log_format());
    match cli.command {
        Command::Serve { settings, api } => {
            let app = shopstream::Application::build(&settings, &api).await?;
            app.run_until_stopped(shopstream::shutdown_signal()).await
        }
        Command::Accounts(AccountsCommand::Create {
            email,
            password,
            role,
            settings,
        }) => shopstream::api_role::create_account(&settings, &email, &password, &role).await,
        Command::Schema => {
            print!("{}", api::graphql::sdl());
            Ok(())
        }
        Command::Migrate(settings) => shopstream::migrate(&settings).await,
        Command::Project(settings) => {
            projecting::run_projectors(&settings, shopstream::shutdown_signal()).await
        }
        Command::Projections(ProjectionsCommand::Status { json, settings }) => {
            projecting::projections_status(&settings, json).await
        }
        Command::Projections(ProjectionsCommand::Rebuild {
            name,
            force,
            settings,
        }) => projecting::projections_rebuild(&settings, &name, force).await,
        Command::Dlq(DlqCommand::List {
            consumer,
            group,
            json,
            settings,
        }) => projecting::dlq_list(&settings, consumer, group, json).await,
        Command::Dlq(DlqCommand::Retry(a)) => act(a, Action::Retry).await,
        Command::Dlq(DlqCommand::Skip(a)) => act(a, Action::Skip).await,
        Command::Dlq(DlqCommand::Discard(a)) => act(a, Action::Discard).await,
        Command::Saga { settings, saga } => {
            saga_role::run_saga(&settings, &saga, shopstream::shutdown_signal()).await
        }
        Command::Sagas(SagasCommand::List {
            state,
            limit,
            json,
            settings,
        }) => saga_role::sagas_list(&settings, state.as_deref(), limit, json).await,
        Command::Sagas(SagasCommand::Show {
            order_id,
            json,
            settings,
        }) => saga_role::sagas_show(&settings, order_id, json).await,
        Command::Sagas(SagasCommand::Resume(a)) => saga_act(a, SagaAction::Resume).await,
        Command::Sagas(SagasCommand::Retry(a)) => saga_act(a, SagaAction::Retry).await,
        Command::Sagas(SagasCommand::Compensate(a)) => saga_act(a, SagaAction::Compensate).await,
        Command::Audit(audit) => match shopstream::auditing::run(audit).await? {
            0 => Ok(()),
            code => std::process::exit(code),
        },
    }
}

async fn saga_act(args: SagaActionArgs, action: SagaAction) -> anyhow::Result<()> {
    saga_role::sagas_act(
        &args.settings,
        args.order_id,
        action,
        &args.actor,
        &args.reason,
        args.force,
    )
    .await
}

async fn act(action: DlqAction, kind: Action) -> anyhow::Result<()> {
    projecting::dlq_act(
        &action.settings,
        action.id,
        kind,
        &action.actor,
        &action.reason,
    )
    .await
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
