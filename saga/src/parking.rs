//! Parking a saga whose compensation keeps failing in the sequenced dead-letter queue
//! (consumer `saga`), next to the projectors' entries, so operators find every stuck
//! thing in one place.

use cqrs_es::Aggregate;
use domain::saga::{OrderSaga, Run};
use projections::dead_letters::store::{self, NewDeadLetter, Resolution};
use projections::dead_letters::ParkedSequence;
use projections::DeliveryMode;
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
    let sequence = sequence(&run.order_id.to_string());
    let mut tx = pool.begin().await?;
    // An earlier round's entry for the same saga is replaced by this one.
    store::supersede_before(&mut tx, &sequence, position).await?;
    let entry = NewDeadLetter {
        consumer: &sequence.consumer,
        position,
        aggregate_type: &sequence.aggregate_type,
        aggregate_id: &sequence.aggregate_id,
        blocked_by: None,
        error: &message,
        attempts: 1,
        mode: DeliveryMode::Live,
        payload: &payload,
    };
    store::park_once(&mut tx, &entry).await?;
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
    let sequence = sequence(order_id);
    let mut tx = pool.begin().await?;
    let positions = store::resolve_sequence(&mut tx, &sequence, Resolution::Applied).await?;
    sqlx::query(
        "INSERT INTO dead_letter_actions
             (id, consumer, aggregate_type, aggregate_id, action, actor, reason, outcome, positions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::new_v4())
    .bind(&sequence.consumer)
    .bind(&sequence.aggregate_type)
    .bind(&sequence.aggregate_id)
    .bind(action)
    .bind(actor)
    .bind(reason)
    .bind(outcome)
    .bind(positions)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The queue entries of one order's saga.
fn sequence(order_id: &str) -> ParkedSequence {
    ParkedSequence {
        consumer: CONSUMER.to_owned(),
        aggregate_type: OrderSaga::TYPE.to_owned(),
        aggregate_id: order_id.to_owned(),
    }
}
