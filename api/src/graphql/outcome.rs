//! How a command's result becomes a mutation's answer: a commit gives a `position`, a
//! domain rule gives a `userError` with a code, anything else a top-level error.

use domain::ErrorCode;
use infra_nats::{CommandError, CommitOutcome, ProductCommandError};

use super::error::ApiError;
use super::relay::UserError;

/// What a command did, as far as the client is concerned.
#[derive(Debug)]
pub enum Executed {
    /// Stored (or already stored under the same command id) at this outcome's position.
    Committed(CommitOutcome),
    /// Refused by a domain rule; nothing changed.
    Rejected(UserError),
}

/// Sorts a command's result into a commit, a rejection on `field`, or an error.
///
/// # Errors
/// [`ApiError::Conflict`] when other writers kept winning, [`ApiError::Unavailable`]
/// when NATS was out of reach (the command may have been stored: retry with the same
/// idempotency key), [`ApiError::Internal`] when stored data was unreadable.
pub fn executed<E>(
    result: Result<CommitOutcome, CommandError<E>>,
    field: &[&str],
) -> Result<Executed, ApiError>
where
    E: std::error::Error + ErrorCode,
{
    match result {
        Ok(outcome) => Ok(Executed::Committed(outcome)),
        Err(CommandError::Rejected(error)) => Ok(Executed::Rejected(UserError::on(
            field,
            error.code(),
            error.to_string(),
        ))),
        Err(CommandError::Conflict { attempts }) => Err(ApiError::Conflict(format!(
            "the object changed concurrently {attempts} times in a row; retry"
        ))),
        Err(error @ CommandError::Unavailable(_)) => Err(ApiError::unavailable(error)),
        Err(error @ CommandError::Corrupt(_)) => Err(ApiError::internal(error)),
    }
}

/// [`executed`] for product commands, whose SKUs are unique across the catalog.
///
/// # Errors
/// As [`executed`].
pub fn product_executed(
    result: Result<CommitOutcome, ProductCommandError>,
    field: &[&str],
) -> Result<Executed, ApiError> {
    match result {
        Err(ProductCommandError::SkuTaken(taken)) => Ok(Executed::Rejected(UserError::on(
            field,
            taken.code(),
            format!("SKU {} belongs to another product", taken.sku),
        ))),
        Err(ProductCommandError::Command(error)) => executed(Err(error), field),
        Ok(outcome) => Ok(Executed::Committed(outcome)),
    }
}
