//! The live projector: one active instance per projection, fed by a durable JetStream
//! consumer, with hot standbys.
//!
//! Ordering scheme (see `docs/adr/0004-projector-runtime.md`): every replica runs the
//! same projector; the one holding a PostgreSQL session advisory lock is active, the
//! others poll for it. Taking over bumps the epoch on the position row and recreates the
//! durable consumer at the stored position, so deliveries still held by a previous
//! instance are void. Every apply transaction locks the position row and checks the
//! epoch, so a paused instance that wakes up after losing the lock cannot write.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use infra_nats::subjects::{aggregate_type_filter, EVENTS_STREAM};
use infra_nats::{BoxError, ErrorChain, RemoteTrace};
use sqlx::{PgConnection, PgPool};
use tracing::{Instrument, Span};

use super::rebuild::RebuildError;
use super::sink::{BatchError, Incoming, RetryPolicy, Sink, Target};
use crate::projection::{DeliveryMode, Projection};

/// How a projector runs.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Most commits applied in one transaction (when the consumer has a backlog).
    pub batch_size: usize,
    pub retry: RetryPolicy,
    /// How long the server waits for an ack before redelivering. Acks are a courtesy
    /// (the position in PostgreSQL is the truth), so this only bounds redelivery work.
    pub ack_wait: Duration,
    /// How often a standby tries to become the active instance.
    pub standby_poll: Duration,
    /// How often the active instance checks that it still holds its lock.
    pub leadership_check: Duration,
    /// Whether a projector whose code version differs from the one that built its live
    /// tables rebuilds them before following the log.
    pub rebuild_on_version_change: bool,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            retry: RetryPolicy::default(),
            ack_wait: Duration::from_secs(60),
            standby_poll: Duration::from_secs(1),
            leadership_check: Duration::from_secs(2),
            rebuild_on_version_change: true,
        }
    }
}

/// Why the active instance stopped leading (it then tries to lead again).
#[derive(Debug, thiserror::Error)]
enum LeadError {
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("NATS: {0}")]
    Nats(#[source] BoxError),
    #[error("{0}")]
    Batch(#[from] BatchError),
    #[error("lost the leadership lock")]
    LockLost,
    #[error("delivery out of sequence: expected consumer sequence {expected}, got {got} (stream position {position})")]
    Gap {
        expected: u64,
        got: u64,
        position: u64,
    },
    #[error("rebuild: {0}")]
    Rebuild(#[source] RebuildError),
}

/// A projection fed from the log.
pub struct Projector {
    projection: Arc<dyn Projection>,
    pool: PgPool,
    jetstream: jetstream::Context,
    config: ProjectorConfig,
}

impl Projector {
    /// A projector writing through a private pool on `pool`'s database (see
    /// [`super::private_pool`]).
    pub fn new(
        projection: Arc<dyn Projection>,
        pool: PgPool,
        jetstream: jetstream::Context,
        config: ProjectorConfig,
    ) -> Self {
        Self {
            projection,
            // The lock connection is detached from it; the apply transaction uses one.
            pool: super::private_pool(&pool, 3),
            jetstream,
            config,
        }
    }

    /// The durable consumer's name.
    pub fn consumer_name(projection: &dyn Projection) -> String {
        format!("projector-{}", projection.name())
    }

    /// The advisory-lock key of a projection's active instance.
    pub fn lock_key(projection: &dyn Projection) -> String {
        format!("shopstream.projector.{}", projection.name())
    }

    /// Follows the log until `shutdown` completes: as the active instance when it holds
    /// the lock, as a standby otherwise. Failures of PostgreSQL or NATS are logged and
    /// waited out; this only returns on shutdown.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let name = self.projection.name();
        let mut failures = 0u32;
        // A standby keeps one connection for its lock attempts instead of opening one
        // per attempt; it becomes the lock connection when the attempt succeeds.
        let mut standby_connection: Option<PgConnection> = None;
        loop {
            let attempt = async {
                match self.try_lock(&mut standby_connection).await? {
                    Some(lock) => {
                        tracing::info!(projector = name, "active");
                        self.lead(lock).await
                    }
                    None => Ok(()),
                }
            };
            let pause = tokio::select! {
                () = &mut shutdown => return,
                result = attempt => match result {
                    Ok(()) => {
                        failures = 0;
                        self.config.standby_poll
                    }
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(projector = name, error = %ErrorChain(&error), "projector stopped leading; retrying");
                        self.config.retry.backoff(failures).max(Duration::from_millis(50))
                    }
                },
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// The lock connection when this instance became the active one.
    async fn try_lock(
        &self,
        standby_connection: &mut Option<PgConnection>,
    ) -> Result<Option<PgConnection>, LeadError> {
        let mut conn = match standby_connection.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?.detach(),
        };
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(Self::lock_key(&*self.projection))
                .fetch_one(&mut conn)
                .await?;
        if locked {
            Ok(Some(conn))
        } else {
            *standby_connection = Some(conn);
            Ok(None)
        }
    }

    /// Leads until something fails; the lock is released when `lock` is dropped.
    async fn lead(&self, mut lock: PgConnection) -> Result<(), LeadError> {
        let target = Target {
            projection: Arc::clone(&self.projection),
            schema: self.projection.schema().to_owned(),
            consumer: self.projection.name().to_owned(),
            mode: DeliveryMode::Live,
        };
        let (mut sink, mut term) =
            Sink::take_over(target.clone(), self.pool.clone(), self.config.retry).await?;
        if term.version != self.projection.version() && self.config.rebuild_on_version_change {
            tracing::info!(
                projector = self.projection.name(),
                stored = term.version,
                code = self.projection.version(),
                "projection version changed: rebuilding"
            );
            super::rebuild::rebuild(
                Arc::clone(&self.projection),
                &self.pool,
                &self.jetstream,
                &super::rebuild::RebuildOptions::default(),
                |_| {},
            )
            .await
            .map_err(LeadError::Rebuild)?;
            (sink, term) = Sink::take_over(target, self.pool.clone(), self.config.retry).await?;
        }
        let consumer = self.recreate_consumer(term.position + 1).await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.config.batch_size * 4)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(nats)?;
        let mut chunks = messages.ready_chunks((self.config.batch_size / 2).max(1));
        let mut expected_consumer_sequence = 1u64;
        let mut last_lock_check = Instant::now();
        loop {
            let next = tokio::time::timeout(self.config.leadership_check, chunks.next()).await;
            if last_lock_check.elapsed() >= self.config.leadership_check {
                sqlx::query("SELECT 1")
                    .execute(&mut lock)
                    .await
                    .map_err(|_| LeadError::LockLost)?;
                last_lock_check = Instant::now();
            }
            let mut chunk = match next {
                Err(_idle) => continue,
                Ok(None) => return Err(LeadError::Nats("message stream ended".into())),
                Ok(Some(chunk)) => chunk,
            };
            let mut batch = Vec::with_capacity(self.config.batch_size);
            let mut last_message = None;
            // A socket read holds ~64 KiB of commits. While the server says more are
            // pending for this consumer (a backlog), keep reading up to a full batch;
            // at the tail (nothing pending) apply at once, so live latency stays low.
            loop {
                let mut pending = 0;
                for message in chunk {
                    let message = message.map_err(nats)?;
                    let info = message.info().map_err(nats)?;
                    if info.consumer_sequence != expected_consumer_sequence {
                        let gap = LeadError::Gap {
                            expected: expected_consumer_sequence,
                            got: info.consumer_sequence,
                            position: info.stream_sequence,
                        };
                        self.record_gap(&gap).await;
                        // Apply what arrived in order before the gap, then resynchronise.
                        if !batch.is_empty() {
                            sink.apply_until_committed(&batch, || false).await?;
                        }
                        return Err(gap);
                    }
                    expected_consumer_sequence += 1;
                    pending = info.pending;
                    batch.push(Incoming {
                        position: info.stream_sequence,
                        subject: message.subject.to_string(),
                        payload: message.payload.clone(),
                        published: info.published,
                        trace: RemoteTrace::from_headers(message.headers.as_ref()),
                    });
                    last_message = Some(message);
                }
                if pending == 0 || batch.len() >= self.config.batch_size {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(50), chunks.next()).await {
                    Ok(Some(more)) => chunk = more,
                    Ok(None) => return Err(LeadError::Nats("message stream ended".into())),
                    Err(_slow) => break,
                }
            }
            let applying = Instant::now();
            let batch_span = tracing::info_span!(
                "projector.batch",
                projector = self.projection.name(),
                commits = batch.len(),
                first_position = batch.first().map(|m| m.position),
                last_position = batch.last().map(|m| m.position),
            );
            // Each traced commit gets a span in its own trace, child of the span that
            // appended it, open while the transaction that applies it runs.
            let commit_spans = commit_spans(&*self.projection, &batch, &batch_span);
            let outcome = sink
                .apply_until_committed(&batch, || false)
                .instrument(batch_span)
                .await?;
            drop(commit_spans);
            let name = self.projection.name();
            metrics::histogram!("shopstream_projector_batch_seconds", "projector" => name)
                .record(applying.elapsed().as_secs_f64());
            for (result, commits) in [
                ("applied", outcome.applied),
                ("skipped", outcome.skipped),
                ("parked", outcome.parked),
            ] {
                metrics::counter!("shopstream_projector_commits_total", "projector" => name, "result" => result)
                    .increment(commits as u64);
            }
            tracing::debug!(
                projector = self.projection.name(),
                commits = batch.len(),
                apply_ms = applying.elapsed().as_secs_f64() * 1000.0,
                ?outcome,
                "batch committed"
            );
            if let Some(message) = last_message {
                // A courtesy: the position is already committed in PostgreSQL.
                if let Err(error) = message.ack_with(AckKind::Ack).await {
                    tracing::debug!(error = %ErrorChain(&*error), "ack failed");
                }
            }
        }
    }

    async fn recreate_consumer(
        &self,
        start_sequence: u64,
    ) -> Result<consumer::PullConsumer, LeadError> {
        let stream = self
            .jetstream
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(nats)?;
        let name = Self::consumer_name(&*self.projection);
        // Deliveries held by a previous instance die with the old consumer. A missing
        // consumer is the normal case on first start; other failures surface below.
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %ErrorChain(&error), consumer = %name, "old consumer not deleted");
        }
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!(
                "shopstream projector `{}` (position of record in PostgreSQL)",
                self.projection.name()
            )),
            filter_subject: consumer_filter(self.projection.aggregate_types()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence },
            ack_policy: consumer::AckPolicy::All,
            ack_wait: self.config.ack_wait,
            max_ack_pending: i64::try_from(self.config.batch_size * 4).unwrap_or(i64::MAX),
            ..Default::default()
        };
        stream.create_consumer(config).await.map_err(nats)
    }

    async fn record_gap(&self, gap: &LeadError) {
        tracing::error!(projector = self.projection.name(), %gap, "sequence gap detected; resynchronising from the stored position");
        let recorded = sqlx::query(
            "UPDATE public.projector_positions SET gaps_detected = gaps_detected + 1 WHERE projector = $1",
        )
        .bind(self.projection.name())
        .execute(&self.pool)
        .await;
        if let Err(error) = recorded {
            tracing::warn!(error = %ErrorChain(&error), "could not record the gap");
        }
    }
}

/// A span per traced commit of `batch` that the projection consumes: a child of the
/// commit's appending span, linked to the batch's span. Untraced commits (no
/// OpenTelemetry where they were appended) cost nothing here.
fn commit_spans(projection: &dyn Projection, batch: &[Incoming], batch_span: &Span) -> Vec<Span> {
    let projector = projection.name();
    let consumed = projection.aggregate_types();
    batch
        .iter()
        .filter_map(|message| {
            let trace = message.trace.as_ref()?;
            if !consumed.contains(&message.aggregate().aggregate_type.as_str()) {
                return None;
            }
            let span = tracing::info_span!(
                "projector.apply",
                projector,
                position = message.position,
                correlation_id = trace.correlation_id(),
                otel.kind = "consumer"
            );
            trace.adopt(&span);
            span.follows_from(batch_span);
            Some(span)
        })
        .collect()
}

/// The one filter subject of a consumer of `aggregate_types`.
///
/// nats-server 2.15.1 delivers a consumer with several filter subjects about 100 times
/// slower than one with a single filter once the stream holds thousands of subjects
/// (measured: 3,800 against 455,000 commits/s, `cargo bench --bench projections`). A
/// projection of several aggregate types therefore reads the whole log and the runtime
/// passes over the commits of other types (they advance its position, nothing else).
pub fn consumer_filter(aggregate_types: &[&str]) -> String {
    match aggregate_types {
        [single] => aggregate_type_filter(single),
        _ => infra_nats::subjects::EVENTS_SUBJECTS.to_owned(),
    }
}

fn nats(error: impl Into<BoxError>) -> LeadError {
    LeadError::Nats(error.into())
}
