//! Rebuilding a read model beside the live one, then switching readers atomically.
//!
//! 1. Clone the structure of every table of the live schema into `<schema>__next`.
//! 2. Apply the log from position 1 into it (mode [`DeliveryMode::Rebuild`], its own
//!    position row `<name>#rebuild`), chasing the live projector's position, while the
//!    live projector and readers carry on.
//! 3. Lock the live position row (the live projector waits), apply up to exactly its
//!    position, and in one transaction rename the schemas, drop the old one, set the
//!    version, bump the epoch and hand over the dead letters.
//!
//! A rebuild never applies a commit beyond the live position: commits after it are the
//! live projector's, the only one allowed effects outside the read model. So a rebuild
//! while no live projector runs builds up to where the live tables were, and the live
//! projector does the rest when it starts.
//!
//! Readers name tables qualified by the live schema; after the commit they see the new
//! tables, before it the old ones: never a mix, never an error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use infra_nats::subjects::{aggregate_type_filter, EVENTS_STREAM};
use infra_nats::BoxError;
use sqlx::{Connection, PgConnection, PgPool};

use super::sink::{to_i64, to_u64, BatchError, Incoming, RetryPolicy, Sink, Target};
use crate::dead_letters;
use crate::projection::{DeliveryMode, Projection};

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    pub batch_size: usize,
    pub retry: RetryPolicy,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            retry: RetryPolicy::default(),
        }
    }
}

/// Where a rebuild has got to, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebuildProgress {
    /// The stream position applied so far.
    pub position: u64,
    /// Stream positions left up to the live projector's position: an upper bound on
    /// the commits still to apply (the live position moves on while a rebuild runs).
    pub remaining: u64,
    /// Commits applied (or parked) so far.
    pub commits: u64,
    pub elapsed: Duration,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub projection: String,
    pub commits: u64,
    pub parked: u64,
    /// The position the live projector continues from.
    pub position: u64,
    pub elapsed: Duration,
}

impl RebuildReport {
    fn record(&mut self, outcome: &super::sink::BatchOutcome) {
        let handled = outcome.applied + outcome.parked;
        self.commits += u64::try_from(handled).unwrap_or(0);
        self.parked += u64::try_from(outcome.parked).unwrap_or(0);
        self.position = self.position.max(outcome.position);
    }
}

/// Why a rebuild failed; the live tables are untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("a rebuild of `{0}` is already running")]
    AlreadyRunning(String),
    #[error("schema `{0}` has no tables: run the migrations first")]
    NoTables(String),
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("NATS: {0}")]
    Nats(#[source] BoxError),
    #[error("{0}")]
    Batch(#[from] BatchError),
}

/// The schema a rebuild of `schema` builds into.
pub fn next_schema(schema: &str) -> String {
    format!("{schema}__next")
}

/// The position row and dead-letter consumer of a rebuild of `name`.
pub fn rebuild_consumer(name: &str) -> String {
    format!("{name}#rebuild")
}

/// Rebuilds `projection` from position 1 beside its live tables and switches to the
/// result. `progress` is called after every batch.
///
/// # Errors
/// See [`RebuildError`]; on error the live tables and position are unchanged.
pub async fn rebuild(
    projection: Arc<dyn Projection>,
    pool: &PgPool,
    jetstream: &jetstream::Context,
    options: &RebuildOptions,
    mut progress: impl FnMut(&RebuildProgress),
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    // Its own connections: see `private_pool`.
    let pool = &super::private_pool(pool, 3);
    let name = projection.name();
    let live = projection.schema();
    let next = next_schema(live);
    let mut guard = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("shopstream.rebuild.{name}"))
        .fetch_one(&mut guard)
        .await?;
    if !locked {
        return Err(RebuildError::AlreadyRunning(name.to_owned()));
    }

    let scratch = Scratch {
        schema: next.clone(),
        consumer: rebuild_consumer(name),
    };
    let (tx, live_position, mut report) = replay_to_live(
        &projection,
        pool,
        jetstream,
        options,
        &scratch,
        started,
        &mut progress,
    )
    .await?;
    finish_switch(tx, &*projection, &next, live_position).await?;
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(format!("shopstream.rebuild.{name}"))
        .execute(&mut guard)
        .await?;
    guard.close().await.ok();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A schema and position row beside the live ones, which the log is replayed into.
pub(crate) struct Scratch {
    pub(crate) schema: String,
    /// Its position row and dead-letter consumer.
    pub(crate) consumer: String,
}

/// Clones the live tables' structure into `scratch`, replays the log into it while
/// chasing the live projector, then holds the live position row and applies up to
/// exactly the live position. Returns the transaction that holds the row (the live
/// projector waits until it ends), that position, and what was applied.
pub(crate) async fn replay_to_live(
    projection: &Arc<dyn Projection>,
    pool: &PgPool,
    jetstream: &jetstream::Context,
    options: &RebuildOptions,
    scratch: &Scratch,
    started: Instant,
    progress: &mut impl FnMut(&RebuildProgress),
) -> Result<
    (
        sqlx::Transaction<'static, sqlx::Postgres>,
        u64,
        RebuildReport,
    ),
    RebuildError,
> {
    let name = projection.name();
    let live = projection.schema();
    prepare_schema(pool, live, &scratch.schema, &scratch.consumer).await?;
    tracing::debug!(
        projection = name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "rebuild schema prepared"
    );
    let target = Target {
        projection: Arc::clone(projection),
        schema: scratch.schema.clone(),
        consumer: scratch.consumer.clone(),
        mode: DeliveryMode::Rebuild,
    };
    let (mut sink, _) = Sink::take_over(target, pool.clone(), options.retry).await?;

    let stream = jetstream.get_stream(EVENTS_STREAM).await.map_err(nats)?;
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: super::projector::consumer_filter(projection.aggregate_types()),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut chunks = reader
        .messages()
        .await
        .map_err(nats)?
        .ready_chunks((options.batch_size / 2).max(1));

    let mut report = RebuildReport {
        projection: name.to_owned(),
        commits: 0,
        parked: 0,
        position: 0,
        elapsed: Duration::ZERO,
    };
    // The rebuild never applies a commit beyond the live projector's position: those
    // belong to the live projector, which alone may cause their effects (a rebuild
    // runs in `rebuild` mode). Commits read ahead of it wait in `carried`.
    let filter = super::projector::consumer_filter(projection.aggregate_types());
    let mut carried: VecDeque<Incoming> = VecDeque::new();
    let mut exhausted = !has_commits(&stream, &**projection).await?;

    // Phase 1: chase the live position while the live projector carries on.
    loop {
        let live_position = live_position(pool, name).await?;
        let ready = take_up_to(&mut carried, live_position);
        if !ready.is_empty() {
            let applying = Instant::now();
            let outcome = sink.apply_until_committed(&ready, || false).await?;
            tracing::trace!(
                projection = name,
                commits = ready.len(),
                apply_ms = applying.elapsed().as_secs_f64() * 1000.0,
                "rebuild batch"
            );
            report.record(&outcome);
            progress(&RebuildProgress {
                position: report.position,
                remaining: live_position.saturating_sub(report.position),
                commits: report.commits,
                elapsed: started.elapsed(),
            });
        }
        let ahead_of_live = carried.front().is_some();
        if report.position >= live_position || ahead_of_live || exhausted && carried.is_empty() {
            break;
        }
        let (batch, remaining) = read_batch(&mut chunks, options.batch_size).await?;
        exhausted = remaining == 0;
        carried.extend(batch);
    }
    tracing::debug!(
        projection = name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        position = report.position,
        "rebuild read the log"
    );

    // Phase 2: hold the live projector still (it waits on its position row), apply up
    // to exactly its position, and switch in the same transaction.
    let mut tx = pool.begin().await?;
    let live_position: Option<i64> = sqlx::query_scalar(
        "SELECT position FROM public.projector_positions WHERE projector = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let live_position = live_position.map_or(0, to_u64);
    loop {
        let ready = take_up_to(&mut carried, live_position);
        if !ready.is_empty() {
            let outcome = sink.apply_until_committed(&ready, || false).await?;
            report.record(&outcome);
        }
        if report.position >= live_position || carried.front().is_some() {
            break;
        }
        // Is there a commit for us between what we applied and the live position?
        match stream
            .direct_get_next_for_subject(filter.as_str(), Some(report.position + 1))
            .await
        {
            Ok(next) if next.sequence <= live_position => {}
            Ok(_) => break,
            Err(error) if error.kind() == jetstream::stream::DirectGetErrorKind::NotFound => break,
            Err(error) => return Err(nats(error)),
        }
        let (batch, _) = read_batch(&mut chunks, options.batch_size).await?;
        carried.extend(batch);
    }
    tracing::debug!(
        projection = name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        live_position,
        "rebuild caught up with the live projector"
    );
    Ok((tx, live_position, report))
}

/// The live projector's position (0 when it never ran).
async fn live_position(pool: &PgPool, name: &str) -> Result<u64, RebuildError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM public.projector_positions WHERE projector = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(position.map_or(0, to_u64))
}

/// Removes and returns the carried commits at or below `limit`.
fn take_up_to(carried: &mut VecDeque<Incoming>, limit: u64) -> Vec<Incoming> {
    let count = carried.iter().take_while(|m| m.position <= limit).count();
    carried.drain(..count).collect()
}

/// The next chunk of the reader, and how many commits are left after it.
async fn read_batch<S, E>(
    chunks: &mut S,
    batch_size: usize,
) -> Result<(Vec<Incoming>, u64), RebuildError>
where
    S: futures::Stream<Item = Vec<Result<jetstream::Message, E>>> + Unpin,
    E: Into<BoxError>,
{
    let mut batch = Vec::with_capacity(batch_size);
    let mut remaining = 0;
    // Read on while the server has more for us, up to a full batch.
    while batch.is_empty() || remaining > 0 && batch.len() < batch_size {
        let chunk = match tokio::time::timeout(Duration::from_secs(10), chunks.next()).await {
            Err(_) => return Err(nats("no commit read for 10 s")),
            Ok(None) => return Err(nats("the reader ended")),
            Ok(Some(chunk)) => chunk,
        };
        for message in chunk {
            let message = message.map_err(nats)?;
            let info = message.info().map_err(nats)?;
            remaining = info.pending;
            batch.push(Incoming {
                position: info.stream_sequence,
                subject: message.subject.to_string(),
                payload: message.payload.clone(),
                published: info.published,
                // A rebuild is not part of the traces of the commits it replays.
                trace: None,
            });
        }
    }
    Ok((batch, remaining))
}

/// Whether the log holds any commit of the projection's aggregate types.
async fn has_commits(
    stream: &jetstream::stream::Stream,
    projection: &dyn Projection,
) -> Result<bool, RebuildError> {
    for aggregate_type in projection.aggregate_types() {
        match stream
            .get_last_raw_message_by_subject(&aggregate_type_filter(aggregate_type))
            .await
        {
            Ok(_) => return Ok(true),
            Err(error)
                if error.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {}
            Err(error) => return Err(nats(error)),
        }
    }
    Ok(false)
}

/// Creates `<next>` with an empty clone of every table of `live`, and forgets any
/// earlier, interrupted rebuild.
async fn prepare_schema(
    pool: &PgPool,
    live: &str,
    next: &str,
    consumer: &str,
) -> Result<(), RebuildError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
    )
    .bind(live)
    .fetch_all(pool)
    .await?;
    if tables.is_empty() {
        return Err(RebuildError::NoTables(live.to_owned()));
    }
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quoted(next)))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {}", quoted(next)))
        .execute(&mut *tx)
        .await?;
    for table in &tables {
        sqlx::query(&format!(
            "CREATE TABLE {next}.{table} (LIKE {live}.{table} INCLUDING ALL)",
            next = quoted(next),
            live = quoted(live),
            table = quoted(table),
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM public.projector_positions WHERE projector = $1")
        .bind(consumer)
        .execute(&mut *tx)
        .await?;
    dead_letters::store::supersede(&mut tx, consumer).await?;
    tx.commit().await?;
    Ok(())
}

/// The switch, in the transaction that holds the live position row.
async fn finish_switch(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    projection: &dyn Projection,
    next: &str,
    position: u64,
) -> Result<(), RebuildError> {
    let name = projection.name();
    let live = projection.schema();
    let old = format!("{live}__old");
    let conn: &mut PgConnection = &mut tx;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quoted(&old)))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "ALTER SCHEMA {} RENAME TO {}",
        quoted(live),
        quoted(&old)
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "ALTER SCHEMA {} RENAME TO {}",
        quoted(next),
        quoted(live)
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!("DROP SCHEMA {} CASCADE", quoted(&old)))
        .execute(&mut *conn)
        .await?;
    let rebuild_row: Option<(Option<chrono::DateTime<chrono::Utc>>,)> = sqlx::query_as(
        "DELETE FROM public.projector_positions WHERE projector = $1 RETURNING last_event_at",
    )
    .bind(rebuild_consumer(name))
    .fetch_optional(&mut *conn)
    .await?;
    let last_event_at = rebuild_row.and_then(|(at,)| at);
    sqlx::query(
        "INSERT INTO public.projector_positions (projector, position, epoch, version, last_event_at)
         VALUES ($1, $2, 1, $3, $4)
         ON CONFLICT (projector) DO UPDATE
            SET position = $2, version = $3, last_event_at = $4,
                epoch = projector_positions.epoch + 1, updated_at = now()",
    )
    .bind(name)
    .bind(to_i64(position))
    .bind(projection.version())
    .bind(last_event_at)
    .execute(&mut *conn)
    .await?;
    // The live queue described the old tables; the rebuild's describes the new ones.
    dead_letters::store::supersede(conn, name).await?;
    dead_letters::store::hand_over(conn, &rebuild_consumer(name), name).await?;
    tx.commit().await?;
    tracing::info!(projection = name, position, "rebuilt read model is live");
    Ok(())
}

pub(crate) fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

pub(crate) fn nats(error: impl Into<BoxError>) -> RebuildError {
    RebuildError::Nats(error.into())
}
