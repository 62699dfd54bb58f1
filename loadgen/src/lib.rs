//! `shopstream-loadgen`: realistic shopping traffic through the GraphQL API at a fixed
//! rate, with latency percentiles per operation and a record of every acknowledged
//! request; and `shopstream-loadgen check`, which judges the system against that record.
//!
//! It is a client like any other: it speaks GraphQL over HTTP to one or more API
//! replicas and knows nothing of NATS or PostgreSQL. Only the checker reads the log and
//! the database, after the run. A test tool, so a binary of its own: the production
//! `shopstream` binary does not carry it.

pub mod check;
pub mod client;
pub mod mix;
pub mod record;
pub mod report;
pub mod shop;
pub mod traffic;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use check::CheckOptions;
use client::Graphql;
use mix::{Mix, Operation};
use record::Recorder;
use report::{Collector, RunInfo, Summary};
use shop::{Account, SetupPlan};
use shopstream::cli_auth::parse_ttl;
use shopstream::Settings;
use traffic::{Schedule, Traffic};

/// `shopstream-loadgen [OPTIONS]` runs a load; `shopstream-loadgen check` checks after one.
#[derive(Debug, Parser)]
#[command(
    name = "shopstream-loadgen",
    version,
    about = "Drive shopping traffic through the GraphQL API at a fixed rate and print \
             throughput and latency percentiles per operation; `shopstream-loadgen check` \
             then checks the invariants against the record of acknowledged requests",
    args_conflicts_with_subcommands = true
)]
pub struct LoadgenCommand {
    #[command(subcommand)]
    pub check: Option<LoadgenSubcommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum LoadgenSubcommand {
    /// Check the invariants against the record of acknowledged requests: no acknowledged
    /// order lost, every order terminal, no oversold or stranded stock, payments balance,
    /// no duplicate notification (exit code 2 when any fails).
    Check(CheckArgs),
}

/// How to run a load.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// GraphQL endpoint(s), comma-separated: requests go to each in turn.
    #[arg(
        long,
        env = "LOADGEN_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080/graphql"
    )]
    pub url: Vec<String>,
    /// Requests offered per second, whatever the answers take (open loop).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// How long to offer them, as 30s, 5m or 1h.
    #[arg(long, default_value = "30s", value_parser = parse_ttl)]
    pub duration: Duration,
    /// Most requests in flight; a request due while all are busy waits for one (and its
    /// latency counts the wait).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seeds every choice (operations, customers, SKUs, cards): the same seed offers the
    /// same mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Operation weights, as browse=30,search=14,detail=20,cart_add=10,cart_update=4,
    /// checkout=12,order_status=7,cancel=2,restock=1 (the default); operations left out
    /// are not sent.
    #[arg(long, value_parser = str::parse::<Mix>)]
    pub mix: Option<Mix>,
    /// Share of checkouts paid with `tok_declined` (the rest with good test cards).
    #[arg(long, default_value_t = 0.1)]
    pub declined: f64,
    /// Create the catalog first (products with variants, stock received for every SKU)
    /// as the admin; otherwise the load uses the published products it finds.
    #[arg(long)]
    pub setup: bool,
    /// With --setup: how many products.
    #[arg(long, default_value_t = 20)]
    pub products: usize,
    /// With --setup: units received for every SKU.
    #[arg(long, default_value_t = 1_000)]
    pub stock: u32,
    /// Customers to register (0: one per 20 requests/s, at least 10), so that no
    /// account nears the per-user rate limit.
    #[arg(long, default_value_t = 0)]
    pub customers: usize,
    /// The admin who sets up and restocks.
    #[arg(long, env = "LOADGEN_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// The admin's password.
    #[arg(long, env = "LOADGEN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Longest wait for one answer.
    #[arg(long, default_value = "30s", value_parser = parse_ttl)]
    pub timeout: Duration,
    /// Write every acknowledged request to this file, one JSON object a line (for
    /// `shopstream-loadgen check`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(short, long)]
    pub json: bool,
}

/// How to check.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The record a run wrote with --record.
    #[arg(long)]
    pub record: PathBuf,
    /// How long orders may take to reach a terminal state and read models to catch up.
    #[arg(long, default_value = "120s", value_parser = parse_ttl)]
    pub settle_timeout: Duration,
    /// Also recompute every read model from the log and compare it with the live one.
    #[arg(long)]
    pub verify_read_models: bool,
    /// Print the report as JSON.
    #[arg(short, long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: Settings,
}

/// `shopstream-loadgen`: sets up, runs the load, prints the summary.
///
/// # Errors
/// When the options do not fit together, or setting up (signing in, registering,
/// creating the catalog) fails; failed requests during the load are counted, not errors.
pub async fn run(args: RunArgs) -> anyhow::Result<Summary> {
    let mix = args.mix.clone().unwrap_or_default();
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be above 0");
    }
    if !(0.0..=1.0).contains(&args.declined) {
        bail!("--declined is a share between 0 and 1");
    }
    let wants_admin = args.setup || mix.shares().iter().any(|(op, _)| *op == Operation::Restock);
    let admin_credentials = match (&args.admin_email, &args.admin_password) {
        (Some(email), Some(password)) => Some((email.clone(), password.clone())),
        _ if wants_admin => bail!(
            "--setup and restocks need an admin: set LOADGEN_ADMIN_EMAIL and LOADGEN_ADMIN_PASSWORD \
             (or leave restock out of --mix)"
        ),
        _ => None,
    };
    if args.rate > 200.0 {
        // The API's default per-IP limit; every request here comes from one address.
        eprintln!(
            "note: above 200 requests/s from one address the API's default per-IP limit answers \
             RATE_LIMITED; start it with RATE_LIMIT_IP_PER_SECOND=0"
        );
    }
    let customers = if args.customers == 0 {
        ((args.rate / 20.0).ceil() as usize).max(10)
    } else {
        args.customers
    };
    let graphql = Graphql::new(args.url.clone(), args.timeout, args.concurrency)?;
    let (recorder, writer) = match &args.record {
        Some(path) => {
            let (recorder, writer) = Recorder::create(path)?;
            (recorder, Some(writer))
        }
        None => (Recorder::disabled(), None),
    };
    let collector = Collector::default();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    let admin = match &admin_credentials {
        Some((email, password)) => Some(
            Account::sign_in(&graphql, email, password)
                .await
                .context("signing in the admin")?,
        ),
        None => None,
    };
    let products = match (&admin, args.setup) {
        (Some(admin), true) => {
            eprintln!(
                "setting up {} products with {} units per SKU",
                args.products, args.stock
            );
            let plan = SetupPlan {
                products: args.products,
                stock: args.stock,
            };
            let prefix = format!("LG{}", run_id.to_uppercase());
            shop::set_up(
                &graphql, admin, plan, args.seed, &prefix, &recorder, &collector,
            )
            .await?
        }
        _ => shop::discover(&graphql, None, 500).await?,
    };
    eprintln!("registering {customers} customers");
    let password = format!("loadgen-{}", uuid::Uuid::new_v4().simple());
    let customers =
        shop::register_customers(&graphql, customers, &format!("lg-{run_id}"), &password).await?;

    let skus: Vec<String> = products.iter().flat_map(|p| p.skus.clone()).collect();
    let categories: Vec<String> = products
        .iter()
        .map(|p| p.category.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let words: Vec<String> = products
        .iter()
        .flat_map(|p| {
            p.name
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|w| w.chars().all(char::is_alphabetic) && w.len() > 2)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if words.is_empty() {
        bail!("no product name has a word to search for");
    }
    let info = RunInfo {
        urls: args.url.clone(),
        rate: args.rate,
        duration_seconds: args.duration.as_secs_f64(),
        concurrency: args.concurrency,
        seed: args.seed,
        customers: customers.len(),
        skus: skus.len(),
        mix: mix
            .shares()
            .into_iter()
            .map(|(op, share)| (op.as_str().to_owned(), share))
            .collect(),
        delayed_by_concurrency: 0,
    };
    let traffic = Arc::new(Traffic {
        graphql,
        products,
        skus,
        words,
        categories,
        customers,
        admin,
        recorder,
        collector,
        mix,
        seed: args.seed,
        declined: args.declined,
        run_id,
    });
    eprintln!(
        "offering {} requests/s for {} s",
        args.rate,
        args.duration.as_secs()
    );
    let driven = traffic::drive(
        traffic.clone(),
        Schedule {
            rate: args.rate,
            duration: args.duration,
            concurrency: args.concurrency,
        },
        shopstream::shutdown_signal(),
    )
    .await;
    let summary = traffic.collector.summary(
        RunInfo {
            delayed_by_concurrency: driven.delayed_by_concurrency,
            ..info
        },
        driven.elapsed,
    );
    // Every task is done: dropping the last recorder ends the writer.
    drop(traffic);
    if let Some(writer) = writer {
        writer.await.context("the record writer stopped")??;
    }
    Ok(summary)
}

/// `shopstream-loadgen check`: `true` when every invariant holds.
///
/// # Errors
/// When the record, NATS or PostgreSQL cannot be read.
pub async fn check(args: &CheckArgs) -> anyhow::Result<bool> {
    let options = CheckOptions {
        record: args.record.clone(),
        settle_timeout: args.settle_timeout,
        verify_read_models: args.verify_read_models,
        json: args.json,
    };
    let report = check::check(&args.settings, &options).await?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.violations.is_empty())
}
