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
    /// An event does not serialise (its `Serialize` is broken); nothing was appended.
    #[error("an event does not serialise: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The cause of a failure, kept for the operator's log (never shown to a client).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and every cause under it, one line for the operator's log:
/// `tracing::warn!(error = %ErrorChain(&error), ...)`.
///
/// Our errors say what failed and keep the cause both in their message and as
/// [`std::error::Error::source`], and so do many of our dependencies' errors; a cause whose
/// message is already part of the line is therefore not repeated, but the walk goes on
/// below it, so a cause that only `source` holds (an I/O error under a driver's error,
/// say) still reaches the log.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

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
            StoreError::Metadata(_) | StoreError::Encode(_) => {
                AggregateError::UnexpectedError(Box::new(self))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver error that names what failed but keeps the I/O error under it only as
    /// its source, as sqlx and async-nats errors often do.
    #[derive(Debug, thiserror::Error)]
    #[error("connection lost")]
    struct Driver(#[source] std::io::Error);

    fn refused() -> StoreError {
        StoreError::nats(Driver(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused by 127.0.0.1:4222",
        )))
    }

    #[test]
    fn a_store_error_keeps_its_cause_as_its_source() {
        let error = refused();
        let cause = std::error::Error::source(&error).expect("a cause");
        assert!(cause.downcast_ref::<Driver>().is_some(), "{cause:?}");
    }

    #[test]
    fn the_chain_reaches_a_cause_only_the_source_holds_and_says_each_message_once() {
        assert_eq!(
            ErrorChain(&refused()).to_string(),
            "nats: connection lost: refused by 127.0.0.1:4222"
        );
    }
}
