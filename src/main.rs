//! `shopstream`: one binary, one subcommand per role or operator task.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use projections::dead_letters::{Action, DeadLetterFilter, SequenceSelector};
use serde_json::json;
use shopstream::auditing::AuditCommand;
use shopstream::cli_auth::{self, Caller, Gate, Login};
use shopstream::health::HealthSettings;
use shopstream::projecting;
use shopstream::replaying::{self, ReplayArgs};
use shopstream::saga_role::{self, SagaAction, SagaSettings};
use shopstream::{ApiSettings, LogFormat, Settings};

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
    /// Sign in for the operator and auditor commands: checks the password and stores a
    /// session token in the session file (or prints it with --print).
    Login {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input (otherwise from
        /// SHOPSTREAM_PASSWORD, else a prompt without echo).
        #[arg(long)]
        password_stdin: bool,
        /// How long the session lives, as 90s, 30m, 12h or 7d (at most 30d).
        #[arg(long, default_value = "12h", value_parser = cli_auth::parse_ttl)]
        ttl: Duration,
        /// Print the token (for `export SHOPSTREAM_TOKEN=...`) instead of writing the
        /// session file.
        #[arg(long)]
        print: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// End the current session (SHOPSTREAM_TOKEN, else the session file's) and remove
    /// the session file.
    Logout(Settings),
    /// Print the GraphQL schema (SDL), as checked in at schema.graphql.
    Schema,
    /// Apply the PostgreSQL migrations and exit.
    Migrate(Settings),
    /// Run every projector (active, or hot standby behind another replica) and the
    /// notification dispatcher.
    Project {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        health: HealthSettings,
    },
    /// Read models: progress and lag, rebuilds.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The sequenced dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The event stream: size, range and every consumer's lag.
    #[command(subcommand)]
    Streams(StreamsCommand),
    /// Run the order saga: drive placed orders to confirmation or compensation (every
    /// replica shares the work).
    Saga {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        saga: SagaSettings,
        #[command(flatten)]
        health: HealthSettings,
    },
    /// Order sagas: list by state, show, resume, retry, compensate.
    #[command(subcommand)]
    Sagas(SagasCommand),
    /// The auditor's tools: verify the hash chain, history, state at a point, access log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Re-deliver a range of the log (by position or time, optionally one aggregate type
    /// or aggregate) to one projector, or to the saga in replay mode; chunked,
    /// rate-limited, resumable (run the same command again).
    Replay {
        #[command(flatten)]
        args: ReplayArgs,
        #[command(flatten)]
        settings: Settings,
    },
    /// Replays: list them, abandon an unfinished one.
    #[command(subcommand)]
    Replays(ReplaysCommand),
}

#[derive(Debug, Subcommand)]
enum ReplaysCommand {
    /// Replays, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Mark an unfinished replay abandoned (what it applied stays applied).
    Abandon {
        /// The replay's id (from `replays list`).
        id: uuid::Uuid,
        #[command(flatten)]
        settings: Settings,
    },
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
    /// Why; recorded on the saga with the signed-in caller.
    #[arg(long)]
    reason: String,
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
    /// Recompute a read model from the log beside the live one and report every row
    /// that differs (exit code 2 when any does).
    Verify {
        /// The projection (catalog, inventory, orders, payments, sagas, sales, notifier).
        name: String,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

#[derive(Debug, Subcommand)]
enum StreamsCommand {
    /// Messages, bytes, first and last position of the event stream, and every
    /// consumer's pending, ack pending, redelivered and last delivered position.
    Info {
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
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
        /// Only this aggregate type, or one aggregate as `type:id`.
        #[arg(long)]
        aggregate: Option<String>,
        /// Only entries whose error contains this text.
        #[arg(long)]
        error: Option<String>,
        /// Group by error fingerprint with counts, consumers and oldest age.
        #[arg(long)]
        group: bool,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// One entry: its decoded commit, error, attempts, failure times and the parked
    /// commits of its aggregate behind it.
    Show {
        /// A dead-letter id (from `dlq list`).
        id: uuid::Uuid,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Every operator action on the queue, newest first.
    History {
        /// Only this consumer.
        #[arg(long)]
        consumer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply the parked sequence holding <ID> (or every selected one) in order; stops
    /// at the first failure.
    Retry(DlqAction),
    /// Mark the head of the sequence holding <ID> (or of every selected one) as not
    /// applied, then retry the rest.
    Skip(DlqAction),
    /// Mark the whole sequence holding <ID> (or every selected one) as not applied.
    Discard(DlqAction),
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("bulk").args(["all", "group"]).multiple(false))]
struct DlqAction {
    /// A dead-letter id (from `dlq list`).
    #[arg(required_unless_present_any = ["all", "group"], conflicts_with_all = ["all", "group"])]
    id: Option<uuid::Uuid>,
    /// Every parked sequence (of `--consumer`, if given).
    #[arg(long, conflicts_with = "group")]
    all: bool,
    /// Every parked sequence whose head failed with this error fingerprint.
    #[arg(long, value_name = "FINGERPRINT")]
    group: Option<String>,
    /// With --all or --group: only this consumer's sequences.
    #[arg(long, requires = "bulk")]
    consumer: Option<String>,
    /// With --all or --group: print what would be done and change nothing.
    #[arg(long, requires = "bulk")]
    dry_run: bool,
    /// With --all or --group: do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Sequences read per page.
    #[arg(long, default_value_t = 100)]
    chunk: u32,
    /// At most this many sequences per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Why; recorded with the action and the signed-in caller.
    #[arg(long)]
    reason: String,
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
            | Command::Login { settings, .. }
            | Command::Logout(settings)
            | Command::Migrate(settings)
            | Command::Project { settings, .. } => settings.log_format,
            other => other.settings().map_or(LogFormat::Text, |s| s.log_format),
        }
    }

    /// The role a process runs, naming it in traces.
    fn role(&self) -> &'static str {
        match self {
            Command::Serve { .. } => "api",
            Command::Project { .. } => "projector",
            Command::Saga { .. } => "saga",
            _ => "cli",
        }
    }

    fn settings(&self) -> Option<&Settings> {
        Some(match self {
            Command::Schema => return None,
            Command::Serve { settings, .. }
            | Command::Accounts(AccountsCommand::Create { settings, .. })
            | Command::Login { settings, .. }
            | Command::Logout(settings)
            | Command::Migrate(settings)
            | Command::Project { settings, .. } => settings,
            Command::Projections(
                ProjectionsCommand::Status { settings, .. }
                | ProjectionsCommand::Rebuild { settings, .. }
                | ProjectionsCommand::Verify { settings, .. },
            ) => settings,
            Command::Streams(StreamsCommand::Info { settings, .. }) => settings,
            Command::Dlq(
                DlqCommand::List { settings, .. }
                | DlqCommand::Show { settings, .. }
                | DlqCommand::History { settings, .. },
            )
            | Command::Dlq(
                DlqCommand::Retry(DlqAction { settings, .. })
                | DlqCommand::Skip(DlqAction { settings, .. })
                | DlqCommand::Discard(DlqAction { settings, .. }),
            ) => settings,
            Command::Audit(audit) => audit.settings(),
            Command::Replay { settings, .. }
            | Command::Replays(
                ReplaysCommand::List { settings, .. } | ReplaysCommand::Abandon { settings, .. },
            ) => settings,
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

    /// The roles a command needs, with its arguments for the record of a refusal; `None`
    /// for the roles a process runs and for bootstrapping (no session needed).
    fn gate(&self) -> Option<Gate> {
        Some(match self {
            Command::Serve { .. }
            | Command::Accounts(_)
            | Command::Login { .. }
            | Command::Logout(_)
            | Command::Schema
            | Command::Migrate(_)
            | Command::Project { .. }
            | Command::Saga { .. } => return None,
            Command::Projections(ProjectionsCommand::Status { .. }) => {
                Gate::operator("projections status", json!({}))
            }
            Command::Projections(ProjectionsCommand::Rebuild { name, force, .. }) => {
                Gate::operator(
                    "projections rebuild",
                    json!({ "name": name, "force": force }),
                )
            }
            Command::Projections(ProjectionsCommand::Verify { name, .. }) => {
                Gate::operator("projections verify", json!({ "name": name }))
            }
            Command::Streams(StreamsCommand::Info { .. }) => {
                Gate::operator("streams info", json!({}))
            }
            Command::Dlq(DlqCommand::List {
                consumer,
                aggregate,
                error,
                group,
                ..
            }) => Gate::operator(
                "dlq list",
                json!({ "consumer": consumer, "aggregate": aggregate, "error": error, "group": group }),
            ),
            Command::Dlq(DlqCommand::Show { id, .. }) => {
                Gate::operator("dlq show", json!({ "id": id }))
            }
            Command::Dlq(DlqCommand::History {
                consumer, limit, ..
            }) => Gate::operator(
                "dlq history",
                json!({ "consumer": consumer, "limit": limit }),
            ),
            Command::Dlq(DlqCommand::Retry(a)) => Gate::operator("dlq retry", a.to_json()),
            Command::Dlq(DlqCommand::Skip(a)) => Gate::operator("dlq skip", a.to_json()),
            Command::Dlq(DlqCommand::Discard(a)) => Gate::operator("dlq discard", a.to_json()),
            Command::Sagas(SagasCommand::List { state, limit, .. }) => {
                Gate::operator("sagas list", json!({ "state": state, "limit": limit }))
            }
            Command::Sagas(SagasCommand::Show { order_id, .. }) => {
                Gate::operator("sagas show", json!({ "order_id": order_id }))
            }
            Command::Sagas(SagasCommand::Resume(a)) => Gate::operator("sagas resume", a.to_json()),
            Command::Sagas(SagasCommand::Retry(a)) => Gate::operator("sagas retry", a.to_json()),
            Command::Sagas(SagasCommand::Compensate(a)) => {
                Gate::operator("sagas compensate", a.to_json())
            }
            Command::Replay { args, .. } => Gate::operator("replay", args.to_json()),
            Command::Replays(ReplaysCommand::List { limit, .. }) => {
                Gate::operator("replays list", json!({ "limit": limit }))
            }
            Command::Replays(ReplaysCommand::Abandon { id, .. }) => {
                Gate::operator("replays abandon", json!({ "id": id }))
            }
            // Every audit subcommand, including any added later, is an auditor's.
            Command::Audit(audit) => {
                let (command, arguments) = audit.describe();
                Gate::auditor(command, arguments)
            }
        })
    }
}

impl DlqAction {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "all": self.all,
            "group": self.group,
            "consumer": self.consumer,
            "dry_run": self.dry_run,
            "force": self.force,
            "reason": self.reason,
        })
    }
}

impl SagaActionArgs {
    fn to_json(&self) -> serde_json::Value {
        json!({ "order_id": self.order_id, "reason": self.reason, "force": self.force })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = shopstream::telemetry::init(cli.command.log_format(), cli.command.role())?;
    let caller = match (cli.command.gate(), cli.command.settings()) {
        (Some(gate), Some(settings)) => match cli_auth::check(settings, &gate).await {
            Ok(caller) => Some(caller),
            Err(error) => match error.downcast_ref::<cli_auth::Refused>() {
                Some(refused) => {
                    eprintln!("{refused}");
                    std::process::exit(cli_auth::REFUSED_EXIT_CODE);
                }
                None => return Err(error),
            },
        },
        _ => None,
    };
    let result = run(cli.command, caller.as_ref()).await;
    telemetry.shutdown();
    result
}

/// The actor of a command that passed its gate.
fn actor(caller: Option<&Caller>) -> anyhow::Result<&str> {
    caller
        .map(|c| c.actor.as_str())
        .ok_or_else(|| anyhow::anyhow!("this command needs a signed-in caller"))
}

async fn run(command: Command, caller: Option<&Caller>) -> anyhow::Result<()> {
    match command {
        Command::Serve { settings, api } => {
            let app = shopstream::Application::build(&settings, &api).await?;
            shopstream::run_until_signalled(settings.shutdown_timeout(), |stopping| {
                app.run_until_stopped(stopping)
            })
            .await
        }
        Command::Accounts(AccountsCommand::Create {
            email,
            password,
            role,
            settings,
        }) => shopstream::api_role::create_account(&settings, &email, &password, &role).await,
        Command::Login {
            email,
            password_stdin,
            ttl,
            print,
            settings,
        } => {
            let login = Login {
                email,
                password_stdin,
                ttl,
                print,
            };
            cli_auth::login(&settings, &login).await
        }
        Command::Logout(settings) => cli_auth::logout(&settings).await,
        Command::Schema => {
            print!("{}", api::graphql::sdl());
            Ok(())
        }
        Command::Migrate(settings) => shopstream::migrate(&settings).await,
        Command::Project { settings, health } => {
            let _health = shopstream::health::serve(&health).await?;
            let role = projecting::ProjectRole::build(&settings).await?;
            shopstream::run_until_signalled(settings.shutdown_timeout(), |stopping| {
                role.run_until_stopped(stopping)
            })
            .await
        }
        Command::Projections(ProjectionsCommand::Status { json, settings }) => {
            projecting::projections_status(&settings, json).await
        }
        Command::Projections(ProjectionsCommand::Rebuild {
            name,
            force,
            settings,
        }) => projecting::projections_rebuild(&settings, &name, force).await,
        Command::Projections(ProjectionsCommand::Verify {
            name,
            json,
            settings,
        }) => {
            if !projecting::projections_verify(&settings, &name, json).await? {
                // Rows differ: a distinct exit code, as `diff` has.
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Streams(StreamsCommand::Info { json, settings }) => {
            shopstream::streams::streams_info(&settings, json).await
        }
        Command::Dlq(DlqCommand::List {
            consumer,
            aggregate,
            error,
            group,
            json,
            settings,
        }) => {
            let (aggregate_type, aggregate_id) = aggregate
                .as_deref()
                .map(projecting::parse_aggregate)
                .unzip();
            let filter = DeadLetterFilter {
                consumer,
                aggregate_type,
                aggregate_id: aggregate_id.flatten(),
                error_contains: error,
                ..DeadLetterFilter::default()
            };
            projecting::dlq_list(&settings, filter, group, json).await
        }
        Command::Dlq(DlqCommand::Show { id, json, settings }) => {
            projecting::dlq_show(&settings, id, json).await
        }
        Command::Dlq(DlqCommand::History {
            consumer,
            limit,
            json,
            settings,
        }) => projecting::dlq_history(&settings, consumer.as_deref(), limit, json).await,
        Command::Dlq(DlqCommand::Retry(a)) => act(a, Action::Retry, actor(caller)?).await,
        Command::Dlq(DlqCommand::Skip(a)) => act(a, Action::Skip, actor(caller)?).await,
        Command::Dlq(DlqCommand::Discard(a)) => act(a, Action::Discard, actor(caller)?).await,
        Command::Saga {
            settings,
            saga,
            health,
        } => {
            let _health = shopstream::health::serve(&health).await?;
            let role = saga_role::SagaRole::build(&settings, &saga).await?;
            shopstream::run_until_signalled(settings.shutdown_timeout(), |stopping| {
                role.run_until_stopped(stopping)
            })
            .await
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
        Command::Sagas(SagasCommand::Resume(a)) => {
            saga_act(a, SagaAction::Resume, actor(caller)?).await
        }
        Command::Sagas(SagasCommand::Retry(a)) => {
            saga_act(a, SagaAction::Retry, actor(caller)?).await
        }
        Command::Sagas(SagasCommand::Compensate(a)) => {
            saga_act(a, SagaAction::Compensate, actor(caller)?).await
        }
        Command::Audit(audit) => match shopstream::auditing::run(audit, actor(caller)?).await? {
            0 => Ok(()),
            code => std::process::exit(code),
        },
        Command::Replay { args, settings } => {
            match replaying::replay(&settings, args, actor(caller)?).await? {
                0 => Ok(()),
                code => std::process::exit(code),
            }
        }
        Command::Replays(ReplaysCommand::List {
            limit,
            json,
            settings,
        }) => replaying::replays_list(&settings, limit, json).await,
        Command::Replays(ReplaysCommand::Abandon { id, settings }) => {
            replaying::replays_abandon(&settings, id).await
        }
    }
}

async fn saga_act(args: SagaActionArgs, action: SagaAction, actor: &str) -> anyhow::Result<()> {
    saga_role::sagas_act(
        &args.settings,
        args.order_id,
        action,
        actor,
        &args.reason,
        args.force,
    )
    .await
}

async fn act(action: DlqAction, kind: Action, actor: &str) -> anyhow::Result<()> {
    if let Some(id) = action.id {
        return projecting::dlq_act(&action.settings, id, kind, actor, &action.reason).await;
    }
    let bulk = projecting::BulkAction {
        selector: SequenceSelector {
            consumer: action.consumer,
            fingerprint: action.group,
        },
        action: kind,
        actor: actor.to_owned(),
        reason: action.reason,
        force: action.force,
        dry_run: action.dry_run,
        chunk: action.chunk,
        rate: action.rate,
    };
    projecting::dlq_bulk(&action.settings, bulk).await
}
