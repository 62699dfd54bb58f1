//! Operator replays: a range of the log re-delivered to one projector, in mode
//! [`DeliveryMode::Replay`], to repair its read model after a fix (or to prove it needs
//! none).
//!
//! - A replay is a row of `public.replays`: the target, the selection (a position range,
//!   optionally one aggregate type or one aggregate) and a cursor. Each chunk is applied
//!   in one transaction that also advances the cursor, so an interrupted replay resumes
//!   exactly after the last chunk it committed, and each commit is delivered once per
//!   replay.
//! - A chunk locks the live projector's position row first: the live projector waits for
//!   the chunk (never the other way round), and a replay never delivers a commit the live
//!   projector has not applied yet; those are the live projector's to apply, with effects.
//! - Commits the live projector has parked in the dead-letter queue, and every later
//!   commit of their aggregates, are passed over: their order is the queue's to keep
//!   (`dlq retry`), not the replay's.
//! - Projections apply replayed commits idempotently (their tests replay applied
//!   commits and compare every row), and only live deliveries may cause effects outside
//!   the read model, so a replay sends no notification; replaying twice changes nothing
//!   the second time.
//!
//! The saga's replay mode (crate `saga`) uses the same rows and the same reader.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use infra_nats::subjects::{aggregate_subject, aggregate_type_filter, EVENTS_SUBJECTS};
use infra_nats::{BoxError, RecordedCommit};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Acquire, PgConnection, PgPool};
use uuid::Uuid;

use super::sink::{to_i64, to_u64};
use crate::dead_letters;
use crate::projection::{ApplyError, Delivery, DeliveryMode, Projection};

/// The target name of the saga's replay mode.
pub const SAGA_TARGET: &str = "saga";
/// At most this many findings are kept on a replay's row.
const MAX_FINDINGS: i64 = 1000;

/// What a replay re-delivers: positions `from..=to`, optionally only one aggregate type,
/// or one aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub from: u64,
    pub to: u64,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
}

impl Selection {
    /// Whether a commit of this aggregate is selected (its position aside).
    pub fn matches(&self, aggregate_type: &str, aggregate_id: &str) -> bool {
        self.aggregate_type
            .as_deref()
            .is_none_or(|wanted| wanted == aggregate_type)
            && self
                .aggregate_id
                .as_deref()
                .is_none_or(|wanted| wanted == aggregate_id)
    }

    /// The subject filter that reads the selection and as little else as possible.
    pub fn subject_filter(&self) -> String {
        match (&self.aggregate_type, &self.aggregate_id) {
            (Some(aggregate_type), Some(id)) => aggregate_subject(aggregate_type, id),
            (Some(aggregate_type), None) => aggregate_type_filter(aggregate_type),
            _ => EVENTS_SUBJECTS.to_owned(),
        }
    }
}

/// One replay as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayJob {
    pub id: Uuid,
    pub target: String,
    pub selection: Selection,
    /// The last position handled: the replay resumes after it.
    pub cursor: u64,
    /// Selected commits handed to the target so far.
    pub delivered: u64,
    /// Selected commits passed over because the target has them (or an earlier commit of
    /// their aggregate) parked.
    pub skipped_parked: u64,
    pub outcome: Value,
    pub findings: Value,
    pub status: String,
    pub actor: String,
    pub reason: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ReplayJob {
    /// Positions still to go through (an upper bound on the commits left).
    pub fn remaining(&self) -> u64 {
        self.selection.to.saturating_sub(self.cursor)
    }

    pub fn is_finished(&self) -> bool {
        self.status != "running"
    }
}

/// Whether [`begin`] started a replay or found the same one interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    Started,
    Resumed,
}

/// Why a replay could not start or go on. Nothing of a failed chunk is kept.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "replay {} of `{}` is unfinished with another selection (positions {}..={}); \
         run it again with the same arguments to resume it, or abandon it first",
        .0.id, .0.target, .0.selection.from, .0.selection.to
    )]
    OtherUnfinished(Box<ReplayJob>),
    #[error("replay {0} is not running here any more (another process moved it on, or it was abandoned)")]
    Moved(Uuid),
    #[error("no replay {0}")]
    NotFound(Uuid),
    #[error("the projector `{0}` has never run: there is nothing to repair yet")]
    NeverRan(String),
    #[error(
        "the projector `{name}` has applied up to position {live}; a replay stops there \
         (later commits are the live projector's)"
    )]
    PastLive { name: String, live: u64 },
    #[error("the projection refused the commit at position {position}: {error}")]
    Apply {
        position: u64,
        #[source]
        error: ApplyError,
    },
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("NATS: {0}")]
    Nats(#[source] BoxError),
}

/// A `public.replays` row as stored.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    target: String,
    from_position: i64,
    to_position: i64,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    cursor: i64,
    delivered: i64,
    skipped_parked: i64,
    outcome: Value,
    findings: Value,
    status: String,
    actor: String,
    reason: String,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, target, from_position, to_position, aggregate_type, aggregate_id, \
     cursor, delivered, skipped_parked, outcome, findings, status, actor, reason, started_at, \
     updated_at, finished_at";

fn job(row: JobRow) -> ReplayJob {
    ReplayJob {
        id: row.id,
        target: row.target,
        selection: Selection {
            from: to_u64(row.from_position),
            to: to_u64(row.to_position),
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
        },
        cursor: to_u64(row.cursor),
        delivered: to_u64(row.delivered),
        skipped_parked: to_u64(row.skipped_parked),
        outcome: row.outcome,
        findings: row.findings,
        status: row.status,
        actor: row.actor,
        reason: row.reason,
        started_at: row.started_at,
        updated_at: row.updated_at,
        finished_at: row.finished_at,
    }
}

/// The unfinished replay of `target`, if any.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn unfinished(pool: &PgPool, target: &str) -> Result<Option<ReplayJob>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM public.replays WHERE target = $1 AND status = 'running'"
    ))
    .bind(target)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(job))
}

/// One replay by id.
///
/// # Errors
/// [`ReplayError::NotFound`], or when PostgreSQL fails.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<ReplayJob, ReplayError> {
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM public.replays WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(job).ok_or(ReplayError::NotFound(id))
}

/// Replays, newest first.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<ReplayJob>, sqlx::Error> {
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM public.replays ORDER BY started_at DESC, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(job).collect())
}

/// Starts a replay of `selection` to `target`, or resumes the unfinished one with the
/// same selection.
///
/// # Errors
/// [`ReplayError::OtherUnfinished`] when `target` has an unfinished replay of another
/// selection (one at a time per target); PostgreSQL errors.
pub async fn begin(
    pool: &PgPool,
    target: &str,
    selection: &Selection,
    actor: &str,
    reason: &str,
) -> Result<(ReplayJob, Begun), ReplayError> {
    if let Some(running) = unfinished(pool, target).await? {
        return if running.selection == *selection {
            Ok((running, Begun::Resumed))
        } else {
            Err(ReplayError::OtherUnfinished(Box::new(running)))
        };
    }
    let inserted: Result<JobRow, sqlx::Error> = sqlx::query_as(&format!(
        "INSERT INTO public.replays
            (id, target, from_position, to_position, aggregate_type, aggregate_id, cursor, actor, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $3 - 1, $7, $8)
         RETURNING {JOB_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(target)
    .bind(to_i64(selection.from))
    .bind(to_i64(selection.to))
    .bind(&selection.aggregate_type)
    .bind(&selection.aggregate_id)
    .bind(actor)
    .bind(reason)
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(row) => Ok((job(row), Begun::Started)),
        // Another process started one a moment ago: resume it or refuse, as above.
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            match unfinished(pool, target).await? {
                Some(running) if running.selection == *selection => Ok((running, Begun::Resumed)),
                Some(running) => Err(ReplayError::OtherUnfinished(Box::new(running))),
                None => Err(ReplayError::Database(sqlx::Error::Database(error))),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Marks an unfinished replay abandoned, so that another selection may start.
///
/// # Errors
/// [`ReplayError::NotFound`] when no unfinished replay has this id.
pub async fn abandon(pool: &PgPool, id: Uuid) -> Result<ReplayJob, ReplayError> {
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "UPDATE public.replays SET status = 'abandoned', finished_at = now(), updated_at = now()
          WHERE id = $1 AND status = 'running' RETURNING {JOB_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(job).ok_or(ReplayError::NotFound(id))
}

/// What one chunk did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkReport {
    /// The position the replay's cursor now stands at.
    pub cursor: u64,
    pub delivered: u64,
    pub skipped_parked: u64,
}

/// What a chunk adds to a replay's row besides the cursor.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub delivered: u64,
    pub skipped_parked: u64,
    /// Counts to add to `outcome`, by kind.
    pub outcome: BTreeMap<String, u64>,
    pub findings: Vec<Value>,
}

/// Advances the replay's cursor from `expected` to `end` on `conn` (inside the caller's
/// transaction), adding `progress`, and marks it finished when `end` is its last
/// position.
///
/// # Errors
/// [`ReplayError::Moved`] when the row is not at `expected` or not running.
pub async fn advance(
    conn: &mut PgConnection,
    id: Uuid,
    expected: u64,
    end: u64,
    progress: &Progress,
) -> Result<(), ReplayError> {
    let outcome = serde_json::to_value(&progress.outcome).unwrap_or_default();
    let findings = Value::Array(progress.findings.clone());
    let updated = sqlx::query(
        "UPDATE public.replays
            SET cursor = $3,
                delivered = delivered + $4,
                skipped_parked = skipped_parked + $5,
                outcome = (SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb) FROM (
                    SELECT key, sum(value::bigint) AS total FROM (
                        SELECT * FROM jsonb_each_text(outcome)
                        UNION ALL SELECT * FROM jsonb_each_text($6::jsonb)) AS parts
                    GROUP BY key) AS sums),
                findings = CASE WHEN jsonb_array_length(findings) >= $8 THEN findings
                                ELSE findings || $7::jsonb END,
                status = CASE WHEN $3 >= to_position THEN 'finished' ELSE status END,
                finished_at = CASE WHEN $3 >= to_position THEN now() ELSE finished_at END,
                updated_at = now()
          WHERE id = $1 AND cursor = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(to_i64(expected))
    .bind(to_i64(end))
    .bind(to_i64(progress.delivered))
    .bind(to_i64(progress.skipped_parked))
    .bind(outcome)
    .bind(findings)
    .bind(MAX_FINDINGS)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ReplayError::Moved(id))
    }
}

/// The position the live projector of `name` has applied up to, read under a row lock
/// that the live projector's next batch waits for until the caller's transaction ends.
///
/// # Errors
/// [`ReplayError::NeverRan`] when the projector has no position row.
pub async fn lock_live_position(conn: &mut PgConnection, name: &str) -> Result<u64, ReplayError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT position FROM public.projector_positions WHERE projector = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(position,)| to_u64(position))
        .ok_or_else(|| ReplayError::NeverRan(name.to_owned()))
}

/// The position the live projector of `name` has applied up to (no lock).
///
/// # Errors
/// [`ReplayError::NeverRan`] when the projector has no position row.
pub async fn live_position(pool: &PgPool, name: &str) -> Result<u64, ReplayError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT position FROM public.projector_positions WHERE projector = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    row.map(|(position,)| to_u64(position))
        .ok_or_else(|| ReplayError::NeverRan(name.to_owned()))
}

/// Applies one chunk of a replay to `projection`'s live tables and advances the replay
/// from `job.cursor` to `end`, in one transaction. `commits` are the selected commits
/// with positions in `job.cursor + 1 ..= end`, in stream order.
///
/// # Errors
/// [`ReplayError::PastLive`] when `end` is beyond the live projector's position,
/// [`ReplayError::Apply`] naming the first commit the projection refused (nothing of the
/// chunk is kept), [`ReplayError::Moved`], PostgreSQL errors.
pub async fn apply_chunk(
    pool: &PgPool,
    projection: &dyn Projection,
    job: &ReplayJob,
    commits: &[RecordedCommit],
    end: u64,
) -> Result<ChunkReport, ReplayError> {
    let name = projection.name();
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let live = lock_live_position(&mut tx, name).await?;
    if end > live {
        return Err(ReplayError::PastLive {
            name: name.to_owned(),
            live,
        });
    }
    // Per parked aggregate, its head: commits from there on wait in the queue.
    let parked: HashMap<(String, String), u64> = dead_letters::store::parked_heads(&mut *tx, name)
        .await?
        .into_iter()
        .map(|(kind, id, head)| ((kind, id), to_u64(head)))
        .collect();
    let consumed = projection.aggregate_types();
    let mut skipped_parked = 0;
    let mut deliveries = Vec::with_capacity(commits.len());
    for commit in commits {
        let envelope = &commit.envelope;
        if !consumed.contains(&envelope.aggregate_type.as_str()) {
            continue;
        }
        let key = (
            envelope.aggregate_type.clone(),
            envelope.aggregate_id.clone(),
        );
        if parked
            .get(&key)
            .is_some_and(|&head| commit.position >= head)
        {
            skipped_parked += 1;
            continue;
        }
        deliveries.push(Delivery {
            commit,
            mode: DeliveryMode::Replay,
        });
    }
    if !deliveries.is_empty() {
        super::set_schema(&mut tx, projection.schema()).await?;
        sqlx::query("SAVEPOINT chunk").execute(&mut *tx).await?;
        if let Err(error) = projection.apply(&mut tx, &deliveries).await {
            // Name the commit: apply one at a time until one fails. All of it is rolled
            // back when the transaction drops.
            sqlx::query("ROLLBACK TO SAVEPOINT chunk")
                .execute(&mut *tx)
                .await?;
            for delivery in &deliveries {
                if let Err(one) = projection
                    .apply(&mut tx, std::slice::from_ref(delivery))
                    .await
                {
                    return Err(ReplayError::Apply {
                        position: delivery.position(),
                        error: one,
                    });
                }
            }
            return Err(ReplayError::Apply {
                position: deliveries[0].position(),
                error,
            });
        }
    }
    let delivered = deliveries.len() as u64;
    let progress = Progress {
        delivered,
        skipped_parked,
        outcome: BTreeMap::from([("applied".to_owned(), delivered)]),
        findings: Vec::new(),
    };
    advance(&mut tx, job.id, job.cursor, end, &progress).await?;
    tx.commit().await?;
    Ok(ChunkReport {
        cursor: end,
        delivered,
        skipped_parked,
    })
}

/// Reads a selection of the log in chunks, without following the log past its end.
pub struct RangeReader {
    client: async_nats::Client,
    selection: Selection,
    filter: String,
    /// The last position read.
    after: u64,
    done: bool,
}

/// A chunk of the selection: the selected commits with positions up to `end`.
#[derive(Debug)]
pub struct Chunk {
    pub commits: Vec<RecordedCommit>,
    /// The position the replay's cursor may advance to once the chunk is handled.
    pub end: u64,
}

impl RangeReader {
    /// A reader of `selection` after position `after` (a replay's cursor).
    pub fn new(client: async_nats::Client, selection: Selection, after: u64) -> Self {
        let filter = selection.subject_filter();
        let done = after >= selection.to;
        Self {
            client,
            selection,
            filter,
            after,
            done,
        }
    }

    /// The next chunk of at most `max` positions' worth of selected commits, or `None`
    /// once the selection's last position has been passed.
    ///
    /// # Errors
    /// [`ReplayError::Nats`] when the log cannot be read or a commit does not decode.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<Chunk>, ReplayError> {
        if self.done {
            return Ok(None);
        }
        let to = self.selection.to;
        let raw = infra_nats::read_batch(&self.client, &self.filter, self.after, max.max(1))
            .await
            .map_err(|e| ReplayError::Nats(Box::new(e)))?;
        let mut commits = Vec::with_capacity(raw.len());
        let mut end = self.after;
        // Nothing selected is left once the log has nothing more, or goes past `to`.
        let mut exhausted = raw.is_empty();
        for (position, payload) in raw {
            if position > to {
                exhausted = true;
                break;
            }
            end = position;
            let commit = RecordedCommit::decode(position, &payload)
                .map_err(|e| ReplayError::Nats(Box::new(e)))?;
            let envelope = &commit.envelope;
            if self
                .selection
                .matches(&envelope.aggregate_type, &envelope.aggregate_id)
            {
                commits.push(commit);
            }
        }
        if exhausted || end >= to {
            end = to;
            self.done = true;
        }
        self.after = end;
        Ok(Some(Chunk { commits, end }))
    }
}

/// What a dry run found in a selection.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SelectionSummary {
    /// Selected commits, and the events they hold.
    pub commits: u64,
    pub events: u64,
    /// Distinct aggregates per type.
    pub aggregates: BTreeMap<String, u64>,
    /// Up to ten aggregate ids per type, as examples.
    pub examples: BTreeMap<String, Vec<String>>,
    pub first_position: Option<u64>,
    pub last_position: Option<u64>,
}

/// Reads a selection once and counts what a replay of it would deliver (dry run). Keeps
/// one set of aggregate keys in memory, never the commits.
///
/// # Errors
/// [`ReplayError::Nats`] when the log cannot be read.
pub async fn summarise(
    client: &async_nats::Client,
    selection: &Selection,
    accept: impl Fn(&RecordedCommit) -> bool,
) -> Result<SelectionSummary, ReplayError> {
    let mut reader = RangeReader::new(
        client.clone(),
        selection.clone(),
        selection.from.saturating_sub(1),
    );
    let mut summary = SelectionSummary::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    while let Some(chunk) = reader.next_chunk(1000).await? {
        for commit in chunk.commits.iter().filter(|c| accept(c)) {
            let envelope = &commit.envelope;
            summary.commits += 1;
            summary.events += envelope.events.len() as u64;
            summary.first_position.get_or_insert(commit.position);
            summary.last_position = Some(commit.position);
            let key = (
                envelope.aggregate_type.clone(),
                envelope.aggregate_id.clone(),
            );
            if seen.insert(key) {
                *summary
                    .aggregates
                    .entry(envelope.aggregate_type.clone())
                    .or_default() += 1;
                let examples = summary
                    .examples
                    .entry(envelope.aggregate_type.clone())
                    .or_default();
                if examples.len() < 10 {
                    examples.push(envelope.aggregate_id.clone());
                }
            }
        }
    }
    Ok(summary)
}
