//! The sequenced dead-letter queue: what operators see and do.
//!
//! The runtime parks a commit that keeps failing, and every later commit of the same
//! aggregate for the same consumer behind it, in the same transaction that advances the
//! consumer's position (see [`crate::runtime::Sink`]). Other aggregates keep flowing.
//! Operators act on one aggregate's parked sequence at a time:
//! - **retry**: apply the parked commits in order; stops at the first that still fails,
//!   which becomes the new head.
//! - **skip**: mark the head as not applied on purpose, then retry the ones behind it.
//! - **discard**: mark the whole sequence as not applied; the read model keeps what it
//!   had for that aggregate (rebuild it, or live with it).
//!
//! Each action runs in one transaction that holds the consumer's position row (the live
//! projector waits), writes an action record (who, when, why, what happened) and bumps
//! the consumer's epoch so the live projector reloads which aggregates are parked.
//!
//! [`store`] is the one writer of the table; [`DeadLetterStatus`] spells its statuses.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use infra_nats::RecordedCommit;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{Delivery, DeliveryMode, Projection};
use crate::runtime::set_schema;

mod status;
pub mod store;

pub use status::{DeadLetterStatus, UnknownStatus};
use store::Resolution;

/// Spelled into the SQL text rather than bound: the table's partial indexes are on
/// `status = 'parked'`, and only a literal lets every plan use them.
const PARKED: &str = DeadLetterStatus::Parked.as_str();

/// One parked commit.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: Uuid,
    pub consumer: String,
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// `None` for the commit that failed; else the position of the one it waits behind.
    pub blocked_by: Option<i64>,
    pub error: String,
    pub error_fingerprint: String,
    pub attempts: i32,
    pub mode: String,
    pub parked_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub status: DeadLetterStatus,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub consumer: Option<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub fingerprint: Option<String>,
    /// Only entries whose error contains this text.
    pub error_contains: Option<String>,
    /// [`DeadLetterStatus::Parked`] when `None`.
    pub status: Option<DeadLetterStatus>,
}

/// Parked sequences whose head failed with one error fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetterGroup {
    pub error_fingerprint: String,
    /// Parked sequences (aggregates per consumer) whose head has this fingerprint.
    pub sequences: i64,
    /// Parked commits in those sequences, heads and the ones behind them.
    pub commits: i64,
    pub consumers: Vec<String>,
    /// When the oldest head was parked.
    pub oldest: DateTime<Utc>,
    pub example_error: String,
}

/// An operator action, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetterAction {
    pub id: Uuid,
    pub consumer: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub outcome: String,
    pub positions: Vec<i64>,
    pub at: DateTime<Utc>,
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    /// Positions applied to the read model, in order.
    pub applied: Vec<i64>,
    /// Positions marked skipped or discarded.
    pub dropped: Vec<i64>,
    /// Positions still parked (the first is the new head).
    pub still_parked: Vec<i64>,
    /// Why the new head failed, when one did.
    pub error: Option<String>,
}

/// Why an action was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no parked commits for {aggregate_type} `{aggregate_id}` in consumer `{consumer}`")]
    NothingParked {
        consumer: String,
        aggregate_type: String,
        aggregate_id: String,
    },
    #[error("no dead letter with id {0}")]
    UnknownId(Uuid),
    #[error("a reason is required")]
    ReasonRequired,
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
}

/// Parked entries matching `filter`, oldest position first, at most `limit`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn list(
    pool: &PgPool,
    filter: &DeadLetterFilter,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, consumer, position, aggregate_type, aggregate_id, blocked_by, error,
                error_fingerprint, attempts, mode, parked_at, status, resolved_at
           FROM public.dead_letters
          WHERE ($1::text IS NULL OR consumer = $1)
            AND ($2::text IS NULL OR aggregate_type = $2)
            AND ($3::text IS NULL OR aggregate_id = $3)
            AND ($4::text IS NULL OR error_fingerprint = $4)
            AND status = $5
            AND ($7::text IS NULL OR strpos(error, $7) > 0)
          ORDER BY consumer, position
          LIMIT $6",
    )
    .bind(&filter.consumer)
    .bind(&filter.aggregate_type)
    .bind(&filter.aggregate_id)
    .bind(&filter.fingerprint)
    .bind(filter.status.unwrap_or(DeadLetterStatus::Parked).as_str())
    .bind(limit)
    .bind(&filter.error_contains)
    .fetch_all(pool)
    .await
}

/// One entry with its raw payload (as read from the stream).
///
/// # Errors
/// When PostgreSQL fails.
pub async fn show(pool: &PgPool, id: Uuid) -> Result<Option<(DeadLetter, Vec<u8>)>, sqlx::Error> {
    let entry: Option<DeadLetter> = sqlx::query_as(
        "SELECT id, consumer, position, aggregate_type, aggregate_id, blocked_by, error,
                error_fingerprint, attempts, mode, parked_at, status, resolved_at
           FROM public.dead_letters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(entry) = entry else {
        return Ok(None);
    };
    let payload: Vec<u8> =
        sqlx::query_scalar("SELECT payload FROM public.dead_letters WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    Ok(Some((entry, payload)))
}

/// Parked sequences grouped by the error fingerprint of their head, largest group first.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn groups(pool: &PgPool) -> Result<Vec<DeadLetterGroup>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT h.error_fingerprint,
                count(DISTINCT (h.consumer, h.aggregate_type, h.aggregate_id)) AS sequences,
                count(*) AS commits,
                array_agg(DISTINCT h.consumer ORDER BY h.consumer) AS consumers,
                min(h.parked_at) AS oldest, min(h.error) AS example_error
           FROM public.dead_letters h
           JOIN public.dead_letters d
             ON d.consumer = h.consumer AND d.aggregate_type = h.aggregate_type
            AND d.aggregate_id = h.aggregate_id AND d.status = '{PARKED}'
          WHERE h.status = '{PARKED}' AND h.blocked_by IS NULL
          GROUP BY h.error_fingerprint
          ORDER BY sequences DESC, h.error_fingerprint"
    ))
    .fetch_all(pool)
    .await
}

/// How many entries are parked for `consumer`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn parked_count(pool: &PgPool, consumer: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM public.dead_letters WHERE consumer = $1 AND status = '{PARKED}'"
    ))
    .bind(consumer)
    .fetch_one(pool)
    .await
}

/// The recorded operator actions, newest first.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn history(
    pool: &PgPool,
    consumer: Option<&str>,
    limit: i64,
) -> Result<Vec<DeadLetterAction>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, consumer, aggregate_type, aggregate_id, action, actor, reason, outcome,
                positions, at
           FROM public.dead_letter_actions
          WHERE ($1::text IS NULL OR consumer = $1)
          ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(consumer)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The aggregate whose parked sequence holds entry `id`.
///
/// # Errors
/// [`DeadLetterError::UnknownId`].
pub async fn sequence_of(pool: &PgPool, id: Uuid) -> Result<ParkedSequence, DeadLetterError> {
    let row: Option<(String, String, String)> = sqlx::query_as(
        "SELECT consumer, aggregate_type, aggregate_id FROM public.dead_letters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let (consumer, aggregate_type, aggregate_id) = row.ok_or(DeadLetterError::UnknownId(id))?;
    Ok(ParkedSequence {
        consumer,
        aggregate_type,
        aggregate_id,
    })
}

/// One aggregate's parked commits for one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedSequence {
    pub consumer: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
}

/// What an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Retry,
    Skip,
    Discard,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Skip => "skip",
            Action::Discard => "discard",
        }
    }
}

/// Runs `action` on `sequence`, recording `actor` and `reason`. `projection` must be
/// the one `sequence.consumer` names (its live schema receives the applied commits,
/// in [`DeliveryMode::Live`]: these commits were never applied before).
///
/// # Errors
/// See [`DeadLetterError`]; on error nothing is changed.
pub async fn act(
    pool: &PgPool,
    projection: &Arc<dyn Projection>,
    sequence: &ParkedSequence,
    action: Action,
    actor: &str,
    reason: &str,
) -> Result<ActionOutcome, DeadLetterError> {
    if reason.trim().is_empty() {
        return Err(DeadLetterError::ReasonRequired);
    }
    // A connection of its own: the projection's statements are unqualified and must not
    // meet another projection's cached statements (see `runtime::private_pool`).
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    let mut tx = conn.begin().await?;
    // Hold the consumer still while its queue changes.
    sqlx::query("SELECT position FROM public.projector_positions WHERE projector = $1 FOR UPDATE")
        .bind(&sequence.consumer)
        .execute(&mut *tx)
        .await?;
    let entries: Vec<(Uuid, i64, Vec<u8>)> = sqlx::query_as(&format!(
        "SELECT id, position, payload FROM public.dead_letters
          WHERE consumer = $1 AND aggregate_type = $2 AND aggregate_id = $3
            AND status = '{PARKED}'
          ORDER BY position FOR UPDATE"
    ))
    .bind(&sequence.consumer)
    .bind(&sequence.aggregate_type)
    .bind(&sequence.aggregate_id)
    .fetch_all(&mut *tx)
    .await?;
    if entries.is_empty() {
        return Err(DeadLetterError::NothingParked {
            consumer: sequence.consumer.clone(),
            aggregate_type: sequence.aggregate_type.clone(),
            aggregate_id: sequence.aggregate_id.clone(),
        });
    }
    let mut outcome = ActionOutcome {
        applied: Vec::new(),
        dropped: Vec::new(),
        still_parked: Vec::new(),
        error: None,
    };
    let to_apply: &[(Uuid, i64, Vec<u8>)] = match action {
        Action::Discard => {
            for (id, position, _) in &entries {
                store::resolve(&mut tx, *id, Resolution::Discarded).await?;
                outcome.dropped.push(*position);
            }
            &[]
        }
        Action::Skip => {
            let (id, position, _) = &entries[0];
            store::resolve(&mut tx, *id, Resolution::Skipped).await?;
            outcome.dropped.push(*position);
            &entries[1..]
        }
        Action::Retry => &entries[..],
    };
    set_schema(&mut tx, projection.schema()).await?;
    for (index, (id, position, payload)) in to_apply.iter().enumerate() {
        let applied = apply_one(&mut tx, &**projection, *position, payload).await?;
        match applied {
            Ok(()) => {
                store::resolve(&mut tx, *id, Resolution::Applied).await?;
                outcome.applied.push(*position);
            }
            Err(error) => {
                // The new head: the ones after it now wait behind it.
                store::make_head(&mut tx, *id, &error).await?;
                let behind: Vec<Uuid> = to_apply[index + 1..].iter().map(|e| e.0).collect();
                store::park_behind(&mut tx, &behind, *position).await?;
                outcome.still_parked = to_apply[index..].iter().map(|e| e.1).collect();
                outcome.error = Some(error);
                break;
            }
        }
    }
    let summary = match &outcome.error {
        None => format!(
            "applied {:?}, dropped {:?}",
            outcome.applied, outcome.dropped
        ),
        Some(error) => format!(
            "applied {:?}, dropped {:?}, still parked {:?}: {error}",
            outcome.applied, outcome.dropped, outcome.still_parked
        ),
    };
    sqlx::query(
        "INSERT INTO public.dead_letter_actions
            (id, consumer, aggregate_type, aggregate_id, action, actor, reason, outcome, positions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(&sequence.consumer)
    .bind(&sequence.aggregate_type)
    .bind(&sequence.aggregate_id)
    .bind(action.as_str())
    .bind(actor)
    .bind(reason)
    .bind(&summary)
    .bind(entries.iter().map(|e| e.1).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    // The live projector reloads which aggregates are parked when it sees a new epoch.
    sqlx::query("UPDATE public.projector_positions SET epoch = epoch + 1 WHERE projector = $1")
        .bind(&sequence.consumer)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(consumer = %sequence.consumer, action = action.as_str(), actor, reason, %summary, "dead-letter action");
    Ok(outcome)
}

/// Applies one parked commit in a savepoint: `Ok(Err(reason))` when it still fails.
async fn apply_one(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    position: i64,
    payload: &[u8],
) -> Result<Result<(), String>, sqlx::Error> {
    let commit = match RecordedCommit::decode(u64::try_from(position).unwrap_or(0), payload) {
        Ok(commit) => commit,
        Err(error) => return Ok(Err(error.to_string())),
    };
    sqlx::query("SAVEPOINT parked").execute(&mut *conn).await?;
    let delivery = Delivery {
        commit: &commit,
        mode: DeliveryMode::Live,
    };
    match projection.apply(conn, &[delivery]).await {
        Ok(()) => Ok(Ok(())),
        Err(error) => {
            sqlx::query("ROLLBACK TO SAVEPOINT parked")
                .execute(&mut *conn)
                .await?;
            Ok(Err(error.to_string()))
        }
    }
}

/// One entry as `dlq show` presents it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub entry: DeadLetter,
    /// The commit as decoded (upcast) from the stored payload, events included.
    pub commit: Option<serde_json::Value>,
    /// Why the payload does not decode, when it does not.
    pub decode_error: Option<String>,
    /// When it was parked.
    pub first_failure_at: DateTime<Utc>,
    /// The last time it failed: the last retry that left it parked, else when parked.
    pub last_failure_at: DateTime<Utc>,
    /// The parked commits of the same aggregate and consumer behind it, in order.
    pub behind: Vec<DeadLetter>,
}

/// Entry `id` with its decoded commit and the parked successors of its aggregate.
///
/// # Errors
/// [`DeadLetterError::UnknownId`], or PostgreSQL failures.
pub async fn detail(pool: &PgPool, id: Uuid) -> Result<DeadLetterDetail, DeadLetterError> {
    let (entry, payload) = show(pool, id)
        .await?
        .ok_or(DeadLetterError::UnknownId(id))?;
    let (commit, decode_error) =
        match RecordedCommit::decode(u64::try_from(entry.position).unwrap_or(0), &payload) {
            Ok(commit) => match serde_json::to_value(&commit.envelope) {
                Ok(value) => (Some(value), None),
                Err(error) => (None, Some(error.to_string())),
            },
            Err(error) => (None, Some(error.to_string())),
        };
    let last_retry: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(at) FROM public.dead_letter_actions
          WHERE consumer = $1 AND aggregate_type = $2 AND aggregate_id = $3
            AND action = 'retry' AND $4 = ANY(positions) AND at >= $5",
    )
    .bind(&entry.consumer)
    .bind(&entry.aggregate_type)
    .bind(&entry.aggregate_id)
    .bind(entry.position)
    .bind(entry.parked_at)
    .fetch_one(pool)
    .await?;
    let behind = if entry.status == DeadLetterStatus::Parked {
        list(
            pool,
            &DeadLetterFilter {
                consumer: Some(entry.consumer.clone()),
                aggregate_type: Some(entry.aggregate_type.clone()),
                aggregate_id: Some(entry.aggregate_id.clone()),
                ..DeadLetterFilter::default()
            },
            i64::MAX,
        )
        .await?
        .into_iter()
        .filter(|d| d.position > entry.position)
        .collect()
    } else {
        Vec::new()
    };
    let last_failure_at = match (entry.status, last_retry) {
        (DeadLetterStatus::Parked, Some(at)) => at,
        _ => entry.parked_at,
    };
    Ok(DeadLetterDetail {
        first_failure_at: entry.parked_at,
        last_failure_at,
        entry,
        commit,
        decode_error,
        behind,
    })
}

/// Which parked sequences a bulk action takes: every one, or those of one consumer,
/// or those whose head failed with one error fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceSelector {
    pub consumer: Option<String>,
    pub fingerprint: Option<String>,
}

/// What a bulk action would take, before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BulkPreview {
    pub sequences: i64,
    pub commits: i64,
    /// Parked sequences per consumer.
    pub consumers: Vec<(String, i64)>,
    /// Parked sequences per aggregate type.
    pub aggregate_types: Vec<(String, i64)>,
}

/// Counts what `selector` selects, without locking anything.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn preview(
    pool: &PgPool,
    selector: &SequenceSelector,
) -> Result<BulkPreview, sqlx::Error> {
    let heads = format!(
        "WITH heads AS (
            SELECT consumer, aggregate_type, aggregate_id FROM public.dead_letters
             WHERE status = '{PARKED}' AND blocked_by IS NULL
               AND ($1::text IS NULL OR consumer = $1)
               AND ($2::text IS NULL OR error_fingerprint = $2))"
    );
    let (sequences, commits): (i64, i64) = sqlx::query_as(&format!(
        "{heads}
         SELECT (SELECT count(*) FROM heads),
                (SELECT count(*) FROM public.dead_letters d JOIN heads h
                  USING (consumer, aggregate_type, aggregate_id) WHERE d.status = '{PARKED}')"
    ))
    .bind(&selector.consumer)
    .bind(&selector.fingerprint)
    .fetch_one(pool)
    .await?;
    let consumers = sqlx::query_as(&format!(
        "{heads} SELECT consumer, count(*) FROM heads GROUP BY 1 ORDER BY 1"
    ))
    .bind(&selector.consumer)
    .bind(&selector.fingerprint)
    .fetch_all(pool)
    .await?;
    let aggregate_types = sqlx::query_as(&format!(
        "{heads} SELECT aggregate_type, count(*) FROM heads GROUP BY 1 ORDER BY 1"
    ))
    .bind(&selector.consumer)
    .bind(&selector.fingerprint)
    .fetch_all(pool)
    .await?;
    Ok(BulkPreview {
        sequences,
        commits,
        consumers,
        aggregate_types,
    })
}

/// The next `limit` parked sequences selected by `selector` after `after`, in
/// (consumer, aggregate type, aggregate id) order: a keyset page, so a bulk action never
/// holds every id in memory and a sequence that stays parked is not taken twice.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn sequences_page(
    pool: &PgPool,
    selector: &SequenceSelector,
    after: Option<&ParkedSequence>,
    limit: i64,
) -> Result<Vec<ParkedSequence>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(&format!(
        "SELECT consumer, aggregate_type, aggregate_id FROM public.dead_letters
          WHERE status = '{PARKED}' AND blocked_by IS NULL
            AND ($1::text IS NULL OR consumer = $1)
            AND ($2::text IS NULL OR error_fingerprint = $2)
            AND ($3::text IS NULL
                 OR (consumer, aggregate_type, aggregate_id) > ($3, $4::text, $5::text))
          GROUP BY consumer, aggregate_type, aggregate_id
          ORDER BY consumer, aggregate_type, aggregate_id
          LIMIT $6"
    ))
    .bind(&selector.consumer)
    .bind(&selector.fingerprint)
    .bind(after.map(|a| &a.consumer))
    .bind(after.map(|a| &a.aggregate_type))
    .bind(after.map(|a| &a.aggregate_id))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(consumer, aggregate_type, aggregate_id)| ParkedSequence {
            consumer,
            aggregate_type,
            aggregate_id,
        })
        .collect())
}
