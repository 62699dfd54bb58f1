//! Failures of the event store, mapped to cqrs-es's `AggregateError` at the seam.

use cqrs_es::AggregateError;

/// Why an event-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another command committed to the aggregate first (server codes 10071 and 10164).
    #[error("aggregate {aggregate} was changed concurrently (expected last sequence {expected})")]
    Conflict { aggregate: String, expected: u64 },
    /// NATS could not be reached, timed out or refused the request.
    #[error("nats: {0}")]
    Nats(#[source] BoxError),
    /// A stored commit or snapshot could not be decoded.
    #[error("cannot decode {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: BoxError,
    },
    /// Command metadata was missing or malformed.
    #[error("bad command metadata: {0}")]
    Metadata(String),
}

/// The cause of a failure, kept for the operator's log (never shown to a client).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// A NATS failure, keeping its cause.
    pub fn nats(err: impl Into<BoxError>) -> Self {
        StoreError::Nats(err.into())
    }

    pub(crate) fn decode(what: impl Into<String>, reason: impl Into<BoxError>) -> Self {
        StoreError::Decode {
            what: what.into(),
            source: reason.into(),
        }
    }

    /// Converts into the cqrs-es error; a conflict becomes `AggregateConflict`.
    pub fn into_aggregate_error<E: std::error::Error>(self) -> AggregateError<E> {
        match self {
            StoreError::Conflict { .. } => AggregateError::AggregateConflict,
            StoreError::Nats(_) => AggregateError::DatabaseConnectionError(Box::new(self)),
            StoreError::Decode { .. } => AggregateError::DeserializationError(Box::new(self)),
            StoreError::Metadata(_) => AggregateError::UnexpectedError(Box::new(self)),
        }
    }
}
