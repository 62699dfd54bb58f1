//! End-to-end capacity (issue 7): orders per second to confirmation, and how long an
//! order takes from placement to confirmation, for the whole system on this machine.
//!
//! Two topologies, one after the other, in one run:
//!
//! - single: one nats-server (`sync_interval: always`, the events stream R1);
//! - cluster: three nats-servers on loopback ports forming a cluster (`sync_interval:
//!   always`, R3).
//!
//! Each gets a private PostgreSQL and the roles of docker-compose.yml as processes:
//! `serve` ×2, `project` ×1, `saga` ×2. `shopstream-loadgen` offers checkouts only
//! (`--mix checkout=1`, good cards) at rising rates, one step after the other; after
//! each step the bench waits until every acknowledged order is terminal. Per step it
//! reports the acknowledgement latency of `orderPlace` (as the client saw it), the
//! orders confirmed per second (first placement to last confirmation) and the
//! placement-to-confirmation latency, from the order events' commit times in
//! `orders.status_timeline`. Before the steps, a warm-up (not reported) creates the
//! catalog and places a few orders.
//!
//! The ceiling, measured on the same servers in the same run once the roles are
//! stopped: raw JetStream publish with `Nats-Expected-Last-Subject-Sequence`, 64
//! writers awaiting each ack, of messages as large as the average commit the load wrote,
//! to a stream with the same replicas. The ratio compares the appends the system
//! made per second at its best step with that ceiling.
//!
//! Run: `source scripts/env.sh && cargo bench --bench capacity` (also
//! `scripts/capacity.sh`). Settings: `CAPACITY_RATES` (orders/s offered per step,
//! default `10,20,40,60,80`), `CAPACITY_SECONDS` (per step, default 20),
//! `CAPACITY_TOPOLOGIES` (default `single,cluster`), `CAPACITY_PAYMENT_LATENCY_MS` (the
//! fake provider's answer time, default 20).

mod system;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use infra_nats::subjects::{headers, EVENTS_STREAM};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use system::{env_or, Deployment, ADMIN_EMAIL, ADMIN_PASSWORD};
use testkit::{NatsCluster, NatsServer, NatsServerOptions, PostgresServer};
use uuid::Uuid;

const RAW_WRITERS: usize = 64;
const RAW_SECONDS: f64 = 3.0;
const SETTLE_BOUND: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Single,
    Cluster,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Cluster => "cluster",
        }
    }

    fn replicas(self) -> usize {
        match self {
            Topology::Single => 1,
            Topology::Cluster => 3,
        }
    }
}

/// The NATS servers of one topology, kept alive for its measurements.
enum Nats {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Nats {
    fn start(topology: Topology) -> Self {
        match topology {
            Topology::Single => Nats::Single(NatsServer::start_with(NatsServerOptions {
                sync_always: true,
                ..NatsServerOptions::default()
            })),
            Topology::Cluster => Nats::Cluster(NatsCluster::start()),
        }
    }

    fn url(&self) -> String {
        match self {
            Nats::Single(server) => server.url(),
            Nats::Cluster(cluster) => cluster.url(),
        }
    }
}

/// One rate step of one topology.
struct Step {
    offered: f64,
    /// `orderPlace` as the load generator saw it.
    requests: u64,
    acknowledged: u64,
    errors: u64,
    ack_ms: [f64; 3],
    /// Orders of this step that reached `confirmed`, and the others.
    confirmed: u64,
    not_confirmed: u64,
    confirmed_per_second: f64,
    /// Placement to confirmation, p50/p95/p99, from the commit times.
    confirm_ms: [f64; 3],
    settled_in: Duration,
    /// Events appended per second over the step (the stream's growth).
    appends_per_second: f64,
}

struct TopologyReport {
    topology: Topology,
    nats_version: String,
    steps: Vec<Step>,
    events_per_order: f64,
    average_message_bytes: u64,
    raw_per_second: f64,
    raw_ms: [f64; 3],
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rates: Vec<f64> = env_or("CAPACITY_RATES", "10,20,40,60,80".to_owned())?
        .split(',')
        .map(|rate| rate.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .context("CAPACITY_RATES is a comma-separated list of orders/s")?;
    let seconds: u64 = env_or("CAPACITY_SECONDS", 20)?;
    let payment_latency_ms: u64 = env_or("CAPACITY_PAYMENT_LATENCY_MS", 20)?;
    let topologies = env_or("CAPACITY_TOPOLOGIES", "single,cluster".to_owned())?
        .split(',')
        .map(|name| match name.trim() {
            "single" => Ok(Topology::Single),
            "cluster" => Ok(Topology::Cluster),
            other => bail!("unknown topology {other} (single or cluster)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();

    let mut reports = Vec::new();
    for topology in topologies {
        eprintln!("== {}", topology.name());
        let report = measure(topology, &rates, seconds, payment_latency_ms).await?;
        println!("{}", table(&report, seconds, payment_latency_ms)?);
        reports.push(report);
    }
    if reports.len() == 2 {
        let best = |r: &TopologyReport| {
            r.steps
                .iter()
                .map(|s| s.confirmed_per_second)
                .fold(0.0, f64::max)
        };
        println!(
            "cluster/single: best confirmed orders/s {:.2}x, raw publish ceiling {:.2}x",
            best(&reports[1]) / best(&reports[0]).max(f64::MIN_POSITIVE),
            reports[1].raw_per_second / reports[0].raw_per_second.max(f64::MIN_POSITIVE),
        );
    }
    println!("bench took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn measure(
    topology: Topology,
    rates: &[f64],
    seconds: u64,
    payment_latency_ms: u64,
) -> anyhow::Result<TopologyReport> {
    let work = tempfile::Builder::new()
        .prefix("shopstream-capacity-")
        .tempdir()?;
    let nats = Nats::start(topology);
    let postgres = PostgresServer::start_with_max_connections(300).await;
    let common: Vec<(String, String)> = [
        ("NATS_URL", nats.url()),
        ("NATS_REPLICAS", topology.replicas().to_string()),
        ("DATABASE_URL", postgres.database_url("shopstream")),
        (
            "JWT_SECRET",
            "capacity-bench-secret-capacity-bench-0".to_owned(),
        ),
        ("RATE_LIMIT_IP_PER_SECOND", "0".to_owned()),
        ("RATE_LIMIT_USER_PER_SECOND", "0".to_owned()),
        ("PAYMENT_LATENCY_MS", payment_latency_ms.to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    system::migrate(&common)?;
    let mut deployment = Deployment::start(&common, work.path(), 1, 2).await?;
    system::create_admin(&common)?;
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&postgres.database_url("shopstream"))
        .await?;
    let client = infra_nats::connect(&nats.url()).await?;
    let js = jetstream::new(client.clone());

    // Warm-up, not reported: the catalog is created and stocked, caches and pools fill.
    eprintln!("   setting up and warming up");
    let warm_from = Utc::now();
    let warm_up = loadgen(&deployment, 2.0, 3, true).await?;
    settle(
        &db,
        warm_from,
        warm_up["acknowledged"]["orders"].as_u64().unwrap_or(0),
    )
    .await?;
    let nats_version = client.server_info().version.clone();

    let mut steps = Vec::new();
    let mut orders = 0u64;
    let first_messages = events_stream(&js).await?.messages;
    for &rate in rates {
        eprintln!("   {rate} orders/s for {seconds} s");
        let messages_before = events_stream(&js).await?.messages;
        let from: DateTime<Utc> = Utc::now();
        let load_started = Instant::now();
        let summary = loadgen(&deployment, rate, seconds, false).await?;
        let load_took = load_started.elapsed();
        let checkout = summary["operations"]
            .as_array()
            .and_then(|ops| ops.iter().find(|op| op["operation"] == "checkout"))
            .context("the load generator reported no checkout")?;
        let number = |v: &Value| v.as_f64().unwrap_or(0.0);
        let count = |v: &Value| v.as_u64().unwrap_or(0);
        let acknowledged = count(&summary["acknowledged"]["orders"]);
        let settled_in = settle(&db, from, acknowledged).await.inspect_err(|_| {
            system::dump_logs(&deployment.roles);
        })?;
        let to: DateTime<Utc> = Utc::now();
        let messages_after = events_stream(&js).await?.messages;
        let outcome = confirmations(&db, from, to).await?;
        orders += acknowledged;
        steps.push(Step {
            offered: rate,
            requests: count(&checkout["requests"]),
            acknowledged,
            errors: count(&checkout["errors"]) + count(&checkout["refused"]),
            ack_ms: [
                number(&checkout["p50_ms"]),
                number(&checkout["p95_ms"]),
                number(&checkout["p99_ms"]),
            ],
            confirmed: outcome.confirmed,
            not_confirmed: outcome.not_confirmed,
            confirmed_per_second: outcome.confirmed as f64 / outcome.span_seconds.max(1e-9),
            confirm_ms: outcome.confirm_ms,
            settled_in,
            appends_per_second: (messages_after - messages_before) as f64
                / (load_took + settled_in).as_secs_f64(),
        });
    }
    let events = events_stream(&js).await?;
    let events_per_order = (events.messages - first_messages) as f64 / orders.max(1) as f64;
    let average_message_bytes = events.bytes / events.messages.max(1);

    // The ceiling, on the same servers with nothing else running.
    for role in &mut deployment.roles {
        role.kill();
    }
    let (raw_per_second, raw_ms) = raw_publish(
        &js,
        topology.replicas(),
        usize::try_from(average_message_bytes).unwrap_or(512),
    )
    .await?;
    db.close().await;
    drop(client);
    Ok(TopologyReport {
        topology,
        nats_version,
        steps,
        events_per_order,
        average_message_bytes,
        raw_per_second,
        raw_ms,
    })
}

async fn events_stream(js: &jetstream::Context) -> anyhow::Result<stream::State> {
    let mut stream = js.get_stream(EVENTS_STREAM).await?;
    Ok(stream.info().await?.state.clone())
}

/// One `shopstream-loadgen` run of checkouts only; its JSON summary.
async fn loadgen(
    deployment: &Deployment,
    rate: f64,
    seconds: u64,
    setup: bool,
) -> anyhow::Result<Value> {
    let mut command = tokio::process::Command::new(system::loadgen());
    command
        .args([
            "--url",
            &deployment.graphql_urls(),
            "--rate",
            &rate.to_string(),
            "--duration",
            &format!("{seconds}s"),
            "--mix",
            "checkout=1",
            "--declined",
            "0",
            "--timeout",
            "60s",
            "--json",
        ])
        .env("LOADGEN_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("LOADGEN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    if setup {
        // Stock enough that no step runs out: the bench measures confirmations.
        command.args(["--setup", "--products", "20", "--stock", "1000000"]);
    }
    let output = command
        .output()
        .await
        .context("running shopstream-loadgen")?;
    if !output.status.success() {
        bail!(
            "loadgen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading the load generator's JSON summary")
}

/// Waits until at least `acknowledged` orders placed since `from` are terminal for now
/// (confirmed, cancelled or refunded) in the read model; how long that took.
async fn settle(db: &PgPool, from: DateTime<Utc>, acknowledged: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let settled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders.orders \
             WHERE placed_at >= $1 AND status IN ('confirmed', 'cancelled', 'refunded')",
        )
        .bind(from)
        .fetch_one(db)
        .await?;
        if u64::try_from(settled).unwrap_or(0) >= acknowledged {
            return Ok(started.elapsed());
        }
        if started.elapsed() > SETTLE_BOUND {
            bail!(
                "only {settled} of {acknowledged} orders settled within {} s",
                SETTLE_BOUND.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

struct Confirmations {
    confirmed: u64,
    not_confirmed: u64,
    /// From the first placement to the last confirmation.
    span_seconds: f64,
    confirm_ms: [f64; 3],
}

/// What became of the orders placed in [from, to), from their status timeline.
async fn confirmations(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Confirmations> {
    let row: (i64, i64, Option<f64>, Option<Vec<f64>>) = sqlx::query_as(
        "WITH placed AS ( \
             SELECT order_id, min(occurred_at) AS at FROM orders.status_timeline \
             WHERE status = 'placed' GROUP BY order_id \
             HAVING min(occurred_at) >= $1 AND min(occurred_at) < $2), \
         confirmed AS ( \
             SELECT order_id, min(occurred_at) AS at FROM orders.status_timeline \
             WHERE status = 'confirmed' GROUP BY order_id) \
         SELECT count(c.at), count(*) - count(c.at), \
             extract(epoch FROM max(c.at) - min(p.at))::float8, \
             percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP \
                 (ORDER BY extract(epoch FROM c.at - p.at)::float8 * 1000) \
         FROM placed p LEFT JOIN confirmed c USING (order_id)",
    )
    .bind(from)
    .bind(to)
    .fetch_one(db)
    .await
    .context("reading the status timeline")?;
    let quantiles = row.3.unwrap_or_default();
    let at = |i: usize| quantiles.get(i).copied().unwrap_or(f64::NAN);
    Ok(Confirmations {
        confirmed: u64::try_from(row.0).unwrap_or(0),
        not_confirmed: u64::try_from(row.1).unwrap_or(0),
        span_seconds: row.2.unwrap_or(0.0),
        confirm_ms: [at(0), at(1), at(2)],
    })
}

/// Raw JetStream publish: `RAW_WRITERS` writers, each on its own subject with the
/// expected-last-subject-sequence header and a unique message id, awaiting every ack,
/// for `RAW_SECONDS`. Messages/s and latency p50/p95/p99 in ms.
async fn raw_publish(
    js: &jetstream::Context,
    replicas: usize,
    payload_bytes: usize,
) -> anyhow::Result<(f64, [f64; 3])> {
    let name = "CAPACITY_RAW";
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec!["capacity.raw.>".to_owned()],
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..stream::Config::default()
    })
    .await
    .context("creating the raw publish stream")?;
    // A new R3 stream answers only once it has a leader.
    let stream = loop {
        let mut stream = js.get_stream(name).await?;
        let has_leader = stream
            .info()
            .await?
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.leader.is_some());
        if has_leader {
            break stream;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let payload = bytes::Bytes::from(vec![b'x'; payload_bytes.max(1)]);
    let deadline = Instant::now() + Duration::from_secs_f64(RAW_SECONDS);
    let published = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..RAW_WRITERS {
        let (js, stream, payload) = (js.clone(), stream.clone(), payload.clone());
        let (published, conflicts) = (published.clone(), conflicts.clone());
        writers.spawn(async move {
            let subject = format!("capacity.raw.{w}");
            let mut last_sequence = 0u64;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let mut map = HeaderMap::new();
                map.insert(headers::MSG_ID, Uuid::now_v7().to_string().as_str());
                map.insert(
                    headers::EXPECTED_LAST_SUBJECT_SEQUENCE,
                    last_sequence.to_string().as_str(),
                );
                let sent = Instant::now();
                let ack = js
                    .publish_with_headers(subject.clone(), map, payload.clone())
                    .await?
                    .await;
                match ack {
                    Ok(ack) => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                        last_sequence = ack.sequence;
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                    // A publish the client resent after a lost answer may have been
                    // stored: count it, and go on from what the stream holds.
                    // Server codes 10071 and 10164 (the latter has no kind of its own).
                    Err(error)
                        if error.kind() == PublishErrorKind::WrongLastSequence
                            || error.to_string().contains("wrong last sequence") =>
                    {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        last_sequence = stream
                            .get_last_raw_message_by_subject(&subject)
                            .await?
                            .sequence;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    while let Some(result) = writers.join_next().await {
        latencies.extend(result??);
    }
    let took = started.elapsed().as_secs_f64();
    js.delete_stream(name).await?;
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let conflicts = conflicts.load(Ordering::Relaxed);
    if conflicts > 0 {
        eprintln!("   raw publish: {conflicts} expected-sequence conflicts (not counted)");
    }
    Ok((
        published.load(Ordering::Relaxed) as f64 / took,
        [quantile(0.5), quantile(0.95), quantile(0.99)],
    ))
}

fn table(report: &TopologyReport, seconds: u64, payment_latency_ms: u64) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "\n{}: nats-server {} ({} node(s), events stream R{}, sync_interval always), private PostgreSQL (fsync on); \
         roles serve x2, project x1, saga x2; payment provider answers in {payment_latency_ms} ms; \
         {seconds} s per step, checkouts only",
        report.topology.name(),
        report.nats_version,
        report.topology.replicas(),
        report.topology.replicas(),
    )?;
    writeln!(
        out,
        "{:>9} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>9} {:>7} {:>11} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "offered/s",
        "sent",
        "acked",
        "errors",
        "ack p50",
        "ack p95",
        "ack p99",
        "confirmed",
        "other",
        "confirmed/s",
        "conf p50",
        "conf p95",
        "conf p99",
        "settle s",
        "appends/s",
    )?;
    for step in &report.steps {
        writeln!(
            out,
            "{:>9.0} {:>7} {:>6} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>9} {:>7} {:>11.1} {:>8.0} {:>8.0} {:>8.0} {:>8.1} {:>9.0}",
            step.offered,
            step.requests,
            step.acknowledged,
            step.errors,
            step.ack_ms[0],
            step.ack_ms[1],
            step.ack_ms[2],
            step.confirmed,
            step.not_confirmed,
            step.confirmed_per_second,
            step.confirm_ms[0],
            step.confirm_ms[1],
            step.confirm_ms[2],
            step.settled_in.as_secs_f64(),
            step.appends_per_second,
        )?;
    }
    let best = report
        .steps
        .iter()
        .max_by(|a, b| a.confirmed_per_second.total_cmp(&b.confirmed_per_second));
    writeln!(
        out,
        "latencies in ms; conf = placement to confirmation (commit times); {:.1} events appended per order, {} bytes per message on average",
        report.events_per_order, report.average_message_bytes
    )?;
    writeln!(
        out,
        "raw JetStream publish ceiling ({RAW_WRITERS} writers, {} B messages, R{}): {:.0} msgs/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        report.average_message_bytes,
        report.topology.replicas(),
        report.raw_per_second,
        report.raw_ms[0],
        report.raw_ms[1],
        report.raw_ms[2],
    )?;
    if let Some(best) = best {
        let order_ceiling = report.raw_per_second / report.events_per_order.max(1e-9);
        writeln!(
            out,
            "best step: {:.1} confirmed orders/s = {:.3}x the ceiling's {:.0} orders/s (raw msgs/s / events per order); appends {:.0}/s = {:.3}x raw publish",
            best.confirmed_per_second,
            best.confirmed_per_second / order_ceiling.max(1e-9),
            order_ceiling,
            best.appends_per_second,
            best.appends_per_second / report.raw_per_second.max(1e-9),
        )?;
    }
    Ok(out)
}
