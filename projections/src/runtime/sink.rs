//! Applying a batch of commits to one target exactly once: the read-model change, the
//! position and any parked commits are written in one PostgreSQL transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use infra_nats::subjects::parse_aggregate_subject;
use infra_nats::{BoxError, ErrorChain, RecordedCommit, RemoteTrace};
use sqlx::{PgConnection, PgPool};

use super::failure::{is_transient, is_transient_sql};
use super::set_schema;
use crate::dead_letters;
use crate::projection::{ApplyError, Delivery, DeliveryMode, Projection};

/// One message of the `EVENTS` stream as the runtime received it, before decoding.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The stream sequence.
    pub position: u64,
    /// `events.<type>.<id>`: attributes the commit even when its payload is garbage.
    pub subject: String,
    pub payload: Bytes,
    /// When the server stored it.
    pub published: DateTime<Utc>,
    /// The trace context the commit was appended in (live deliveries of traced commits).
    pub trace: Option<RemoteTrace>,
}

impl Incoming {
    /// The aggregate the commit belongs to, read from its subject.
    pub fn aggregate(&self) -> AggregateKey {
        match parse_aggregate_subject(&self.subject) {
            Some((aggregate_type, aggregate_id)) => AggregateKey {
                aggregate_type,
                aggregate_id,
            },
            None => AggregateKey {
                aggregate_type: "?".to_owned(),
                aggregate_id: self.subject.clone(),
            },
        }
    }
}

/// An aggregate instance, the unit of ordering and of parking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateKey {
    pub aggregate_type: String,
    pub aggregate_id: String,
}

/// Where a batch goes: a projection, the schema its tables are in, the position row
/// that records progress, and why the commits are delivered.
#[derive(Clone)]
pub struct Target {
    pub projection: Arc<dyn Projection>,
    /// The schema `search_path` points at while applying.
    pub schema: String,
    /// The key of the position row and the dead-letter consumer name.
    pub consumer: String,
    pub mode: DeliveryMode,
}

/// Retry policy for one batch.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a commit that fails for a reason of its own is parked. A commit
    /// that does not decode is parked at once: retrying cannot change its bytes.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `attempt` (1-based): exponential, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// PostgreSQL is unavailable or the transaction lost a race: retry the same batch
    /// after a pause.
    #[error("transient: {0}")]
    Transient(#[source] BoxError),
    /// A commit failed for a reason of its own but has attempts left: retry the same
    /// batch after a pause.
    #[error("commit at position {position} failed (attempt {attempt}): {error}")]
    Retryable {
        position: u64,
        attempt: u32,
        #[source]
        error: ApplyError,
    },
    /// Another instance became the active one: stop writing.
    #[error("fenced: another instance holds epoch {current} (this one has {ours})")]
    Fenced { ours: i64, current: i64 },
    /// The position row is missing: the target was never started.
    #[error("no position row for consumer `{0}`")]
    NotStarted(String),
}

/// What a committed batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: usize,
    /// Commits at or below the stored position (already applied earlier), or of an
    /// aggregate type the projection does not consume.
    pub skipped: usize,
    pub parked: usize,
    /// The position stored after the batch.
    pub position: u64,
}

/// Exactly-once application of batches to one [`Target`], holding what must survive
/// between batches: the fencing epoch, the aggregates with parked commits, and how often
/// each failing commit has failed.
pub struct Sink {
    pub target: Target,
    pub pool: PgPool,
    pub retry: RetryPolicy,
    epoch: i64,
    parked: HashMap<AggregateKey, u64>,
    failures: HashMap<u64, u32>,
}

/// The position row of a target as read when taking it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub epoch: i64,
    pub position: u64,
    pub version: i32,
}

impl Sink {
    /// Takes over `target`: creates its position row if needed, bumps the epoch (fencing
    /// out any previous writer) and loads the aggregates that have parked commits.
    ///
    /// # Errors
    /// When PostgreSQL fails.
    pub async fn take_over(
        target: Target,
        pool: PgPool,
        retry: RetryPolicy,
    ) -> Result<(Self, Term), sqlx::Error> {
        let (epoch, position, version): (i64, i64, i32) = sqlx::query_as(
            "INSERT INTO public.projector_positions (projector, position, epoch, version)
             VALUES ($1, 0, 1, $2)
             ON CONFLICT (projector) DO UPDATE
                SET epoch = projector_positions.epoch + 1, updated_at = now()
             RETURNING epoch, position, version",
        )
        .bind(&target.consumer)
        .bind(target.projection.version())
        .fetch_one(&pool)
        .await?;
        let rows = dead_letters::store::parked_heads(&pool, &target.consumer).await?;
        let parked = rows
            .into_iter()
            .map(|(aggregate_type, aggregate_id, head)| {
                (
                    AggregateKey {
                        aggregate_type,
                        aggregate_id,
                    },
                    to_u64(head),
                )
            })
            .collect();
        let term = Term {
            epoch,
            position: to_u64(position),
            version,
        };
        let sink = Self {
            target,
            pool,
            retry,
            epoch,
            parked,
            failures: HashMap::new(),
        };
        Ok((sink, term))
    }

    /// How many aggregates have commits parked for this target.
    pub fn parked_aggregates(&self) -> usize {
        self.parked.len()
    }

    /// Applies `batch` (stream order), retrying transient and retryable failures with
    /// backoff until it commits, the instance is fenced, or `give_up` says so.
    ///
    /// # Errors
    /// [`BatchError::Fenced`] or [`BatchError::NotStarted`]; the transient kinds only
    /// when `give_up` returns true.
    pub async fn apply_until_committed(
        &mut self,
        batch: &[Incoming],
        mut give_up: impl FnMut() -> bool,
    ) -> Result<BatchOutcome, BatchError> {
        let mut attempt = 0;
        loop {
            match self.try_apply(batch).await {
                Ok(outcome) => return Ok(outcome),
                Err(error @ (BatchError::Fenced { .. } | BatchError::NotStarted(_))) => {
                    return Err(error)
                }
                Err(error) => {
                    attempt += 1;
                    let pause = self.retry.backoff(attempt);
                    tracing::warn!(
                        consumer = %self.target.consumer,
                        error = %ErrorChain(&error),
                        retry_in_ms = pause.as_millis() as u64,
                        "batch not applied; retrying"
                    );
                    if give_up() {
                        return Err(error);
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// One attempt at applying `batch` in one transaction.
    ///
    /// # Errors
    /// See [`BatchError`]; nothing is written when it fails.
    pub async fn try_apply(&mut self, batch: &[Incoming]) -> Result<BatchOutcome, BatchError> {
        let mut tx = self.pool.begin().await.map_err(transient)?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT position, epoch FROM public.projector_positions WHERE projector = $1 FOR UPDATE",
        )
        .bind(&self.target.consumer)
        .fetch_optional(&mut *tx)
        .await
        .map_err(transient)?;
        let Some((stored, current_epoch)) = row else {
            return Err(BatchError::NotStarted(self.target.consumer.clone()));
        };
        if current_epoch != self.epoch {
            return Err(BatchError::Fenced {
                ours: self.epoch,
                current: current_epoch,
            });
        }
        let stored = to_u64(stored);
        let fresh: Vec<&Incoming> = batch.iter().filter(|m| m.position > stored).collect();
        let mut outcome = BatchOutcome {
            skipped: batch.len() - fresh.len(),
            position: stored,
            ..BatchOutcome::default()
        };
        let Some(last) = fresh.last() else {
            tx.commit().await.map_err(transient)?;
            return Ok(outcome);
        };
        let (last_position, last_published) = (last.position, last.published);

        let mut parked = self.parked.clone();
        let mut to_park: Vec<ParkedCommit> = Vec::new();
        let mut decoded: Vec<(AggregateKey, &Incoming, RecordedCommit)> = Vec::new();
        let consumed = self.target.projection.aggregate_types();
        for message in fresh {
            let key = message.aggregate();
            if !consumed.contains(&key.aggregate_type.as_str()) && key.aggregate_type != "?" {
                // Read only because the consumer's filter is wider than the projection
                // (see `consumer_filter`): not the projection's business.
                outcome.skipped += 1;
                continue;
            }
            if let Some(&head) = parked.get(&key) {
                to_park.push(ParkedCommit::behind(message, key, head));
                continue;
            }
            match RecordedCommit::decode(message.position, &message.payload) {
                Ok(commit) => decoded.push((key, message, commit)),
                Err(error) => {
                    parked.insert(key.clone(), message.position);
                    to_park.push(ParkedCommit::head(message, key, error.to_string(), 1));
                }
            }
        }

        set_schema(&mut tx, &self.target.schema)
            .await
            .map_err(transient)?;
        let mode = self.target.mode;
        let deliveries: Vec<Delivery<'_>> = decoded
            .iter()
            .map(|(_, _, commit)| Delivery { commit, mode })
            .collect();
        savepoint(&mut tx, "batch").await?;
        let applied = if deliveries.is_empty() {
            Ok(())
        } else {
            self.target.projection.apply(&mut tx, &deliveries).await
        };
        match applied {
            Ok(()) => outcome.applied = deliveries.len(),
            Err(error) if is_transient(&error) => {
                return Err(BatchError::Transient(Box::new(error)))
            }
            Err(_) => {
                rollback_to(&mut tx, "batch").await?;
                // Isolate the failing commit(s): apply one by one, each in its own
                // savepoint, parking what fails and everything of its aggregate after it.
                for ((key, message, _), delivery) in decoded.iter().zip(&deliveries) {
                    if let Some(&head) = parked.get(key) {
                        to_park.push(ParkedCommit::behind(message, key.clone(), head));
                        continue;
                    }
                    savepoint(&mut tx, "one").await?;
                    match self
                        .target
                        .projection
                        .apply(&mut tx, std::slice::from_ref(delivery))
                        .await
                    {
                        Ok(()) => outcome.applied += 1,
                        Err(error) if is_transient(&error) => {
                            return Err(BatchError::Transient(Box::new(error)))
                        }
                        Err(error) => {
                            rollback_to(&mut tx, "one").await?;
                            let attempt = {
                                let failures = self.failures.entry(message.position).or_insert(0);
                                *failures += 1;
                                *failures
                            };
                            let give_up = matches!(error, ApplyError::Decode(_))
                                || attempt >= self.retry.max_attempts;
                            if !give_up {
                                return Err(BatchError::Retryable {
                                    position: message.position,
                                    attempt,
                                    error,
                                });
                            }
                            parked.insert(key.clone(), message.position);
                            to_park.push(ParkedCommit::head(
                                message,
                                key.clone(),
                                error.to_string(),
                                attempt,
                            ));
                        }
                    }
                }
            }
        }

        for commit in &to_park {
            commit
                .insert(&mut tx, &self.target.consumer, mode)
                .await
                .map_err(transient)?;
        }
        sqlx::query(
            "UPDATE public.projector_positions
                SET position = $2, last_event_at = $3, updated_at = now()
              WHERE projector = $1",
        )
        .bind(&self.target.consumer)
        .bind(to_i64(last_position))
        .bind(last_published)
        .execute(&mut *tx)
        .await
        .map_err(transient)?;
        // Delivered at commit, so a listener (the API waiting to read its own write)
        // never hears of a position before the rows that reached it are visible.
        sqlx::query("SELECT pg_notify($1, $2 || ':' || $3::text)")
            .bind(crate::status::POSITIONS_CHANNEL)
            .bind(&self.target.consumer)
            .bind(to_i64(last_position))
            .execute(&mut *tx)
            .await
            .map_err(transient)?;
        tx.commit().await.map_err(transient)?;

        for commit in &to_park {
            self.failures.remove(&commit.position);
        }
        outcome.parked = to_park.len();
        outcome.position = last_position;
        if outcome.parked > 0 {
            tracing::warn!(
                consumer = %self.target.consumer,
                parked = outcome.parked,
                "commits parked in the dead-letter queue"
            );
        }
        self.parked = parked;
        Ok(outcome)
    }

    /// The aggregates with parked commits, for tests and status.
    pub fn parked_keys(&self) -> HashSet<AggregateKey> {
        self.parked.keys().cloned().collect()
    }
}

/// A commit about to be parked.
struct ParkedCommit {
    position: u64,
    key: AggregateKey,
    blocked_by: Option<u64>,
    error: String,
    attempts: u32,
    payload: Bytes,
}

impl ParkedCommit {
    fn head(message: &Incoming, key: AggregateKey, error: String, attempts: u32) -> Self {
        Self {
            position: message.position,
            key,
            blocked_by: None,
            error,
            attempts,
            payload: message.payload.clone(),
        }
    }

    fn behind(message: &Incoming, key: AggregateKey, head: u64) -> Self {
        Self {
            position: message.position,
            key,
            blocked_by: Some(head),
            error: dead_letters::store::parked_behind(to_i64(head)),
            attempts: 0,
            payload: message.payload.clone(),
        }
    }

    async fn insert(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        mode: DeliveryMode,
    ) -> Result<(), sqlx::Error> {
        let entry = dead_letters::store::NewDeadLetter {
            consumer,
            position: to_i64(self.position),
            aggregate_type: &self.key.aggregate_type,
            aggregate_id: &self.key.aggregate_id,
            blocked_by: self.blocked_by.map(to_i64),
            error: &self.error,
            attempts: i32::try_from(self.attempts).unwrap_or(i32::MAX),
            mode,
            payload: &self.payload,
        };
        dead_letters::store::park(conn, &entry).await
    }
}

async fn savepoint(conn: &mut PgConnection, name: &str) -> Result<(), BatchError> {
    sqlx::query(&format!("SAVEPOINT {name}"))
        .execute(conn)
        .await
        .map_err(transient)?;
    Ok(())
}

async fn rollback_to(conn: &mut PgConnection, name: &str) -> Result<(), BatchError> {
    sqlx::query(&format!("ROLLBACK TO SAVEPOINT {name}"))
        .execute(conn)
        .await
        .map_err(transient)?;
    Ok(())
}

/// A database error outside the projection's own statements (the position row, the
/// dead-letter insert, the commit) can only be the database being unavailable or a
/// bug in this module; either way the batch is retried, not parked.
fn transient(error: sqlx::Error) -> BatchError {
    if !is_transient_sql(&error) {
        tracing::error!(error = %ErrorChain(&error), "runtime statement failed");
    }
    BatchError::Transient(Box::new(error))
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
