//! Write throughput and latency of the event store, against its ceiling and its peer.
//!
//! One run starts, per durability level, one nats-server and one PostgreSQL database,
//! and measures on them, at 1, 16 and 64 concurrent writers over distinct aggregates:
//!
//! - (a) raw JetStream publish with `Nats-Expected-Last-Subject-Sequence`: the ceiling;
//! - (b) an inventory `ReceiveStock` command through `infra_nats::CommandBus` on the
//!   JetStream store (load, decide, append);
//! - (c) the same command through `CqrsFramework` on postgres-es: the peer.
//!
//! The levels are equally durable: "lazy" is JetStream's default sync against
//! PostgreSQL with `synchronous_commit=off`; "durable" is `sync_interval: always`
//! against PostgreSQL's default (`synchronous_commit=on`).
//!
//! It prints ops/s, p50 and p99 per cell, then the ratios b/a and b/c per level. It
//! asserts nothing: the numbers depend on the machine.
//!
//! Run it with `cargo bench --bench event_store` after `source scripts/env.sh` (which
//! sets `NATS_SERVER_BIN` and `DATABASE_URL`). `BENCH_SECONDS` sets the measured time
//! per cell (default 3), `BENCH_WRITERS` the writer counts (default `1,16,64`), and
//! `BENCH_PG_POOL` caps postgres-es's connection pool (default 16: on two cores, more
//! connections than that slowed postgres-es down at 64 writers).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::HeaderMap;
use chrono::Utc;
use cqrs_es::{Aggregate, AggregateError};
use domain::inventory::{Inventory, InventoryCommand, InventoryEvent};
use domain::{Actor, CommandMetadata, Sku};
use hdrhistogram::Histogram;
use infra_nats::subjects::{aggregate_subject, headers};
use infra_nats::{
    CommandBus, CommandError, CommitEnvelope, ConflictPolicy, EventStoreConfig,
    JetStreamEventStore, StreamSettings,
};
use postgres_es::PostgresCqrs;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use testkit::{NatsServer, NatsServerOptions, TestDatabase};
use uuid::Uuid;

/// Commands per aggregate before a writer moves to a fresh one: keeps every system's
/// aggregates short, so that loading is not what is measured.
const COMMANDS_PER_AGGREGATE: usize = 10;
/// Run before each measured window, not counted.
const WARM_UP: Duration = Duration::from_millis(500);
const DEFAULT_SECONDS: f64 = 3.0;
const DEFAULT_WRITERS: [usize; 3] = [1, 16, 64];
/// postgres-es's pool holds one connection per writer up to this many.
const DEFAULT_PG_POOL_CAP: u32 = 16;

/// postgres-es's tables, from its `db/init.sql`.
const POSTGRES_ES_SCHEMA: [&str; 2] = [
    "CREATE TABLE events (
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        sequence bigint CHECK (sequence >= 0) NOT NULL,
        event_type text NOT NULL,
        event_version text NOT NULL,
        payload json NOT NULL,
        metadata json NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, sequence)
    )",
    "CREATE TABLE snapshots (
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
        current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
        payload json NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
    )",
];

fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    println!("# shopstream event store benchmark");
    println!();
    println!(
        "{:.1} s measured per cell after {} ms of warm-up; writers {:?}; each writer owns its aggregates and moves to a fresh one every {COMMANDS_PER_AGGREGATE} commands, for all three systems.",
        config.measured.as_secs_f64(),
        WARM_UP.as_millis(),
        config.writers,
    );
    println!("(a) raw JetStream publish, expected-sequence header and unique Msg-Id, awaiting each ack; (b) `ReceiveStock` through `CommandBus` (load, decide, append on the JetStream store); (c) `ReceiveStock` through `CqrsFramework` on postgres-es.");
    println!(
        "postgres-es pool: one connection per writer, at most {}; NATS: one connection per cell.",
        config.pg_pool_cap
    );
    println!("Ops are successful commands (or acks); errors (conflicts included) are counted separately, warm-up included.");

    let mut cells = Vec::new();
    for level in [Level::Lazy, Level::Durable] {
        let nats = NatsServer::start_with(NatsServerOptions {
            jetstream: true,
            sync_always: level == Level::Durable,
            ..NatsServerOptions::default()
        });
        cells.extend(runtime.block_on(run_level(level, &nats.url(), &config))?);
    }

    println!();
    println!("| level | system | writers | ops/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for cell in &cells {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            cell.level.name(),
            cell.system.name(),
            cell.writers,
            cell.ops_per_second(),
            cell.quantile_ms(0.50),
            cell.quantile_ms(0.99),
            cell.measurement.errors,
        );
    }
    println!();
    println!("| level | writers | b/a | b/c |");
    println!("|---|---:|---:|---:|");
    for level in [Level::Lazy, Level::Durable] {
        for &writers in &config.writers {
            let rate = |system| {
                cells
                    .iter()
                    .find(|c| c.level == level && c.system == system && c.writers == writers)
                    .map_or(f64::NAN, Cell::ops_per_second)
            };
            let b = rate(System::Shopstream);
            println!(
                "| {} | {writers} | {:.2} | {:.2} |",
                level.name(),
                b / rate(System::RawPublish),
                b / rate(System::PostgresEs),
            );
        }
    }
    println!();
    println!("Targets: b/a >= 0.50 at 64 writers on both levels; b/c >= 3 lazy, >= 1 durable.");
    for cell in cells.iter().filter(|c| c.measurement.errors > 0) {
        let m = &cell.measurement;
        println!(
            "{} {} {} writers: {} errors ({} conflicts), first: {}",
            cell.level.name(),
            cell.system.name(),
            cell.writers,
            m.errors,
            m.conflicts,
            m.first_error.as_deref().unwrap_or("?"),
        );
    }
    Ok(())
}

struct Config {
    measured: Duration,
    writers: Vec<usize>,
    pg_pool_cap: u32,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let seconds = match std::env::var("BENCH_SECONDS") {
            Ok(text) => text
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .with_context(|| format!("BENCH_SECONDS `{text}` is not a positive number"))?,
            Err(_) => DEFAULT_SECONDS,
        };
        let writers = match std::env::var("BENCH_WRITERS") {
            Ok(text) => text
                .split(',')
                .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n > 0))
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("BENCH_WRITERS `{text}` is not a list like 1,16,64"))?,
            Err(_) => DEFAULT_WRITERS.to_vec(),
        };
        let pg_pool_cap = match std::env::var("BENCH_PG_POOL") {
            Ok(text) => text
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("BENCH_PG_POOL `{text}` is not a positive count"))?,
            Err(_) => DEFAULT_PG_POOL_CAP,
        };
        Ok(Self {
            measured: Duration::from_secs_f64(seconds),
            writers,
            pg_pool_cap,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Lazy,
    Durable,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Lazy => "lazy",
            Level::Durable => "durable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    RawPublish,
    Shopstream,
    PostgresEs,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::RawPublish => "(a) raw publish",
            System::Shopstream => "(b) shopstream",
            System::PostgresEs => "(c) postgres-es",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            System::RawPublish => "a",
            System::Shopstream => "b",
            System::PostgresEs => "c",
        }
    }
}

/// Runs every (system, writers) cell of one level on one nats-server and one database.
async fn run_level(level: Level, nats_url: &str, config: &Config) -> anyhow::Result<Vec<Cell>> {
    let client = infra_nats::connect(nats_url).await?;
    infra_nats::provision(&jetstream::new(client.clone()), &StreamSettings::default()).await?;
    let db = TestDatabase::create().await?;
    for statement in POSTGRES_ES_SCHEMA {
        sqlx::query(statement)
            .execute(&db.pool)
            .await
            .context("creating the postgres-es tables")?;
    }
    let mut pg_options: PgConnectOptions = db.url.parse().context("parsing the database url")?;
    if level == Level::Lazy {
        pg_options = pg_options.options([("synchronous_commit", "off")]);
    }
    let probe = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pg_options.clone())
        .await?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&probe)
        .await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&probe).await?;
    probe.close().await;
    println!();
    println!(
        "{}: nats-server {} with sync_interval {}; PostgreSQL synchronous_commit={synchronous_commit}, fsync={fsync}",
        level.name(),
        client.server_info().version,
        if level == Level::Durable { "always" } else { "default (2 min)" },
    );
    println!(
        "(a) payload: {} bytes, a real one-event commit envelope.",
        raw_payload("sample")?.len()
    );

    let mut cells = Vec::new();
    // Interleaving the systems keeps each ratio's two sides close in time.
    for &writers in &config.writers {
        for system in [System::RawPublish, System::Shopstream, System::PostgresEs] {
            let prefix = format!("{}-{}-{writers}", level.name(), system.tag());
            let measurement = match system {
                System::RawPublish => {
                    let client = infra_nats::connect(nats_url).await?;
                    let js = jetstream::new(client);
                    let writers = (0..writers)
                        .map(|w| {
                            Ok(RawPublish {
                                js: js.clone(),
                                payload: raw_payload(&format!("{prefix}-{w}-0"))?,
                                last_sequence: 0,
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    drive(&prefix, writers, config.measured).await
                }
                System::Shopstream => {
                    let client = infra_nats::connect(nats_url).await?;
                    let store =
                        JetStreamEventStore::<Inventory>::new(client, EventStoreConfig::default())
                            .await?;
                    // No retries: with distinct aggregates there are no conflicts, and a
                    // retried one should show up as an error rather than as latency.
                    let bus = Arc::new(CommandBus::new(
                        store,
                        (),
                        ConflictPolicy { max_retries: 0 },
                    ));
                    let writers = (0..writers)
                        .map(|_| Shopstream { bus: bus.clone() })
                        .collect();
                    drive(&prefix, writers, config.measured).await
                }
                System::PostgresEs => {
                    let connections = u32::try_from(writers)
                        .unwrap_or(u32::MAX)
                        .min(config.pg_pool_cap);
                    let pool = PgPoolOptions::new()
                        .max_connections(connections)
                        .min_connections(connections)
                        .connect_with(pg_options.clone())
                        .await?;
                    let cqrs = Arc::new(postgres_es::postgres_cqrs(pool.clone(), Vec::new(), ()));
                    let writers = (0..writers)
                        .map(|_| PostgresEs { cqrs: cqrs.clone() })
                        .collect();
                    let measurement = drive(&prefix, writers, config.measured).await;
                    pool.close().await;
                    measurement
                }
            }?;
            cells.push(Cell {
                level,
                system,
                writers,
                measurement,
            });
        }
    }
    Ok(cells)
}

/// Why one operation failed.
struct Failure {
    conflict: bool,
    message: String,
}

impl Failure {
    fn other(error: impl std::fmt::Display) -> Self {
        Self {
            conflict: false,
            message: error.to_string(),
        }
    }
}

/// One writer of one system: performs one operation at a time on the aggregate it is given.
trait Writer: Send + 'static {
    /// One operation on `aggregate_id`; `fresh` when it is the aggregate's first.
    fn write(
        &mut self,
        aggregate_id: &str,
        fresh: bool,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// (a) The ceiling: what the store's append costs without loading or deciding.
struct RawPublish {
    js: jetstream::Context,
    payload: Vec<u8>,
    last_sequence: u64,
}

impl Writer for RawPublish {
    async fn write(&mut self, aggregate_id: &str, fresh: bool) -> Result<(), Failure> {
        if fresh {
            self.last_sequence = 0;
        }
        let mut map = HeaderMap::new();
        map.insert(headers::MSG_ID, Uuid::now_v7().to_string().as_str());
        map.insert(
            headers::EXPECTED_LAST_SUBJECT_SEQUENCE,
            self.last_sequence.to_string().as_str(),
        );
        let subject = aggregate_subject(Inventory::TYPE, aggregate_id);
        let ack = self
            .js
            .publish_with_headers(subject, map, self.payload.clone().into())
            .await
            .map_err(Failure::other)?
            .await
            .map_err(|error| Failure {
                conflict: error.kind() == PublishErrorKind::WrongLastSequence,
                message: error.to_string(),
            })?;
        self.last_sequence = ack.sequence;
        Ok(())
    }
}

/// (b) shopstream: the command bus on the JetStream store.
struct Shopstream {
    bus: Arc<CommandBus<Inventory>>,
}

impl Writer for Shopstream {
    async fn write(&mut self, aggregate_id: &str, _fresh: bool) -> Result<(), Failure> {
        let metadata = CommandMetadata::new(Actor::System("bench".into()));
        let command = receive_stock(aggregate_id)?;
        match self.bus.execute(aggregate_id, command, &metadata).await {
            Ok(_) => Ok(()),
            Err(error) => Err(Failure {
                conflict: matches!(error, CommandError::Conflict { .. }),
                message: error.to_string(),
            }),
        }
    }
}

/// (c) The peer: cqrs-es on postgres-es.
struct PostgresEs {
    cqrs: Arc<PostgresCqrs<Inventory>>,
}

impl Writer for PostgresEs {
    async fn write(&mut self, aggregate_id: &str, _fresh: bool) -> Result<(), Failure> {
        let metadata = CommandMetadata::new(Actor::System("bench".into()));
        let command = receive_stock(aggregate_id)?;
        self.cqrs
            .execute_with_metadata(aggregate_id, command, metadata.to_map())
            .await
            .map_err(|error| Failure {
                conflict: matches!(error, AggregateError::AggregateConflict),
                message: error.to_string(),
            })
    }
}

fn receive_stock(sku: &str) -> Result<InventoryCommand, Failure> {
    Ok(InventoryCommand::ReceiveStock {
        sku: Sku::parse(sku).map_err(Failure::other)?,
        quantity: 12,
        reference: "delivery note DN-2024-000417".to_owned(),
    })
}

/// The message (b) would store for one `ReceiveStock`, so that (a) publishes as much.
fn raw_payload(aggregate_id: &str) -> anyhow::Result<Vec<u8>> {
    let event = InventoryEvent::StockReceived {
        sku: Sku::parse(aggregate_id)?,
        quantity: 12,
        reference: "delivery note DN-2024-000417".to_owned(),
    };
    let metadata = CommandMetadata::new(Actor::System("bench".into())).to_map();
    let envelope =
        CommitEnvelope::new::<Inventory>(aggregate_id, 1, &[event], &metadata, Utc::now())?;
    Ok(serde_json::to_vec(&envelope)?)
}

/// The result of one (system, writers) cell.
struct Cell {
    level: Level,
    system: System,
    writers: usize,
    measurement: Measurement,
}

/// What the writers of one cell did, together.
struct Measurement {
    ops: u64,
    errors: u64,
    conflicts: u64,
    first_error: Option<String>,
    measured: Duration,
    /// Latencies of the measured operations, in microseconds.
    latency: Histogram<u64>,
}

impl Cell {
    fn ops_per_second(&self) -> f64 {
        self.measurement.ops as f64 / self.measurement.measured.as_secs_f64()
    }

    fn quantile_ms(&self, quantile: f64) -> f64 {
        self.measurement.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// What one writer task saw.
struct Tally {
    ops: u64,
    errors: u64,
    conflicts: u64,
    first_error: Option<String>,
    last_finish: Instant,
    latency: Histogram<u64>,
}

fn latency_histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `writers` concurrently for the warm-up plus `measured`, and counts the operations
/// that started inside the measured window.
async fn drive<W: Writer>(
    prefix: &str,
    writers: Vec<W>,
    measured: Duration,
) -> anyhow::Result<Measurement> {
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let until = measure_from + measured;
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(index, mut writer)| {
            let prefix = format!("{prefix}-{index}");
            tokio::spawn(async move {
                let mut tally = Tally {
                    ops: 0,
                    errors: 0,
                    conflicts: 0,
                    first_error: None,
                    last_finish: measure_from,
                    latency: latency_histogram(),
                };
                let mut aggregate = 0usize;
                let mut done_in_aggregate = 0usize;
                while Instant::now() < until {
                    if done_in_aggregate == COMMANDS_PER_AGGREGATE {
                        aggregate += 1;
                        done_in_aggregate = 0;
                    }
                    let aggregate_id = format!("{prefix}-{aggregate}");
                    let began = Instant::now();
                    let result = writer.write(&aggregate_id, done_in_aggregate == 0).await;
                    let finished = Instant::now();
                    tally.last_finish = tally.last_finish.max(finished);
                    match result {
                        Ok(()) => {
                            done_in_aggregate += 1;
                            if began >= measure_from {
                                tally.ops += 1;
                                let micros = u64::try_from((finished - began).as_micros())
                                    .unwrap_or(u64::MAX);
                                tally.latency.saturating_record(micros.max(1));
                            }
                        }
                        Err(failure) => {
                            tally.errors += 1;
                            tally.conflicts += u64::from(failure.conflict);
                            tally.first_error.get_or_insert(failure.message);
                            // The aggregate's state is now uncertain; carry on with a fresh one.
                            aggregate += 1;
                            done_in_aggregate = 0;
                        }
                    }
                }
                tally
            })
        })
        .collect();

    let mut total = Measurement {
        ops: 0,
        errors: 0,
        conflicts: 0,
        first_error: None,
        measured,
        latency: latency_histogram(),
    };
    let mut last_finish = measure_from;
    for task in tasks {
        let tally = task.await.context("a writer task panicked")?;
        total.ops += tally.ops;
        total.errors += tally.errors;
        total.conflicts += tally.conflicts;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        last_finish = last_finish.max(tally.last_finish);
        total
            .latency
            .add(&tally.latency)
            .context("merging latency histograms")?;
    }
    // The last operations may end after the window: divide by the time they really took.
    total.measured = last_finish
        .saturating_duration_since(measure_from)
        .max(measured);
    Ok(total)
}
