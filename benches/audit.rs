//! The operator and auditor tools at scale: a full-log replay to a projector, audit
//! reads of one long aggregate, and a bulk dead-letter retry, each against a raw read of
//! the same stream range measured in the same run.
//!
//! One run starts a nats-server (JetStream's default sync) and a fresh PostgreSQL
//! database, and measures three sections, each opened by its baseline:
//!
//! - replay: `BENCH_REPLAY_COMMITS` (100,000) inventory commits across
//!   `BENCH_AGGREGATES` (10,000) SKUs, applied first by the live inventory projector; then
//!   `shopstream replay --target inventory -f` over the whole log (the command's own
//!   function, `replaying::replay`), and `audit verify` over the same log. Baseline: an
//!   ordered consumer reading the range without decoding it.
//! - audit: one SKU with `BENCH_AUDIT_EVENTS` (10,000) events, committed one command at a
//!   time through `CommandBus` (receipt, then reservations and their commits; a snapshot
//!   every 100 events, the default): `audit::state_at` at its last version,
//!   `audit::history` in one page and walked in pages of 100 as `audit history
//!   --after-version` does, and a cold load through the event store without and with the
//!   snapshot. Each is run `BENCH_REPEAT` (5) times and the median time is reported,
//!   except the paged history, which runs once (it is by far the slowest).
//!   Baseline: batch direct get of the aggregate's subject, not decoded.
//! - dead letters, per count in `BENCH_DLQ_AGGREGATES` (`1000,10`): `BENCH_DLQ_COMMITS`
//!   (10,000) commits across that many SKUs, parked by the inventory projector (a trigger
//!   refuses their stock rows), the trigger dropped, then `dlq retry --all -f` (the
//!   command's own function, `projecting::dlq_bulk`). Baseline: batch direct get of the
//!   parked positions, not decoded.
//!
//! Peak memory: before each step the kernel's high-water mark of this process is reset
//! (`5` written to `/proc/self/clear_refs`); after the step `VmHWM` is read from
//! `/proc/self/status` and shown with its increase over `VmRSS` before the step. It is the
//! bench process only (the tools' client side, on mimalloc like the binary): nats-server
//! and PostgreSQL are other processes.
//!
//! It asserts nothing about speed (it stops only when a step did not do all of its work,
//! such as commits left parked after the retry). Run: `source scripts/env.sh && cargo bench --bench audit`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;
use chrono::Utc;
use domain::inventory::{Inventory, InventoryCommand, InventoryEvent};
use domain::{Actor, CommandMetadata, OrderId, Sku};
use futures::StreamExt;
use infra_nats::audit::{self, Bound};
use infra_nats::subjects::{aggregate_subject, EVENTS_STREAM};
use infra_nats::{
    CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore, StreamSettings,
};
use projections::dead_letters::{Action, SequenceSelector};
use projections::fixtures;
use projections::runtime::{Projector, ProjectorConfig, RetryPolicy};
use shopstream::projecting::{dlq_bulk, BulkAction};
use shopstream::replaying::{replay, ReplayArgs};
use shopstream::{Connections, Settings};
use sqlx::PgPool;
use testkit::{NatsServer, TestDatabase};
use uuid::Uuid;

/// The binary's allocator, so that peak memory is what the commands would show.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The actor recorded with the replay and the dead-letter actions.
const ACTOR: &str = "user:00000000-0000-0000-0000-00000000be4c";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value} is not valid")),
        Err(_) => Ok(default),
    }
}

struct Config {
    replay_commits: u64,
    aggregates: u64,
    audit_events: usize,
    repeat: usize,
    dlq_commits: u64,
    dlq_aggregates: Vec<u64>,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let dlq_aggregates: String = env_or("BENCH_DLQ_AGGREGATES", "1000,10".to_owned())?;
        let config = Self {
            replay_commits: env_or("BENCH_REPLAY_COMMITS", 100_000)?,
            aggregates: env_or("BENCH_AGGREGATES", 10_000)?,
            audit_events: env_or("BENCH_AUDIT_EVENTS", 10_000)?,
            repeat: env_or("BENCH_REPEAT", 5)?,
            dlq_commits: env_or("BENCH_DLQ_COMMITS", 10_000)?,
            dlq_aggregates: dlq_aggregates
                .split(',')
                .map(|n| n.trim().parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    anyhow::anyhow!("BENCH_DLQ_AGGREGATES={dlq_aggregates} is not a list of counts")
                })?,
        };
        if config.replay_commits == 0
            || config.aggregates == 0
            || config.audit_events < 2
            || config.repeat == 0
            || config.dlq_commits == 0
            || config.dlq_aggregates.contains(&0)
        {
            bail!("every BENCH_ size must be at least 1 (BENCH_AUDIT_EVENTS at least 2)");
        }
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run(config))
}

// ---------------------------------------------------------------------------------------
// Measuring

/// A field of `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`).
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("{field} in /proc/self/status"))
}

/// Time and memory of one step, from [`Meter::start`] to [`Meter::stop`].
struct Meter {
    rss_before_kib: u64,
    started: Instant,
}

struct Measured {
    seconds: f64,
    rss_before_kib: u64,
    peak_kib: u64,
}

impl Meter {
    /// Resets the process's peak RSS to its current RSS, then starts the clock.
    fn start() -> anyhow::Result<Self> {
        std::fs::write("/proc/self/clear_refs", "5")
            .context("resetting the peak RSS through /proc/self/clear_refs")?;
        Ok(Self {
            rss_before_kib: status_kib("VmRSS:")?,
            started: Instant::now(),
        })
    }

    fn stop(self) -> anyhow::Result<Measured> {
        let seconds = self.started.elapsed().as_secs_f64();
        Ok(Measured {
            seconds,
            rss_before_kib: self.rss_before_kib,
            peak_kib: status_kib("VmHWM:")?,
        })
    }
}

struct Row {
    step: String,
    items: u64,
    seconds: f64,
    /// The items/s of the section's baseline (this row's own for a baseline).
    baseline_rate: f64,
    rss_before_kib: u64,
    peak_kib: u64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.items as f64 / self.seconds
    }

    fn baseline(step: impl Into<String>, items: u64, measured: Measured) -> Self {
        let mut row = Self::against(step, items, measured, 0.0);
        row.baseline_rate = row.rate();
        row
    }

    fn against(
        step: impl Into<String>,
        items: u64,
        measured: Measured,
        baseline_rate: f64,
    ) -> Self {
        Self {
            step: step.into(),
            items,
            seconds: measured.seconds,
            baseline_rate,
            rss_before_kib: measured.rss_before_kib,
            peak_kib: measured.peak_kib,
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

// ---------------------------------------------------------------------------------------
// The run

struct Env {
    _nats: NatsServer,
    db: TestDatabase,
    client: async_nats::Client,
    js: jetstream::Context,
    settings: Settings,
}

async fn run(config: Config) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await?;
    shopstream::migrate_all(&db.pool).await?;
    let client = infra_nats::connect(&nats.url()).await?;
    let js = jetstream::new(client.clone());
    infra_nats::provision(&js, &StreamSettings::default()).await?;
    let settings = Settings::for_test(nats.url(), db.url.clone());
    let env = Env {
        _nats: nats,
        db,
        client,
        js,
        settings,
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    replay_section(&env, &config, &mut rows, &mut notes).await?;
    audit_section(&env, &config, &mut rows, &mut notes).await?;
    for &aggregates in &config.dlq_aggregates {
        dlq_section(&env, config.dlq_commits, aggregates, &mut rows, &mut notes).await?;
    }

    println!();
    println!("| step | items | seconds | items/s | × baseline | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.3} | {:.0} | {:.3} | {:.1} (+{:.1}) |",
            row.step,
            row.items,
            row.seconds,
            row.rate(),
            row.rate() / row.baseline_rate,
            mib(row.peak_kib),
            mib(row.peak_kib.saturating_sub(row.rss_before_kib)),
        );
    }
    println!();
    println!("× baseline: items/s over the section's baseline items/s (0.25 = four times slower). Peak RSS: this process's high-water mark during the step (reset before it), and in brackets its increase over the RSS before the step.");
    for note in &notes {
        println!("{note}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Replay

async fn replay_section(
    env: &Env,
    config: &Config,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let count = config.replay_commits;
    eprintln!(
        "replay: appending {count} commits across {} SKUs",
        config.aggregates
    );
    let first = infra_nats::stream_last_position(&env.js).await? + 1;
    let last = append(&env.js, "SKU", count, config.aggregates).await?;
    eprintln!("replay: the live inventory projector catches up to {last}");
    let started = Instant::now();
    catch_up(env, last, ProjectorConfig::default()).await?;
    eprintln!(
        "replay: caught up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let meter = Meter::start()?;
    let read = read_ordered_raw(&env.js, first, count).await?;
    let baseline = Row::baseline(
        "replay baseline: ordered consumer over the range, not decoded",
        read,
        meter.stop()?,
    );
    let rate = baseline.rate();
    rows.push(baseline);

    let meter = Meter::start()?;
    let mut commits = infra_nats::read_all(&env.js, first, None).await?;
    let mut read = 0;
    while let Some(commit) = commits.next().await {
        read += 1;
        if commit?.position >= last {
            break;
        }
    }
    drop(commits);
    rows.push(Row::against(
        "replay: `read_all` over the range (ordered consumer, decoded)",
        read,
        meter.stop()?,
        rate,
    ));

    let meter = Meter::start()?;
    let read = read_batches_raw(&env.client, "events.inventory.*", first - 1, last, 500).await?;
    rows.push(Row::against(
        "replay: batch direct get, 500 per request, not decoded (the replay's reader)",
        read,
        meter.stop()?,
        rate,
    ));

    eprintln!("replay: shopstream replay --target inventory over {first}..={last}");
    let args = ReplayArgs {
        target: "inventory".to_owned(),
        from_position: Some(first),
        to_position: Some(last),
        since: None,
        until: None,
        aggregate: None,
        dry_run: false,
        force: true,
        chunk: 500,
        rate: 0,
        reason: "bench".to_owned(),
        json: false,
    };
    let meter = Meter::start()?;
    // Connects lazily, inside the measured run, as the command does.
    let code = replay(&Connections::new(env.settings.clone()), args, ACTOR).await?;
    let measured = meter.stop()?;
    if code != 0 {
        bail!("the replay ended with exit code {code}");
    }
    rows.push(Row::against(
        "replay: `shopstream replay --target inventory -f` (chunks of 500), whole log",
        count,
        measured,
        rate,
    ));

    eprintln!("replay: audit verify over the whole log");
    let meter = Meter::start()?;
    let report = audit::verify(&env.js, None).await?;
    rows.push(Row::against(
        "replay: `audit verify` (every hash chain), whole log",
        report.commits,
        meter.stop()?,
        rate,
    ));
    notes.push(format!(
        "replay: {count} one-event commits across {} SKUs; `audit verify` read {} commits and found {} unchained (fixture commits carry no hash) and {} findings.",
        config.aggregates,
        report.commits,
        report.unchained,
        report.findings.len()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Audit

async fn audit_section(
    env: &Env,
    config: &Config,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let events = config.audit_events;
    let sku = "HOT-1";
    eprintln!("audit: committing {events} events to inventory {sku} through CommandBus");
    let started = Instant::now();
    let store =
        JetStreamEventStore::<Inventory>::new(env.client.clone(), EventStoreConfig::default())
            .await?;
    let bus = CommandBus::new(store, (), ConflictPolicy::default());
    let mut version = 0;
    let mut order = OrderId::from(Uuid::nil());
    for i in 0..events {
        let command = if i == 0 {
            InventoryCommand::ReceiveStock {
                sku: Sku::parse(sku)?,
                quantity: 1_000_000,
                reference: "opening stock".to_owned(),
            }
        } else if i % 2 == 1 {
            order = OrderId::from(Uuid::new_v4());
            InventoryCommand::ReserveStock {
                order_id: order,
                quantity: 1,
            }
        } else {
            InventoryCommand::CommitReservation { order_id: order }
        };
        let metadata = CommandMetadata::new(Actor::System("bench".into()));
        version = bus
            .execute(sku, command, &metadata)
            .await
            .with_context(|| format!("command {i} on {sku}"))?
            .version;
    }
    if version != events {
        bail!("{sku} is at version {version}, not {events}");
    }
    let snapshot = bus.store().snapshot_position(sku).await?;
    eprintln!(
        "audit: committed in {:.1} s; snapshot at {snapshot:?}",
        started.elapsed().as_secs_f64()
    );
    let subject = aggregate_subject("inventory", sku);
    let items = events as u64;
    let repeat = config.repeat;

    let (measured, commits) = repeated(repeat, || async {
        let mut after = 0;
        let mut commits = 0;
        loop {
            let batch = infra_nats::read_batch(&env.client, &subject, after, 256).await?;
            commits += batch.len();
            match batch.last() {
                Some((position, _)) if batch.len() == 256 => after = *position,
                _ => break,
            }
        }
        Ok(commits)
    })
    .await?;
    if commits != events {
        bail!("the raw read found {commits} commits on {subject}, not {events}");
    }
    let baseline = Row::baseline(
        format!("audit baseline: batch direct get of the aggregate's subject (256 per request), not decoded; median of {repeat}"),
        items,
        measured,
    );
    let rate = baseline.rate();
    rows.push(baseline);

    let (measured, state) = repeated(repeat, || async {
        Ok(audit::state_at(&env.client, "inventory", sku, Bound::Version(events)).await?)
    })
    .await?;
    if state.version != events {
        bail!(
            "state_at folded up to version {}, not {events}",
            state.version
        );
    }
    rows.push(Row::against(
        format!(
            "audit: `state_at` at version {events} (`audit state --version`; never uses snapshots)"
        ),
        items,
        measured,
        rate,
    ));

    let (measured, page) = repeated(repeat, || async {
        Ok(audit::history(&env.client, "inventory", sku, 0, events).await?)
    })
    .await?;
    if page.events.len() != events {
        bail!(
            "history returned {} events, not {events}",
            page.events.len()
        );
    }
    rows.push(Row::against(
        format!("audit: `history`, one page of {events}"),
        items,
        measured,
        rate,
    ));

    let (measured, pages) = repeated(1, || async {
        let mut after_version = 0;
        let mut pages = 0;
        loop {
            let page = audit::history(&env.client, "inventory", sku, after_version, 100).await?;
            pages += 1;
            match page.next_after_version {
                Some(next) => after_version = next,
                None => return Ok(pages),
            }
        }
    })
    .await?;
    rows.push(Row::against(
        format!("audit: `history` walked in {pages} pages of 100 (`audit history --after-version N`); once"),
        items,
        measured,
        rate,
    ));

    for (label, snapshot_every) in [("without snapshots", 0), ("with its snapshot", 100)] {
        let store = JetStreamEventStore::<Inventory>::new(
            env.client.clone(),
            EventStoreConfig {
                snapshot_every,
                cache_capacity: 0,
                ..EventStoreConfig::default()
            },
        )
        .await?;
        let (measured, loaded) = repeated(repeat, || async {
            Ok(store.load_fresh(sku).await?.version())
        })
        .await?;
        if loaded != events {
            bail!("the store loaded version {loaded}, not {events}");
        }
        rows.push(Row::against(
            format!("audit: event store cold load {label} (`load_fresh`)"),
            items,
            measured,
            rate,
        ));
    }
    notes.push(format!(
        "audit: inventory {sku}: one receipt, then reservations and their commits, one command each ({events} commits, {events} events); snapshot (version, position) {snapshot:?}, so the snapshot load reads the first batch of 256 commits, the snapshot and a tail of {} events. The paged history runs once (it is the slowest); the others report the median of {repeat} runs.",
        events - snapshot.map_or(0, |(version, _)| version)
    ));
    Ok(())
}

/// Runs `step` `times` times; the time is the median run, the memory the peak over all.
async fn repeated<T, F, Fut>(times: usize, mut step: F) -> anyhow::Result<(Measured, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let meter = Meter::start()?;
    let mut seconds = Vec::with_capacity(times);
    let mut last = None;
    for _ in 0..times {
        let started = Instant::now();
        last = Some(step().await?);
        seconds.push(started.elapsed().as_secs_f64());
    }
    let mut measured = meter.stop()?;
    measured.seconds = median(seconds);
    Ok((measured, last.context("no run")?))
}

// ---------------------------------------------------------------------------------------
// Dead letters

async fn dlq_section(
    env: &Env,
    count: u64,
    aggregates: u64,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let pool = &env.db.pool;
    poison(pool).await?;
    eprintln!("dlq: appending {count} commits across {aggregates} poisoned SKUs");
    let first = infra_nats::stream_last_position(&env.js).await? + 1;
    let last = append(&env.js, &format!("POISON-{aggregates}"), count, aggregates).await?;
    eprintln!("dlq: the inventory projector parks them");
    let started = Instant::now();
    catch_up(
        env,
        last,
        ProjectorConfig {
            // Park a failing commit at its first failure: the cause is known here.
            retry: RetryPolicy {
                max_attempts: 1,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
            },
            ..ProjectorConfig::default()
        },
    )
    .await?;
    let parked = parked_count(pool).await?;
    eprintln!(
        "dlq: {parked} parked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if parked != count {
        bail!("{parked} commits parked, not {count}");
    }
    sqlx::raw_sql("DROP TRIGGER refuse_poison ON inventory.stock_levels")
        .execute(pool)
        .await?;

    let meter = Meter::start()?;
    let read = read_batches_raw(&env.client, "events.>", first - 1, last, 1000).await?;
    let baseline = Row::baseline(
        format!("dlq baseline ({aggregates} sequences): batch direct get of the parked positions, not decoded"),
        read,
        meter.stop()?,
    );
    let rate = baseline.rate();
    rows.push(baseline);

    let meter = Meter::start()?;
    let payloads: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT position, payload FROM public.dead_letters WHERE status = 'parked' ORDER BY position",
    )
    .fetch_all(pool)
    .await?;
    let read = payloads.len() as u64;
    drop(payloads);
    rows.push(Row::against(
        format!("dlq ({aggregates} sequences): one SELECT of the parked rows' payloads"),
        read,
        meter.stop()?,
        rate,
    ));

    eprintln!("dlq: shopstream dlq retry --all -f");
    let meter = Meter::start()?;
    dlq_bulk(
        &Connections::new(env.settings.clone()),
        BulkAction {
            selector: SequenceSelector::default(),
            action: Action::Retry,
            actor: ACTOR.to_owned(),
            reason: "bench: the trigger is gone".to_owned(),
            force: true,
            dry_run: false,
            chunk: 100,
            rate: 0,
        },
    )
    .await?;
    let measured = meter.stop()?;
    let left = parked_count(pool).await?;
    if left != 0 {
        bail!("{left} commits still parked after the retry");
    }
    rows.push(Row::against(
        format!(
            "dlq ({aggregates} sequences of {}): `dlq retry --all -f`",
            count / aggregates
        ),
        count,
        measured,
        rate,
    ));
    notes.push(format!(
        "dlq: {count} commits across {aggregates} SKUs refused by a trigger on `inventory.stock_levels`, parked by the projector (each SKU's first commit as the head, the rest behind it), the trigger dropped, then retried: one transaction per sequence."
    ));
    Ok(())
}

/// Makes the inventory read model refuse every stock row of a `POISON-` SKU.
async fn poison(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE OR REPLACE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.sku LIKE 'POISON-%' THEN RAISE EXCEPTION 'poisoned sku %', NEW.sku; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON inventory.stock_levels
           FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();",
    )
    .execute(pool)
    .await?;
    Ok(())
}

async fn parked_count(pool: &PgPool) -> anyhow::Result<u64> {
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.dead_letters WHERE status = 'parked'")
            .fetch_one(pool)
            .await?;
    Ok(u64::try_from(parked)?)
}

// ---------------------------------------------------------------------------------------
// Shared

/// Publishes `count` commits receiving stock on SKUs `<prefix>-00000..` (`aggregates` of
/// them, round robin, each at its next version), keeping up to 1,000 acks outstanding;
/// returns the last position.
async fn append(
    js: &jetstream::Context,
    prefix: &str,
    count: u64,
    aggregates: u64,
) -> anyhow::Result<u64> {
    let mut pending = VecDeque::new();
    let mut last = 0;
    for i in 0..count {
        let sku = format!("{prefix}-{:05}", i % aggregates);
        let version = usize::try_from(i / aggregates)? + 1;
        let event = InventoryEvent::StockReceived {
            sku: Sku::parse(sku.as_str())?,
            quantity: 1,
            reference: format!("po-{i}"),
        };
        let commit = fixtures::commit::<Inventory>(0, &sku, version, &[event], Utc::now());
        let payload = serde_json::to_vec(&commit.envelope)?;
        pending.push_back(
            js.publish(aggregate_subject("inventory", &sku), payload.into())
                .await?,
        );
        while pending.len() >= 1000 {
            last = pending.pop_front().context("ack")?.await?.sequence;
        }
    }
    while let Some(ack) = pending.pop_front() {
        last = ack.await?.sequence;
    }
    Ok(last)
}

/// Runs the inventory projector until it has handled position `last`, then stops it.
async fn catch_up(env: &Env, last: u64, config: ProjectorConfig) -> anyhow::Result<()> {
    let projection = projections::registry::by_name("inventory").context("inventory projection")?;
    let projector = Projector::new(projection, env.db.pool.clone(), env.js.clone(), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(projector.run(async {
        let _ = stopped.await;
    }));
    loop {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM public.projector_positions WHERE projector = 'inventory'",
        )
        .fetch_optional(&env.db.pool)
        .await?;
        if position.is_some_and(|p| p >= i64::try_from(last).unwrap_or(i64::MAX)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    task.await?;
    Ok(())
}

/// Reads `count` messages from `first` with an ordered consumer, decoding nothing.
async fn read_ordered_raw(js: &jetstream::Context, first: u64, count: u64) -> anyhow::Result<u64> {
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?.take(usize::try_from(count)?);
    let mut read = 0;
    while let Some(message) = messages.next().await {
        message?;
        read += 1;
    }
    Ok(read)
}

/// Reads every message matching `filter` after position `after` up to `last` by batch
/// direct get, `batch` per request, decoding nothing; returns how many.
async fn read_batches_raw(
    client: &async_nats::Client,
    filter: &str,
    mut after: u64,
    last: u64,
    batch: usize,
) -> anyhow::Result<u64> {
    let mut read = 0;
    while after < last {
        let messages = infra_nats::read_batch(client, filter, after, batch).await?;
        let Some((position, _)) = messages.last() else {
            break;
        };
        after = *position;
        read += messages.iter().filter(|(p, _)| *p <= last).count() as u64;
    }
    Ok(read)
}
