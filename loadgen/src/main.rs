//! `shopstream-loadgen`: the load generator and its invariant checker, a binary of its
//! own so that the production `shopstream` binary carries no test tool.

use clap::Parser;
use shopstream::LogFormat;
use shopstream_loadgen::{LoadgenCommand, LoadgenSubcommand};

/// As in `shopstream`: the load allocates many small, short-lived buffers per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = LoadgenCommand::parse();
    // The checker connects with the deployment's settings, its log format among them;
    // a load has no settings and logs text.
    let format = match &command.check {
        Some(LoadgenSubcommand::Check(args)) => args.settings.log_format,
        None => LogFormat::Text,
    };
    let telemetry = shopstream::telemetry::init(format, "loadgen")?;
    let result = run(command).await;
    telemetry.shutdown();
    match result? {
        true => Ok(()),
        // An invariant failed: a distinct exit code, as `shopstream projections verify`.
        false => std::process::exit(2),
    }
}

/// Runs the load or the check; `false` when the check found a broken invariant.
async fn run(command: LoadgenCommand) -> anyhow::Result<bool> {
    match command.check {
        Some(LoadgenSubcommand::Check(args)) => shopstream_loadgen::check(&args).await,
        None => {
            let json = command.run.json;
            let summary = shopstream_loadgen::run(command.run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.table());
            }
            Ok(true)
        }
    }
}
