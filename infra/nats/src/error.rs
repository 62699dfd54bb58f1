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
    Nats(String),
    /// A stored commit or snapshot could not be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },
    /// Command metadata was missing or malformed.
    #[error("bad command metadata: {0}")]
    Metadata(String),
}

impl StoreError {
    pub(crate) fn nats(err: impl std::fmt::Display) -> Self {
        StoreError::Nats(err.to_string())
    }

    pub(crate) fn decode(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        StoreError::Decode {
            what: what.into(),
            reason: reason.to_string(),
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
