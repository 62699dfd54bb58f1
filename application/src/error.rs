//! How a use case ends when it does not succeed: a [`Rejection`] (a rule the input broke;
//! nothing changed) or an [`AppError`] (the use case could not be carried out).

use std::time::Duration;

use domain::ErrorCode;
use infra_nats::{CommandError, CommitOutcome, ProductCommandError, StoreError};

/// The cause of a failure, kept for the operator's log (never shown to a client).
pub use infra_nats::BoxError;

/// What a use case returns: its result, or the rule the input broke, or why it failed.
pub type UseCaseResult<T> = Result<Result<T, Rejection>, AppError>;

/// A rule the input broke: nothing changed. The edge shows it as a user error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The path of the input field at fault (empty for the input as a whole).
    pub field: Vec<String>,
    /// The public code: the domain error's own code, or a [`Refusal`]'s.
    pub code: &'static str,
    /// What is wrong, for the person reading it.
    pub message: String,
}

impl Rejection {
    /// A rejection of the input field at `field` for `code`.
    pub fn on(field: &[&str], code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.iter().map(|part| (*part).to_owned()).collect(),
            code,
            message: message.into(),
        }
    }

    /// A domain rule broken, on `field`.
    pub fn domain(field: &[&str], error: &(impl ErrorCode + std::fmt::Display)) -> Self {
        Self::on(field, error.code(), error.to_string())
    }

    /// A rule of the application layer broken, on `field`.
    pub fn refusal(field: &[&str], refusal: Refusal, message: impl Into<String>) -> Self {
        Self::on(field, refusal.code(), message)
    }
}

/// The rules a use case checks itself, beyond those each aggregate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An order from a cart with no lines.
    EmptyCart,
    /// No product sells the SKU.
    UnknownSku,
    /// The variant is retired or its product unpublished.
    NotForSale,
    /// A line is priced in another currency than the order's.
    CurrencyMismatch,
    /// An order without lines.
    NoLines,
    /// A refund of an order that has no payment.
    NotPaid,
    /// A refund of an order that is neither delivered nor cancelled.
    NotRefundable,
    /// A refund when nothing captured is left.
    NothingToRefund,
    /// The payment provider refused the request for good.
    ProviderRefused,
    /// A new variant's SKU is not a valid SKU.
    InvalidSku,
    /// An operator's action without a reason (every action is recorded with one).
    ReasonRequired,
    /// A dead letter of a consumer that is not a projector (the saga has its own tools).
    NotAProjection,
    /// A retried dead-letter sequence whose head still fails; it stays parked.
    StillFailing,
}

impl Refusal {
    /// The public code; part of the API's contract, so written out, never derived.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::EmptyCart => "EMPTY_CART",
            Refusal::UnknownSku => "UNKNOWN_SKU",
            Refusal::NotForSale => "NOT_FOR_SALE",
            Refusal::CurrencyMismatch => "CURRENCY_MISMATCH",
            Refusal::NoLines => "NO_LINES",
            Refusal::NotPaid => "NOT_PAID",
            Refusal::NotRefundable => "NOT_REFUNDABLE",
            Refusal::NothingToRefund => "NOTHING_TO_REFUND",
            Refusal::ProviderRefused => "PROVIDER_REFUSED",
            Refusal::InvalidSku => "INVALID_SKU",
            Refusal::ReasonRequired => "REASON_REQUIRED",
            Refusal::NotAProjection => "NOT_A_PROJECTION",
            Refusal::StillFailing => "STILL_FAILING",
        }
    }
}

/// Why a use case could not be carried out; the cause is kept for the log.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No such object, or not one the requester may see (its existence does not leak).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request clashes with earlier state: concurrent writers kept winning, or an
    /// idempotency key was used with other input.
    #[error("{0}")]
    Conflict(String),
    /// NATS, PostgreSQL or the payment provider is out of reach for now; retrying (with
    /// the same idempotency key) is safe.
    #[error("a backing service is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Checkout is refused for now: the order saga is behind.
    #[error("checkout refused while the saga is behind; retry in {} ms", retry_after.as_millis())]
    Overloaded {
        /// A hint for when to retry.
        retry_after: Duration,
    },
    /// Something on our side failed: unreadable stored data, a broken query.
    #[error("internal failure: {0}")]
    Internal(#[source] BoxError),
}

impl AppError {
    /// An event-store failure: unavailable when NATS was out of reach, internal otherwise.
    pub fn store(error: StoreError) -> Self {
        match error {
            StoreError::Nats(_) => AppError::Unavailable(Box::new(error)),
            other => AppError::Internal(Box::new(other)),
        }
    }

    /// A database failure: unavailable when PostgreSQL could not be reached, internal
    /// otherwise.
    pub fn database(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            AppError::Unavailable(Box::new(error))
        } else {
            AppError::Internal(Box::new(error))
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        AppError::database(error)
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        AppError::store(error)
    }
}

/// Whether `error` says PostgreSQL is out of reach for now rather than that the query
/// is wrong: no connection (I/O, TLS, pool timed out or closed), or the server refusing
/// with SQLSTATE class 08 (connection exception), 57P01-57P03 (shutting down, starting
/// up) or 53300 (too many connections).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Sorts a command's result into a commit, a rejection on `field`, or an error.
///
/// # Errors
/// [`AppError::Conflict`] when other writers kept winning, [`AppError::Unavailable`]
/// when NATS was out of reach (the command may have been stored: retry with the same
/// idempotency key), [`AppError::Internal`] when stored data was unreadable.
pub fn committed<E>(
    result: Result<CommitOutcome, CommandError<E>>,
    field: &[&str],
) -> UseCaseResult<CommitOutcome>
where
    E: std::error::Error + ErrorCode + Send + Sync + 'static,
{
    match result {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(CommandError::Rejected(error)) => Ok(Err(Rejection::domain(field, &error))),
        Err(CommandError::Conflict { attempts }) => Err(AppError::Conflict(format!(
            "the object changed concurrently {attempts} times in a row; retry"
        ))),
        Err(error @ CommandError::Unavailable(_)) => Err(AppError::Unavailable(Box::new(error))),
        Err(error @ CommandError::Corrupt(_)) => Err(AppError::Internal(Box::new(error))),
    }
}

/// [`committed`] for product commands, whose SKUs are unique across the catalog.
///
/// # Errors
/// As [`committed`].
pub fn product_committed(
    result: Result<CommitOutcome, ProductCommandError>,
    field: &[&str],
) -> UseCaseResult<CommitOutcome> {
    match result {
        // The owner is not named: the caller learns the SKU is taken, nothing more.
        Err(ProductCommandError::SkuTaken(taken)) => Ok(Err(Rejection::on(
            field,
            taken.code(),
            format!("SKU {} belongs to another product", taken.sku),
        ))),
        Err(ProductCommandError::Command(error)) => committed(Err(error), field),
        Ok(outcome) => Ok(Ok(outcome)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_written_code() {
        let all = [
            (Refusal::EmptyCart, "EMPTY_CART"),
            (Refusal::UnknownSku, "UNKNOWN_SKU"),
            (Refusal::NotForSale, "NOT_FOR_SALE"),
            (Refusal::CurrencyMismatch, "CURRENCY_MISMATCH"),
            (Refusal::NoLines, "NO_LINES"),
            (Refusal::NotPaid, "NOT_PAID"),
            (Refusal::NotRefundable, "NOT_REFUNDABLE"),
            (Refusal::NothingToRefund, "NOTHING_TO_REFUND"),
            (Refusal::ProviderRefused, "PROVIDER_REFUSED"),
            (Refusal::InvalidSku, "INVALID_SKU"),
            (Refusal::ReasonRequired, "REASON_REQUIRED"),
            (Refusal::NotAProjection, "NOT_A_PROJECTION"),
            (Refusal::StillFailing, "STILL_FAILING"),
        ];
        for (refusal, code) in all {
            assert_eq!(refusal.code(), code, "{refusal:?}");
        }
    }

    #[test]
    fn database_errors_out_of_our_hands_are_unavailable_the_rest_internal() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(io),
        ] {
            assert!(matches!(
                AppError::database(error),
                AppError::Unavailable(_)
            ));
        }
        for error in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("total".into()),
        ] {
            assert!(matches!(AppError::database(error), AppError::Internal(_)));
        }
    }

    #[test]
    fn an_unreachable_event_store_is_unavailable_and_keeps_its_cause() {
        let error = AppError::store(StoreError::nats("timed out"));
        assert!(matches!(error, AppError::Unavailable(_)));
        let cause = std::error::Error::source(&error).expect("the cause is kept");
        assert!(cause.to_string().contains("timed out"), "{cause}");
    }
}
