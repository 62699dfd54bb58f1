//! The operators' use cases on the read models: acting on a parked dead-letter sequence.

use projections::dead_letters::{self, Action, ActionOutcome, DeadLetterError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{AppError, Refusal, Rejection, UseCaseResult};

/// An operator's action on the parked sequence holding one dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetterAct {
    /// A dead letter of the sequence.
    pub id: Uuid,
    /// Retry, skip the head, or discard the sequence.
    pub action: Action,
    /// Who acts, as recorded with the action.
    pub actor: String,
    /// Why; recorded with the action.
    pub reason: String,
}

/// Applies `act` to the sequence of a projector's dead letter, in one transaction that
/// also records the action. A head that still fails stays parked, with what was applied
/// before it reported in the outcome (`error`).
///
/// # Errors
/// [`AppError::NotFound`] for an unknown id or a sequence no longer parked, or a database
/// failure.
pub async fn act_on_dead_letter(db: &PgPool, act: DeadLetterAct) -> UseCaseResult<ActionOutcome> {
    if act.reason.trim().is_empty() {
        return Ok(Err(Rejection::refusal(
            &["reason"],
            Refusal::ReasonRequired,
            "a reason is required",
        )));
    }
    let sequence = match dead_letters::sequence_of(db, act.id).await {
        Ok(sequence) => sequence,
        Err(DeadLetterError::UnknownId(_) | DeadLetterError::NothingParked { .. }) => {
            return Err(AppError::NotFound("dead letter"))
        }
        Err(error) => return Err(dead_letter_failure(error)),
    };
    let Some(projection) = projections::registry::by_name(&sequence.consumer) else {
        return Ok(Err(Rejection::refusal(
            &["id"],
            Refusal::NotAProjection,
            format!(
                "`{}` is not a projector; use its own tools",
                sequence.consumer
            ),
        )));
    };
    match dead_letters::act(
        db,
        &projection,
        &sequence,
        act.action,
        &act.actor,
        &act.reason,
    )
    .await
    {
        Ok(outcome) => Ok(Ok(outcome)),
        // Resolved meanwhile (or before): nothing of it is parked any more.
        Err(DeadLetterError::NothingParked { .. }) => Err(AppError::NotFound("parked dead letter")),
        Err(error) => Err(dead_letter_failure(error)),
    }
}

fn dead_letter_failure(error: DeadLetterError) -> AppError {
    match error {
        DeadLetterError::Database(error) => AppError::database(error),
        other => AppError::Internal(Box::new(other)),
    }
}
