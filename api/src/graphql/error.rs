//! Errors at the GraphQL edge: every top-level error carries `extensions.code`, and an
//! internal cause is logged here, never sent.

use async_graphql::ErrorExtensions;
use infra_nats::ErrorChain;
use projections::page::QueryError;

/// A request the API cannot serve, as clients see it.
///
/// Deliberately not `Display`: async-graphql turns any `Display` error into a GraphQL
/// error without a code, so this type converts only through its own `From`, which sets
/// `extensions.code`.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No valid access token came with a request that needs one.
    Unauthenticated,
    /// The caller's role may not do this, or the object is someone else's.
    Forbidden,
    /// The input is malformed (an id that is not one of ours, a page too large).
    BadUserInput {
        /// What is wrong, for the developer.
        message: String,
    },
    /// No such object (or not one the caller may see, for customers).
    NotFound(&'static str),
    /// The request clashes with earlier state (an idempotency key reused with other input).
    Conflict(String),
    /// A read model did not reach the requested position within the wait.
    ReadModelBehind {
        /// The read model waited for.
        projection: &'static str,
        /// The position asked for.
        position: u64,
    },
    /// NATS or PostgreSQL could not be reached or gave up (a node restarting, a pool
    /// exhausted): nothing is wrong with the request, and retrying it later (a mutation
    /// with the same idempotency key) is safe. The cause is logged, not sent.
    Unavailable(String),
    /// Checkout is refused for now: the order saga is behind, and an order accepted now
    /// would outlive its steps' deadlines. Retry after `retry_after`.
    Overloaded {
        /// A hint for when to retry.
        retry_after: std::time::Duration,
    },
    /// Something on our side failed; the cause is logged under the request's trace.
    Internal(String),
}

impl ApiError {
    /// The `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::Forbidden => "FORBIDDEN",
            ApiError::BadUserInput { .. } => "BAD_USER_INPUT",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::ReadModelBehind { .. } => "READ_MODEL_BEHIND",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Overloaded { .. } => "OVERLOADED",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// The message clients see.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated => "authentication required".to_owned(),
            ApiError::Forbidden => "not allowed".to_owned(),
            ApiError::BadUserInput { message } | ApiError::Conflict(message) => message.clone(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::ReadModelBehind {
                projection,
                position,
            } => format!(
                "the {projection} read model has not reached position {position} yet; retry"
            ),
            ApiError::Unavailable(_) => {
                "a service shopstream depends on is unavailable; retry (a mutation with the same idempotency key)"
                    .to_owned()
            }
            ApiError::Overloaded { retry_after } => format!(
                "the shop is taking more orders than it can confirm; nothing was placed, retry in {} ms",
                retry_after.as_millis()
            ),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }

    /// Bad input with a message for the developer.
    pub fn bad_input(message: impl Into<String>) -> Self {
        ApiError::BadUserInput {
            message: message.into(),
        }
    }

    /// NATS or PostgreSQL unavailable: logs `cause` and hides it from the client.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        let cause = cause.to_string();
        tracing::warn!(%cause, "a backing service is unavailable answering a GraphQL request");
        ApiError::Unavailable(cause)
    }

    /// A database error: [`ApiError::Unavailable`] when PostgreSQL could not be reached,
    /// was shutting down or had no connection to spare; [`ApiError::Internal`] otherwise.
    pub fn database(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            ApiError::unavailable(chain(&error))
        } else {
            ApiError::internal(chain(&error))
        }
    }

    /// An event-store error: [`ApiError::Unavailable`] when NATS was out of reach,
    /// [`ApiError::Internal`] when stored data was unreadable.
    pub fn store(error: infra_nats::StoreError) -> Self {
        match error {
            infra_nats::StoreError::Nats(_) => ApiError::unavailable(chain(&error)),
            other => ApiError::internal(chain(&other)),
        }
    }

    /// An account-store failure that is no fault of the caller's: the database's as
    /// [`ApiError::database`], anything else internal.
    pub fn auth(error: crate::auth::AuthError) -> Self {
        match error {
            crate::auth::AuthError::Database(error) => ApiError::database(error),
            other => ApiError::internal(chain(&other)),
        }
    }

    /// An internal failure: logs `cause` and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let cause = cause.to_string();
        tracing::error!(%cause, "internal error answering a GraphQL request");
        ApiError::Internal(cause)
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        let code = error.code();
        let position = match &error {
            ApiError::ReadModelBehind { position, .. } => Some(*position),
            _ => None,
        };
        let retry_after_ms = match &error {
            ApiError::Overloaded { retry_after } => {
                Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX))
            }
            _ => None,
        };
        async_graphql::Error::new(error.message()).extend_with(|_, extensions| {
            extensions.set("code", code);
            if let Some(position) = position {
                extensions.set("position", position.to_string());
            }
            if let Some(retry_after_ms) = retry_after_ms {
                extensions.set("retryAfterMs", retry_after_ms);
            }
        })
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::InvalidCursor => ApiError::bad_input("invalid cursor"),
            QueryError::PageTooLarge(_) | QueryError::InvalidArgument(_) => {
                ApiError::bad_input(error.to_string())
            }
            QueryError::Database(error) => ApiError::database(error),
        }
    }
}

impl From<application::AppError> for ApiError {
    fn from(error: application::AppError) -> Self {
        use application::AppError;
        match error {
            AppError::NotFound(what) => ApiError::NotFound(what),
            AppError::Conflict(message) => ApiError::Conflict(message),
            AppError::Overloaded { retry_after } => ApiError::Overloaded { retry_after },
            error @ AppError::Unavailable(_) => ApiError::unavailable(chain(&error)),
            error @ AppError::Internal(_) => ApiError::internal(chain(&error)),
        }
    }
}

/// An error and every cause under it, for the log.
fn chain(error: &dyn std::error::Error) -> String {
    ErrorChain(error).to_string()
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::database(error)
    }
}

pub use application::error::is_unavailable;

/// The result of a resolver.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_out_of_our_hands_are_unavailable_the_rest_internal() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(io),
        ] {
            assert_eq!(ApiError::database(error).code(), "UNAVAILABLE");
        }
        for error in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("total".into()),
        ] {
            assert_eq!(ApiError::database(error).code(), "INTERNAL");
        }
    }

    #[test]
    fn an_unreachable_event_store_is_unavailable_unreadable_data_internal() {
        assert_eq!(
            ApiError::store(infra_nats::StoreError::Nats("timed out".into())).code(),
            "UNAVAILABLE"
        );
        assert_eq!(
            ApiError::store(infra_nats::StoreError::Decode {
                what: "commit".into(),
                source: "bad json".into()
            })
            .code(),
            "INTERNAL"
        );
        let message = ApiError::unavailable("nats: connection refused").message();
        assert!(!message.contains("nats"), "{message}");
    }
}
