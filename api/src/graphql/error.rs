//! Errors at the GraphQL edge: every top-level error carries `extensions.code`, and an
//! internal cause is logged here, never sent.

use async_graphql::ErrorExtensions;
use projections::page::QueryError;

/// A request the API cannot serve, as clients see it.
///
/// Deliberately not `Display`: async-graphql turns any `Display` error into a GraphQL
/// error without a code, so this type converts only through its own `From`, which sets
/// `extensions.code`.
#[derive(Debug)]
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
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }

    /// Bad input with a message for the developer.
    pub fn bad_input(message: impl Into<String>) -> Self {
        ApiError::BadUserInput {
            message: message.into(),
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
        async_graphql::Error::new(error.message()).extend_with(|_, extensions| {
            extensions.set("code", code);
            if let Some(position) = position {
                extensions.set("position", position.to_string());
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
            QueryError::Database(error) => ApiError::internal(error),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::internal(error)
    }
}

/// The result of a resolver.
pub type ApiResult<T> = Result<T, ApiError>;
