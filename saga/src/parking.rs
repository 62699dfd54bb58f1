//! Parking a saga whose compensation keeps failing in the sequenced dead-letter queue
//! (consumer `saga`), next to the projectors' entries, so operators find every stuck
//! thing in one place.

use domain::saga::Run;
use projections::runtime::fingerprint;
use sqlx::PgPool;
use uuid::Uuid;

/// The dead-letter queue's consumer name for sagas: the trigger consumer's.
pub const CONSUMER: &str = crate::trigger::CONSUMER;

/// Parks the saga of `run`, failed at `step` with `error`, at the saga commit `position`
/// that recorded the failure. Parking the same failure again changes nothing; an entry
/// of an earlier compensation round of the same saga is superseded.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn park(
    pool: &PgPool,
    run: &Run,
    step: &str,
    error: &str,
    position: u64,
) -> Result<(), sqlx::Error> {
    let position = i64::try_from(position).unwrap_or(i64::MAX);
    let message = format!("compensation step `{step}` keeps failing: {error}");
    let payload = serde_json::to_vec(run).unwrap_or_default();
    let mut tx = pool.begin().await?;
    // An earlier round's entry for the same saga is replaced by this one.
    sqlx::query(
        "UPDATE dead_letters SET status = 'superseded', resolved_at = now()
          WHERE consumer = $1 AND aggregate_type = 'order_saga' AND aggregate_id = $2
            AND status = 'parked' AND position < $3",
    )
    .bind(CONSUMER)
    .bind(run.order_id.to_string())
    .bind(position)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO dead_letters
             (id, consumer, position, aggregate_type, aggregate_id, blocked_by, error,
              error_fingerprint, attempts, mode, payload)
         SELECT $1, $2, $3, 'order_saga', $4, NULL, $5, $6, 1, 'live', $7
         WHERE NOT EXISTS (
             SELECT 1 FROM dead_letters WHERE consumer = $2 AND position = $3)",
    )
    .bind(Uuid::new_v4())
    .bind(CONSUMER)
    .bind(position)
    .bind(run.order_id.to_string())
    .bind(&message)
    .bind(fingerprint(&message))
    .bind(payload)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Marks the saga's parked entries resolved after an operator's action succeeded, and
/// records the action.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn resolve(
    pool: &PgPool,
    order_id: &str,
    action: &str,
    actor: &str,
    reason: &str,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let positions: Vec<i64> = sqlx::query_scalar(
        "UPDATE dead_letters SET status = 'applied', resolved_at = now()
          WHERE consumer = $1 AND aggregate_type = 'order_saga' AND aggregate_id = $2
            AND status = 'parked'
         RETURNING position",
    )
    .bind(CONSUMER)
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO dead_letter_actions
             (id, consumer, aggregate_type, aggregate_id, action, actor, reason, outcome, positions)
         VALUES ($1, $2, 'order_saga', $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::new_v4())
    .bind(CONSUMER)
    .bind(order_id)
    .bind(action)
    .bind(actor)
    .bind(reason)
    .bind(outcome)
    .bind(positions)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
