//! Projector throughput: catch-up, rebuild and lag under live load, against raw
//! PostgreSQL inserts measured in the same run.
//!
//! One run starts a nats-server and a fresh PostgreSQL database, appends
//! `BENCH_COMMITS` inventory commits (default 200,000, one event each) across
//! `BENCH_AGGREGATES` SKUs (default 10,000), and measures:
//!
//! - the baselines: raw PostgreSQL inserts of the same number of movement-shaped rows,
//!   one `INSERT` per row (autocommit) and batched 500 rows per `UNNEST` statement and
//!   transaction (the best a projector can hope for);
//! - catch-up: the inventory projector (movements, stock levels, reservations) and the
//!   catalog projector (stock per SKU) from position 0 to the end of the log;
//! - rebuild: the inventory read model rebuilt beside the live one;
//! - lag: commits published at `BENCH_LIVE_RATE` per second (default 2,000) for
//!   `BENCH_LIVE_SECONDS` (default 10) while the projector follows; lag sampled every
//!   20 ms in commits and as the time from a commit's publish ack to its application.
//!
//! It asserts nothing. Run: `source scripts/env.sh && cargo bench --bench projections`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use chrono::Utc;
use domain::inventory::{Inventory, InventoryEvent};
use domain::Sku;
use hdrhistogram::Histogram;
use infra_nats::subjects::aggregate_subject;
use infra_nats::StreamSettings;
use projections::catalog::CatalogProjection;
use projections::fixtures;
use projections::inventory::InventoryProjection;
use projections::runtime::{rebuild, Projector, ProjectorConfig, RebuildOptions};
use projections::Projection;
use sqlx::PgPool;
use testkit::{NatsServer, TestDatabase};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value} is not valid")),
        Err(_) => Ok(default),
    }
}

struct Row {
    step: String,
    items: u64,
    seconds: f64,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.items as f64 / self.seconds
    }
}

fn main() -> anyhow::Result<()> {
    let commits: u64 = env_or("BENCH_COMMITS", 200_000)?;
    let aggregates: u64 = env_or("BENCH_AGGREGATES", 10_000)?;
    let live_rate: u64 = env_or("BENCH_LIVE_RATE", 2_000)?;
    let live_seconds: u64 = env_or("BENCH_LIVE_SECONDS", 10)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(commits, aggregates, live_rate, live_seconds))
}

async fn run(
    commits: u64,
    aggregates: u64,
    live_rate: u64,
    live_seconds: u64,
) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await?;
    projections::migrate(&db.pool).await?;
    let client = infra_nats::connect(&nats.url()).await?;
    let jetstream = jetstream::new(client);
    infra_nats::provision(&jetstream, &StreamSettings::default()).await?;
    let mut rows = Vec::new();

    eprintln!("baseline: raw PostgreSQL inserts");
    rows.push(raw_inserts_one_by_one(&db.pool, commits.min(50_000)).await?);
    rows.push(raw_inserts_batched(&db.pool, commits).await?);

    eprintln!("appending {commits} commits across {aggregates} SKUs");
    let started = Instant::now();
    let last = append(&jetstream, 0, commits, aggregates, None).await?;
    rows.push(Row {
        step: "append to JetStream (pipelined publish)".into(),
        items: commits,
        seconds: started.elapsed().as_secs_f64(),
        note: String::new(),
    });

    for filters in [
        vec!["events.inventory.*"],
        vec!["events.inventory.*", "events.product.*"],
        vec!["events.>"],
    ] {
        eprintln!("read: {filters:?}");
        rows.push(read_only(&jetstream, &filters, commits).await?);
    }

    for projection in [
        Arc::new(InventoryProjection) as Arc<dyn Projection>,
        Arc::new(CatalogProjection),
    ] {
        eprintln!("catch-up: {}", projection.name());
        let projector = Projector::new(
            Arc::clone(&projection),
            db.pool.clone(),
            jetstream.clone(),
            ProjectorConfig::default(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(projector.run(async {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        wait_for(&db.pool, projection.name(), last).await?;
        rows.push(Row {
            step: format!("catch-up: {} projector", projection.name()),
            items: commits,
            seconds: started.elapsed().as_secs_f64(),
            note: "batches of up to 500 commits per transaction".into(),
        });
        let _ = stop.send(());
        task.await?;
    }

    for projection in [
        Arc::new(InventoryProjection) as Arc<dyn Projection>,
        Arc::new(CatalogProjection),
    ] {
        eprintln!("rebuild: {}", projection.name());
        let name = projection.name();
        let started = Instant::now();
        let report = rebuild(
            projection,
            &db.pool,
            &jetstream,
            &RebuildOptions::default(),
            |_| {},
        )
        .await?;
        rows.push(Row {
            step: format!("rebuild: {name} (beside the live tables, then switch)"),
            items: report.commits,
            seconds: started.elapsed().as_secs_f64(),
            note: String::new(),
        });
    }

    eprintln!("live: {live_rate} commits/s for {live_seconds} s");
    let lag = live_lag(
        &db.pool,
        &jetstream,
        last,
        aggregates,
        live_rate,
        live_seconds,
    )
    .await?;

    let baseline = rows[1].rate();
    println!();
    println!("| step | items | seconds | items/s | vs batched raw insert | note |");
    println!("|---|---:|---:|---:|---:|---|");
    for row in &rows {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {} |",
            row.step,
            row.items,
            row.seconds,
            row.rate(),
            row.rate() / baseline,
            row.note
        );
    }
    println!();
    println!("| live load | commits/s offered | commits/s applied | lag p50 (commits) | lag p99 (commits) | lag max (commits) | latency p50 ms | latency p99 ms | latency max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| inventory projector | {} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
        live_rate,
        lag.applied_rate,
        lag.events.value_at_quantile(0.5),
        lag.events.value_at_quantile(0.99),
        lag.events.max(),
        lag.latency_us.value_at_quantile(0.5) as f64 / 1000.0,
        lag.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        lag.latency_us.max() as f64 / 1000.0,
    );
    Ok(())
}

/// Publishes `count` commits receiving stock on SKUs `0..aggregates`, keeping up to
/// 1,000 acks outstanding; returns the last position. With `rate`, paces to that many
/// per second and reports each ack time to `acked`.
async fn append(
    jetstream: &jetstream::Context,
    offset: u64,
    count: u64,
    aggregates: u64,
    rate: Option<(u64, tokio::sync::mpsc::UnboundedSender<(u64, Instant)>)>,
) -> anyhow::Result<u64> {
    let mut pending = std::collections::VecDeque::new();
    let mut last = 0;
    let started = Instant::now();
    for i in offset..offset + count {
        let sku = format!("SKU-{:05}", i % aggregates);
        let event = InventoryEvent::StockReceived {
            sku: Sku::parse(sku.as_str())?,
            quantity: 1,
            reference: format!("po-{i}"),
        };
        let commit = fixtures::commit::<Inventory>(0, &sku, 1, &[event], Utc::now());
        let payload = serde_json::to_vec(&commit.envelope)?;
        if let Some((per_second, _)) = &rate {
            let due = started + Duration::from_secs_f64((i - offset) as f64 / *per_second as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let ack = jetstream
            .publish(aggregate_subject("inventory", &sku), payload.into())
            .await?;
        pending.push_back(ack);
        let window = if rate.is_some() { 1 } else { 1000 };
        while pending.len() >= window {
            let ack = pending.pop_front().context("ack")?.await?;
            last = ack.sequence;
            if let Some((_, acked)) = &rate {
                let _ = acked.send((ack.sequence, Instant::now()));
            }
        }
    }
    while let Some(ack) = pending.pop_front() {
        last = ack.await?.sequence;
    }
    Ok(last)
}

async fn position(pool: &PgPool, name: &str) -> anyhow::Result<u64> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projector_positions WHERE projector = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(position.map_or(0, |p| u64::try_from(p).unwrap_or(0)))
}

async fn wait_for(pool: &PgPool, name: &str, last: u64) -> anyhow::Result<()> {
    while position(pool, name).await? < last {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

struct Lag {
    events: Histogram<u64>,
    latency_us: Histogram<u64>,
    applied_rate: f64,
}

async fn live_lag(
    pool: &PgPool,
    jetstream: &jetstream::Context,
    start: u64,
    aggregates: u64,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Lag> {
    let projector = Projector::new(
        Arc::new(InventoryProjection),
        pool.clone(),
        jetstream.clone(),
        ProjectorConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(projector.run(async {
        let _ = stopped.await;
    }));
    wait_for(pool, "inventory", start).await?;
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let count = rate * seconds;
    let writer = {
        let jetstream = jetstream.clone();
        tokio::spawn(async move {
            append(&jetstream, start, count, aggregates, Some((rate, acked_tx))).await
        })
    };
    let mut events = Histogram::<u64>::new(3)?;
    let mut latency_us = Histogram::<u64>::new(3)?;
    let mut outstanding = std::collections::VecDeque::new();
    let started = Instant::now();
    let mut last_published = start;
    loop {
        while let Ok((sequence, at)) = acked.try_recv() {
            outstanding.push_back((sequence, at));
            last_published = sequence;
        }
        let applied = position(pool, "inventory").await?;
        let now = Instant::now();
        while outstanding
            .front()
            .is_some_and(|(sequence, _)| *sequence <= applied)
        {
            let (_, at) = outstanding.pop_front().context("outstanding")?;
            latency_us
                .record(u64::try_from(now.duration_since(at).as_micros()).unwrap_or(u64::MAX))?;
        }
        events.record(last_published.saturating_sub(applied))?;
        if writer.is_finished() && outstanding.is_empty() && acked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    writer.await??;
    let _ = stop.send(());
    task.await?;
    Ok(Lag {
        events,
        latency_us,
        applied_rate: count as f64 / elapsed,
    })
}

/// Reads `count` commits with an ordered consumer on `filters`, applying nothing: what
/// the server and client deliver.
async fn read_only(
    jetstream: &jetstream::Context,
    filters: &[&str],
    count: u64,
) -> anyhow::Result<Row> {
    use futures::StreamExt;
    let stream = jetstream
        .get_stream(infra_nats::subjects::EVENTS_STREAM)
        .await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subjects: filters.iter().map(|f| (*f).to_owned()).collect(),
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await?.take(usize::try_from(count)?);
    while let Some(message) = messages.next().await {
        message?;
    }
    Ok(Row {
        step: format!(
            "read only: ordered consumer filtered on {}",
            filters.join(" + ")
        ),
        items: count,
        seconds: started.elapsed().as_secs_f64(),
        note: "no PostgreSQL".into(),
    })
}

const MOVEMENTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_movements (
    position bigint NOT NULL, event_index integer NOT NULL, sku text NOT NULL,
    kind text NOT NULL, quantity bigint NOT NULL, reference text,
    occurred_at timestamptz NOT NULL, PRIMARY KEY (position, event_index))";

async fn raw_inserts_one_by_one(pool: &PgPool, count: u64) -> anyhow::Result<Row> {
    sqlx::query(MOVEMENTS_TABLE).execute(pool).await?;
    sqlx::query("TRUNCATE bench_movements")
        .execute(pool)
        .await?;
    let started = Instant::now();
    for i in 0..count {
        sqlx::query("INSERT INTO bench_movements VALUES ($1, 0, $2, 'received', 1, $3, now())")
            .bind(i as i64)
            .bind(format!("SKU-{:05}", i % 10_000))
            .bind(format!("po-{i}"))
            .execute(pool)
            .await?;
    }
    Ok(Row {
        step: "baseline: raw INSERT, one row per statement (autocommit)".into(),
        items: count,
        seconds: started.elapsed().as_secs_f64(),
        note: "one movement row each".into(),
    })
}

async fn raw_inserts_batched(pool: &PgPool, count: u64) -> anyhow::Result<Row> {
    sqlx::query(MOVEMENTS_TABLE).execute(pool).await?;
    sqlx::query("TRUNCATE bench_movements")
        .execute(pool)
        .await?;
    let started = Instant::now();
    let mut next = 0u64;
    while next < count {
        let end = (next + 500).min(count);
        let positions: Vec<i64> = (next..end).map(|i| i as i64).collect();
        let skus: Vec<String> = (next..end)
            .map(|i| format!("SKU-{:05}", i % 10_000))
            .collect();
        let references: Vec<String> = (next..end).map(|i| format!("po-{i}")).collect();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO bench_movements
             SELECT p, 0, s, 'received', 1, r, now()
               FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS t(p, s, r)",
        )
        .bind(&positions)
        .bind(&skus)
        .bind(&references)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        next = end;
    }
    Ok(Row {
        step: "baseline: raw INSERT, 500 rows per UNNEST statement and transaction".into(),
        items: count,
        seconds: started.elapsed().as_secs_f64(),
        note: "the ratio column divides by this".into(),
    })
}
