//! Every change to `public.dead_letters`, and the runtime's read of the parked heads.
//!
//! This module is the table's one writer: the projector runtime (park, rebuild, verify),
//! the operator actions and the saga all come here, so the statuses, the "parked behind"
//! convention and the fingerprint are spelled once. Each function takes the caller's
//! connection (usually a transaction), so a park still commits with the read-model
//! change and the position, and a rebuild's switch with the position row it holds.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use super::{DeadLetterStatus, ParkedSequence, PARKED};
use crate::projection::DeliveryMode;
use crate::runtime::fingerprint;

/// A commit about to be parked.
#[derive(Debug, Clone, Copy)]
pub struct NewDeadLetter<'a> {
    pub consumer: &'a str,
    pub position: i64,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// `None` for the commit that failed; else the position of the head it waits behind.
    pub blocked_by: Option<i64>,
    /// Why it failed; its fingerprint is derived here, so that groups agree.
    pub error: &'a str,
    pub attempts: i32,
    pub mode: DeliveryMode,
    /// The raw message as read from the stream, so a retry needs no NATS.
    pub payload: &'a [u8],
}

/// How an operator's action (or a saga brought to rest) resolves a parked entry.
/// Superseding has functions of its own: it resolves whole queues, not one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Applied,
    Skipped,
    Discarded,
}

impl Resolution {
    /// The status the entry ends in.
    pub const fn status(self) -> DeadLetterStatus {
        match self {
            Resolution::Applied => DeadLetterStatus::Applied,
            Resolution::Skipped => DeadLetterStatus::Skipped,
            Resolution::Discarded => DeadLetterStatus::Discarded,
        }
    }
}

/// The error recorded for a commit parked behind the head at `head`: it did not fail,
/// it waits.
pub fn parked_behind(head: i64) -> String {
    format!("parked behind position {head} of the same aggregate")
}

/// Parks `entry`.
///
/// # Errors
/// When PostgreSQL fails, e.g. when `entry.consumer` already has `entry.position` parked.
pub async fn park(conn: &mut PgConnection, entry: &NewDeadLetter<'_>) -> Result<(), sqlx::Error> {
    bind_new(
        sqlx::query(
            "INSERT INTO public.dead_letters (id, consumer, position, aggregate_type,
                 aggregate_id, blocked_by, error, error_fingerprint, attempts, mode, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        ),
        entry,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Binds a new entry's columns, in the order both inserts name them ($1 to $11).
fn bind_new<'q>(
    query: Query<'q, Postgres, PgArguments>,
    entry: &NewDeadLetter<'q>,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(Uuid::now_v7())
        .bind(entry.consumer)
        .bind(entry.position)
        .bind(entry.aggregate_type)
        .bind(entry.aggregate_id)
        .bind(entry.blocked_by)
        .bind(entry.error)
        .bind(fingerprint(entry.error))
        .bind(entry.attempts)
        .bind(entry.mode.as_str())
        .bind(entry.payload)
}

/// Parks `entry` unless its consumer has any entry (in any status) at its position: for
/// a caller that may report the same failure again (the saga). Returns whether it parked.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn park_once(
    conn: &mut PgConnection,
    entry: &NewDeadLetter<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = bind_new(
        sqlx::query(
            "INSERT INTO public.dead_letters (id, consumer, position, aggregate_type,
                 aggregate_id, blocked_by, error, error_fingerprint, attempts, mode, payload)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
             WHERE NOT EXISTS (
                 SELECT 1 FROM public.dead_letters WHERE consumer = $2 AND position = $3)",
        ),
        entry,
    )
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

/// Supersedes everything `consumer` has parked: its read model was dropped or replaced,
/// so the queue no longer describes it.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn supersede(conn: &mut PgConnection, consumer: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE public.dead_letters SET status = $2, resolved_at = now()
          WHERE consumer = $1 AND status = '{PARKED}'"
    ))
    .bind(consumer)
    .bind(DeadLetterStatus::Superseded.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Supersedes the entries of `sequence` parked before `position`: a later report of
/// the same aggregate replaces them (a saga's next compensation round).
///
/// # Errors
/// When PostgreSQL fails.
pub async fn supersede_before(
    conn: &mut PgConnection,
    sequence: &ParkedSequence,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE public.dead_letters SET status = $5, resolved_at = now()
          WHERE consumer = $1 AND aggregate_type = $2 AND aggregate_id = $3
            AND status = '{PARKED}' AND position < $4"
    ))
    .bind(&sequence.consumer)
    .bind(&sequence.aggregate_type)
    .bind(&sequence.aggregate_id)
    .bind(position)
    .bind(DeadLetterStatus::Superseded.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Hands what `from` has parked over to `to`: a rebuild's consumer parked against the
/// tables that now become the live ones.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn hand_over(conn: &mut PgConnection, from: &str, to: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE public.dead_letters SET consumer = $1 WHERE consumer = $2 AND status = '{PARKED}'"
    ))
    .bind(to)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(())
}

/// Resolves the entry `id` as `resolution`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn resolve(
    conn: &mut PgConnection,
    id: Uuid,
    resolution: Resolution,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE public.dead_letters SET status = $2, resolved_at = now() WHERE id = $1")
        .bind(id)
        .bind(resolution.status().as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Resolves every parked entry of `sequence` as `resolution`; returns their positions.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn resolve_sequence(
    conn: &mut PgConnection,
    sequence: &ParkedSequence,
    resolution: Resolution,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "UPDATE public.dead_letters SET status = $4, resolved_at = now()
          WHERE consumer = $1 AND aggregate_type = $2 AND aggregate_id = $3
            AND status = '{PARKED}'
         RETURNING position"
    ))
    .bind(&sequence.consumer)
    .bind(&sequence.aggregate_type)
    .bind(&sequence.aggregate_id)
    .bind(resolution.status().as_str())
    .fetch_all(conn)
    .await
}

/// Makes the parked entry `id` the head of its sequence after it failed again with
/// `error` (a retry that did not get through): one more attempt, a fresh fingerprint.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn make_head(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.dead_letters
            SET blocked_by = NULL, error = $2, error_fingerprint = $3, attempts = attempts + 1
          WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(fingerprint(error))
    .execute(conn)
    .await?;
    Ok(())
}

/// Parks the entries `ids` behind the head at position `head`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn park_behind(
    conn: &mut PgConnection,
    ids: &[Uuid],
    head: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE public.dead_letters SET blocked_by = $2, error = $3 WHERE id = ANY($1)")
        .bind(ids)
        .bind(head)
        .bind(parked_behind(head))
        .execute(conn)
        .await?;
    Ok(())
}

/// Per aggregate with commits parked for `consumer`: its type, id and head position
/// (the lowest parked). The consumer passes over the aggregate from the head on.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn parked_heads<'c>(
    executor: impl PgExecutor<'c>,
    consumer: &str,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT aggregate_type, aggregate_id, min(position) FROM public.dead_letters
          WHERE consumer = $1 AND status = '{PARKED}'
          GROUP BY aggregate_type, aggregate_id"
    ))
    .bind(consumer)
    .fetch_all(executor)
    .await
}
