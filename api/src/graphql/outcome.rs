//! How a use case's result becomes a mutation's answer: what it did gives the payload, a
//! rejection gives a `userError` with its code, anything else a top-level error.

use application::{Rejection, UseCaseResult};

use super::error::ApiError;
use super::relay::UserError;

impl From<Rejection> for UserError {
    fn from(rejection: Rejection) -> Self {
        let field: Vec<&str> = rejection.field.iter().map(String::as_str).collect();
        UserError::on(&field, rejection.code, rejection.message)
    }
}

/// Sorts a use case's result into what it did, a user error, or a top-level error.
///
/// # Errors
/// The use case's [`application::AppError`] as an [`ApiError`] (the cause logged).
pub fn decided<T>(result: UseCaseResult<T>) -> Result<Result<T, UserError>, ApiError> {
    Ok(result?.map_err(UserError::from))
}
