//! Orders through the saga, end to end: placed, reserved, authorised, captured, committed
//! and confirmed, and the order read model showing it; against raw JetStream publishes
//! measured in the same run.
//!
//! One run starts a nats-server and a fresh PostgreSQL database, `BENCH_SKUS` SKUs
//! (default 1,000) with plenty of stock, one in-process saga replica (the simulated
//! payment provider without added latency, keeping its ledger in PostgreSQL) and the
//! orders projector, then measures:
//!
//! - the baseline: raw JetStream publishes of order-sized messages, 64 in flight;
//! - the sustainable rate: `BENCH_CLOSED_LOOP` customers (default 256) each placing an
//!   order and waiting for its confirmation, for `BENCH_SECONDS` (default 10);
//! - latency at 10%, 50% and 90% of that rate (open loop, orders placed on a fixed
//!   schedule): from the placement's ack to the `OrderConfirmed` commit (seen on a core
//!   NATS subscription), and to the read model showing `confirmed` (polled every 5 ms).
//!
//! It asserts nothing. Run: `source scripts/env.sh && cargo bench --bench saga`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::Utc;
use domain::inventory::InventoryCommand;
use domain::order::{OrderCommand, OrderLine};
use domain::payment::PaymentMethod;
use domain::{Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, Sku};
use futures::StreamExt;
use hdrhistogram::Histogram;
use infra_nats::subjects::headers;
use infra_nats::{EventStoreConfig, StreamSettings};
use projections::orders::OrdersProjection;
use projections::runtime::{Projector, ProjectorConfig};
use saga::provider::{SimulatedProvider, SimulatorConfig};
use saga::{SagaBuses, SagaConfig, SagaDriver, TriggerConfig};
use sqlx::PgPool;
use testkit::{NatsServer, TestDatabase};
use tokio::sync::{oneshot, Semaphore};
use uuid::Uuid;

/// The same allocator as the `shopstream` binary: with glibc's, this bench ran 557 to 765
/// orders/s; with mimalloc, 888 to 899 (the saga process spent about 17% in malloc/free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value} is not valid")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn metadata() -> CommandMetadata {
    CommandMetadata {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        actor: Actor::System("bench".to_owned()),
    }
}

/// Who waits for which order's confirmation (saga) and read-model row.
#[derive(Default)]
struct Waiters {
    confirmed: Mutex<HashMap<OrderId, oneshot::Sender<Instant>>>,
    projected: Mutex<HashMap<OrderId, oneshot::Sender<Instant>>>,
}

struct Shop {
    buses: SagaBuses,
    skus: usize,
    waiters: Arc<Waiters>,
}

struct Placed {
    acked: Instant,
    confirmed: oneshot::Receiver<Instant>,
    projected: oneshot::Receiver<Instant>,
}

impl Shop {
    /// Places order `n`; with `watch_read_model`, also waits for the read model to show it.
    async fn place(&self, n: usize, watch_read_model: bool) -> anyhow::Result<Placed> {
        let order_id = OrderId(Uuid::new_v4());
        let (confirmed_tx, confirmed) = oneshot::channel();
        let (projected_tx, projected) = oneshot::channel();
        self.waiters
            .confirmed
            .lock()
            .unwrap()
            .insert(order_id, confirmed_tx);
        if watch_read_model {
            self.waiters
                .projected
                .lock()
                .unwrap()
                .insert(order_id, projected_tx);
        }
        self.buses
            .orders
            .execute(
                &order_id.to_string(),
                OrderCommand::PlaceOrder {
                    order_id,
                    customer_id: CustomerId(Uuid::new_v4()),
                    lines: vec![OrderLine {
                        sku: Sku::parse(format!("SKU-{}", n % self.skus))?,
                        quantity: 1,
                        unit_price: Money::new(1250, Currency::EUR),
                    }],
                    currency: Currency::EUR,
                    placed_at: Utc::now(),
                    shipping_address: None,
                    payment_method: PaymentMethod::Card {
                        token: "tok_visa".to_owned(),
                    },
                },
                &metadata(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("placing: {e}"))?;
        Ok(Placed {
            acked: Instant::now(),
            confirmed,
            projected,
        })
    }
}

/// Sees every `OrderConfirmed` commit as the server stores it.
async fn watch_confirmations(
    client: async_nats::Client,
    waiters: Arc<Waiters>,
) -> anyhow::Result<()> {
    let mut subscription = client.subscribe("events.order.*").await?;
    tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let confirmed = message
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::EVENT_TYPES))
                .is_some_and(|types| {
                    // Whole names: a type whose name merely contains it is not it.
                    types
                        .as_str()
                        .split(',')
                        .any(|name| name == domain::order::OrderEvent::CONFIRMED_TYPE)
                });
            if !confirmed {
                continue;
            }
            let Some(id) = message.subject.as_str().rsplit('.').next() else {
                continue;
            };
            if let Ok(uuid) = Uuid::parse_str(id) {
                if let Some(tx) = waiters.confirmed.lock().unwrap().remove(&OrderId(uuid)) {
                    let _ = tx.send(Instant::now());
                }
            }
        }
    });
    Ok(())
}

/// Polls the orders read model for the orders waited on.
fn watch_read_model(pool: PgPool, waiters: Arc<Waiters>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let pending: Vec<Uuid> = waiters
                .projected
                .lock()
                .unwrap()
                .keys()
                .map(|id| id.as_uuid())
                .collect();
            if pending.is_empty() {
                continue;
            }
            let shown: Vec<Uuid> = match sqlx::query_scalar(
                "SELECT order_id FROM orders.orders WHERE status = 'confirmed' AND order_id = ANY($1)",
            )
            .bind(&pending)
            .fetch_all(&pool)
            .await
            {
                Ok(shown) => shown,
                Err(_) => continue,
            };
            let now = Instant::now();
            let mut waiting = waiters.projected.lock().unwrap();
            for id in shown {
                if let Some(tx) = waiting.remove(&OrderId(id)) {
                    let _ = tx.send(now);
                }
            }
        }
    });
}

struct Measured {
    orders: u64,
    seconds: f64,
    to_confirmed: Histogram<u64>,
    to_read_model: Histogram<u64>,
}

async fn finish(
    placed: Placed,
    to_confirmed: &Mutex<Histogram<u64>>,
    to_read_model: &Mutex<Histogram<u64>>,
) {
    if let Ok(Ok(at)) = tokio::time::timeout(Duration::from_secs(30), placed.confirmed).await {
        let _ = to_confirmed
            .lock()
            .unwrap()
            .record(at.saturating_duration_since(placed.acked).as_micros() as u64);
    }
    if let Ok(Ok(at)) = tokio::time::timeout(Duration::from_secs(30), placed.projected).await {
        let _ = to_read_model
            .lock()
            .unwrap()
            .record(at.saturating_duration_since(placed.acked).as_micros() as u64);
    }
}

async fn closed_loop(shop: Arc<Shop>, customers: usize, seconds: u64) -> anyhow::Result<Measured> {
    let to_confirmed = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let to_read_model = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..customers)
        .map(|c| {
            let shop = shop.clone();
            let to_confirmed = to_confirmed.clone();
            tokio::spawn(async move {
                let mut n = c;
                let mut done = 0u64;
                while Instant::now() < until {
                    let Ok(placed) = shop.place(n, false).await else {
                        continue;
                    };
                    n += customers;
                    let acked = placed.acked;
                    if let Ok(Ok(at)) =
                        tokio::time::timeout(Duration::from_secs(30), placed.confirmed).await
                    {
                        let _ = to_confirmed
                            .lock()
                            .unwrap()
                            .record(at.saturating_duration_since(acked).as_micros() as u64);
                        done += 1;
                    }
                    drop(placed.projected);
                }
                done
            })
        })
        .collect();
    let mut orders = 0;
    for task in tasks {
        orders += task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let to_confirmed = Arc::try_unwrap(to_confirmed)
        .map_err(|_| anyhow::anyhow!("shared"))?
        .into_inner()?;
    let to_read_model = Arc::try_unwrap(to_read_model)
        .map_err(|_| anyhow::anyhow!("shared"))?
        .into_inner()?;
    Ok(Measured {
        orders,
        seconds,
        to_confirmed,
        to_read_model,
    })
}

async fn open_loop(
    shop: Arc<Shop>,
    rate: f64,
    seconds: u64,
    offset: usize,
) -> anyhow::Result<Measured> {
    let to_confirmed = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let to_read_model = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * seconds as f64) as usize;
    let slots = Arc::new(Semaphore::new(4096));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await?;
        let shop = shop.clone();
        let to_confirmed = to_confirmed.clone();
        let to_read_model = to_read_model.clone();
        tasks.push(tokio::spawn(async move {
            if let Ok(placed) = shop.place(offset + i, true).await {
                finish(placed, &to_confirmed, &to_read_model).await;
            }
            drop(permit);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let to_confirmed = Arc::try_unwrap(to_confirmed)
        .map_err(|_| anyhow::anyhow!("shared"))?
        .into_inner()?;
    let to_read_model = Arc::try_unwrap(to_read_model)
        .map_err(|_| anyhow::anyhow!("shared"))?
        .into_inner()?;
    Ok(Measured {
        orders: to_confirmed.len(),
        seconds,
        to_confirmed,
        to_read_model,
    })
}

async fn raw_publish(js: &jetstream::Context, seconds: u64) -> anyhow::Result<f64> {
    let payload = bytes::Bytes::from(vec![b'x'; 700]);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..64)
        .map(|w| {
            let js = js.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while Instant::now() < until {
                    let subject = format!("events.bench.w{w}-{}", sent % 10);
                    if let Ok(ack) = js.publish(subject, payload.clone()).await {
                        if ack.await.is_ok() {
                            sent += 1;
                        }
                    }
                }
                sent
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await?;
    }
    Ok(sent as f64 / started.elapsed().as_secs_f64())
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> String {
    if histogram.is_empty() {
        return "-".to_owned();
    }
    format!(
        "{:.1}",
        histogram.value_at_quantile(quantile) as f64 / 1000.0
    )
}

async fn run() -> anyhow::Result<()> {
    let skus: usize = env_or("BENCH_SKUS", 1_000)?;
    let seconds: u64 = env_or("BENCH_SECONDS", 10)?;
    let customers: usize = env_or("BENCH_CLOSED_LOOP", 256)?;
    let nats = NatsServer::start();
    let db = TestDatabase::create().await?;
    projections::migrate(&db.pool).await?;
    let client = infra_nats::connect(&nats.url()).await?;
    let js = jetstream::new(client.clone());
    infra_nats::provision(&js, &StreamSettings::default()).await?;

    eprintln!("baseline: raw JetStream publish, 64 in flight, 3 s");
    let raw = raw_publish(&js, 3).await?;

    let provider =
        Arc::new(SimulatedProvider::install(db.pool.clone(), SimulatorConfig::default()).await?);
    let driver = Arc::new(SagaDriver::new(
        Arc::new(
            SagaBuses::new(
                infra_nats::connect(&nats.url()).await?,
                EventStoreConfig::default(),
            )
            .await?,
        ),
        provider.clone(),
        db.pool.clone(),
        SagaConfig::default(),
    ));
    let (stop, _) = tokio::sync::watch::channel(false);
    {
        let mut stopped = stop.subscribe();
        let js = jetstream::new(client.clone());
        tokio::spawn(saga::run(
            driver,
            js,
            TriggerConfig {
                max_in_flight: 1024,
                ..TriggerConfig::default()
            },
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
    }
    {
        let mut stopped = stop.subscribe();
        let projector = Projector::new(
            Arc::new(OrdersProjection),
            db.pool.clone(),
            js.clone(),
            ProjectorConfig::default(),
        );
        tokio::spawn(projector.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    let waiters = Arc::new(Waiters::default());
    watch_confirmations(client.clone(), waiters.clone()).await?;
    watch_read_model(db.pool.clone(), waiters.clone());
    let shop = Arc::new(Shop {
        buses: SagaBuses::new(client.clone(), EventStoreConfig::default()).await?,
        skus,
        waiters,
    });
    eprintln!("stocking {skus} SKUs");
    for i in 0..skus {
        shop.buses
            .inventory
            .execute(
                &format!("SKU-{i}"),
                InventoryCommand::ReceiveStock {
                    sku: Sku::parse(format!("SKU-{i}"))?,
                    quantity: 1_000_000,
                    reference: "bench".to_owned(),
                },
                &metadata(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("stocking: {e}"))?;
    }
    eprintln!("warm-up");
    closed_loop(shop.clone(), 32, 2).await?;

    eprintln!("sustainable rate: {customers} customers in a closed loop, {seconds} s");
    let before = infra_nats::stream_last_position(&js).await?;
    let saturated = closed_loop(shop.clone(), customers, seconds).await?;
    let appended = infra_nats::stream_last_position(&js).await? - before;
    let sustainable = saturated.orders as f64 / saturated.seconds;
    let appends_per_order = appended as f64 / saturated.orders.max(1) as f64;
    let mut rows = vec![("closed loop (max)".to_owned(), saturated)];
    for (i, share) in [0.1, 0.5, 0.9].into_iter().enumerate() {
        let rate = (sustainable * share).max(1.0);
        eprintln!(
            "open loop at {:.0}% = {rate:.0} orders/s, {seconds} s",
            share * 100.0
        );
        let measured = open_loop(shop.clone(), rate, seconds, (i + 1) * 10_000_000).await?;
        rows.push((
            format!("open loop {:.0}% ({rate:.0}/s)", share * 100.0),
            measured,
        ));
    }
    let _ = stop.send(true);
    let ledger = provider.ledger().await?;

    println!();
    println!("saga end to end (nats-server {}, 1 saga replica, orders projector, simulated provider without latency)",
        std::env::var("NATS_SERVER_VERSION").unwrap_or_else(|_| "pinned".to_owned()));
    println!("baseline: raw JetStream publish, 64 in flight: {raw:.0} msgs/s");
    println!(
        "closed loop: {appends_per_order:.1} appends per order, {:.0} appends/s = {:.3} of raw publish",
        sustainable * appends_per_order,
        sustainable * appends_per_order / raw
    );
    println!();
    println!("| load | orders/s | vs raw publish | confirmed p50 / p95 / p99 ms | read model p50 / p95 / p99 ms |");
    println!("|---|---:|---:|---|---|");
    for (name, m) in &rows {
        let rate = m.orders as f64 / m.seconds;
        println!(
            "| {name} | {rate:.0} | {:.3} | {} / {} / {} | {} / {} / {} |",
            rate / raw,
            ms(&m.to_confirmed, 0.5),
            ms(&m.to_confirmed, 0.95),
            ms(&m.to_confirmed, 0.99),
            ms(&m.to_read_model, 0.5),
            ms(&m.to_read_model, 0.95),
            ms(&m.to_read_model, 0.99),
        );
    }
    println!();
    println!(
        "provider ledger: captured {} EUR, refunded {}, held {}",
        ledger.captured_minor / 100,
        ledger.refunded_minor,
        ledger.authorised_held_minor
    );
    Ok(())
}
