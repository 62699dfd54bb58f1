//! `shopstream`: one binary, one subcommand per role or operator task.
//!
//! Each subcommand is a type in the module that holds its functions (see
//! `shopstream::cli::CliCommand`); this file lists them once, in `commands!`, and runs
//! the one parsed, after its gate, on connections it shares with that gate. A new
//! command is its type in its module and one line (with its help) in that list.

use clap::{Parser, Subcommand};
use shopstream::cli::CliCommand;
use shopstream::cli_auth::{self, Caller, Gate};
use shopstream::{api_role, auditing, projecting, replaying, saga_role, streams};
use shopstream::{Connections, LogFormat, Settings};

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

/// Declares `Command`, one variant per subcommand type, and its `CliCommand`
/// implementation, which hands every call to the variant's type.
macro_rules! commands {
    ($($(#[$attr:meta])* $variant:ident($command:ty),)*) => {
        #[derive(Debug, Subcommand)]
        enum Command {
            $($(#[$attr])* $variant($command),)*
        }

        impl CliCommand for Command {
            fn settings(&self) -> Option<&Settings> {
                match self {
                    $(Command::$variant(command) => command.settings(),)*
                }
            }

            fn log_format(&self) -> LogFormat {
                match self {
                    $(Command::$variant(command) => command.log_format(),)*
                }
            }

            fn role(&self) -> &'static str {
                match self {
                    $(Command::$variant(command) => command.role(),)*
                }
            }

            fn gate(&self) -> Option<Gate> {
                match self {
                    $(Command::$variant(command) => command.gate(),)*
                }
            }

            async fn run(
                self,
                conns: &Connections,
                caller: Option<&Caller>,
            ) -> anyhow::Result<i32> {
                match self {
                    $(Command::$variant(command) => command.run(conns, caller).await,)*
                }
            }
        }
    };
}

commands! {
    /// Connect, provision the event store, migrate, and serve HTTP: the GraphQL API
    /// (/graphql, /graphql/ws), /livez, /readyz, /projections, /metrics.
    Serve(api_role::ServeCommand),
    /// Accounts: create one of any role (the first admin).
    #[command(subcommand)]
    Accounts(api_role::AccountsCommand),
    /// Sign in for the operator and auditor commands: checks the password and stores a
    /// session token in the session file (or prints it with --print).
    Login(cli_auth::LoginCommand),
    /// End the current session (SHOPSTREAM_TOKEN, else the session file's) and remove
    /// the session file.
    Logout(cli_auth::LogoutCommand),
    /// Print the GraphQL schema (SDL), as checked in at schema.graphql.
    Schema(api_role::SchemaCommand),
    /// Apply the PostgreSQL migrations and exit.
    Migrate(shopstream::MigrateCommand),
    /// Run every projector (active, or hot standby behind another replica) and the
    /// notification dispatcher.
    Project(projecting::ProjectCommand),
    /// Read models: progress and lag, rebuilds.
    #[command(subcommand)]
    Projections(projecting::ProjectionsCommand),
    /// The sequenced dead-letter queue.
    #[command(subcommand)]
    Dlq(projecting::DlqCommand),
    /// The event stream: size, range and every consumer's lag.
    #[command(subcommand)]
    Streams(streams::StreamsCommand),
    /// Run the order saga: drive placed orders to confirmation or compensation (every
    /// replica shares the work).
    Saga(saga_role::SagaCommand),
    /// Order sagas: list by state, show, resume, retry, compensate.
    #[command(subcommand)]
    Sagas(saga_role::SagasCommand),
    /// The auditor's tools: verify the hash chain, history, state at a point, access log.
    #[command(subcommand)]
    Audit(auditing::AuditCommand),
    /// Re-deliver a range of the log (by position or time, optionally one aggregate type
    /// or aggregate) to one projector, or to the saga in replay mode; chunked,
    /// rate-limited, resumable (run the same command again).
    Replay(replaying::ReplayCommand),
    /// Replays: list them, abandon an unfinished one.
    #[command(subcommand)]
    Replays(replaying::ReplaysCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    let telemetry = shopstream::telemetry::init(command.log_format(), command.role())?;
    let conns = Connections::of(command.settings().cloned());
    let result = gate_and_run(command, &conns).await;
    conns.close().await;
    telemetry.shutdown();
    match result? {
        shopstream::cli::SUCCESS => Ok(()),
        code => std::process::exit(code),
    }
}

/// Checks the caller against the command's gate, if it has one, then runs it; a
/// refusal is printed and becomes [`cli_auth::REFUSED_EXIT_CODE`].
async fn gate_and_run(command: Command, conns: &Connections) -> anyhow::Result<i32> {
    let caller = match command.gate() {
        Some(gate) => match cli_auth::check(conns, &gate).await {
            Ok(caller) => Some(caller),
            Err(error) => match error.downcast_ref::<cli_auth::Refused>() {
                Some(refused) => {
                    eprintln!("{refused}");
                    return Ok(cli_auth::REFUSED_EXIT_CODE);
                }
                None => return Err(error),
            },
        },
        None => None,
    };
    command.run(conns, caller.as_ref()).await
}
