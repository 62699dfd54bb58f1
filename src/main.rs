//! `shopstream`: one binary, one subcommand per role.

use clap::{Parser, Subcommand};
use shopstream::{LogFormat, Settings};
use tracing_subscriber::EnvFilter;

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
    /// Connect, provision the event store, migrate, and serve HTTP (/livez, /readyz).
    Serve(Settings),
    /// Apply the PostgreSQL migrations and exit.
    Migrate(Settings),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match &cli.command {
        Command::Serve(settings) | Command::Migrate(settings) => settings,
    };
    init_tracing(settings.log_format);
    match cli.command {
        Command::Serve(settings) => {
            let app = shopstream::Application::build(&settings).await?;
            app.run_until_stopped(shopstream::shutdown_signal()).await
        }
        Command::Migrate(settings) => shopstream::migrate(&settings).await,
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
