//! How a command's result becomes a mutation's answer: a commit gives a `position`, a
//! domain rule gives a `userError` with a code, anything else a top-level error.

use std::fmt::Debug;

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

/// The `code` of a domain error: its variant's name in upper snake case
/// (`AlreadyShipped` → `ALREADY_SHIPPED`).
pub fn code_of(error: &impl Debug) -> String {
    let debug = format!("{error:?}");
    let name: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut code = String::with_capacity(name.len() + 4);
    for (index, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            code.push('_');
        }
        code.push(c.to_ascii_uppercase());
    }
    code
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
    E: std::error::Error + Debug,
{
    match result {
        Ok(outcome) => Ok(Executed::Committed(outcome)),
        Err(CommandError::Rejected(error)) => Ok(Executed::Rejected(UserError::on(
            field,
            &code_of(&error),
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
        Err(ProductCommandError::SkuTaken { sku, .. }) => Ok(Executed::Rejected(UserError::on(
            field,
            "SKU_TAKEN",
            format!("SKU {sku} belongs to another product"),
        ))),
        Err(ProductCommandError::Command(error)) => executed(Err(error), field),
        Ok(outcome) => Ok(Executed::Committed(outcome)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Sample {
        AlreadyShipped,
        ZeroQuantity { sku: String },
        Insufficient(u32),
    }

    #[test]
    fn codes_are_variant_names_in_upper_snake_case() {
        assert_eq!(code_of(&Sample::AlreadyShipped), "ALREADY_SHIPPED");
        assert_eq!(
            code_of(&Sample::ZeroQuantity { sku: "A".into() }),
            "ZERO_QUANTITY"
        );
        assert_eq!(code_of(&Sample::Insufficient(3)), "INSUFFICIENT");
    }
}
