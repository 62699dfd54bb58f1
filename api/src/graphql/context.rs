//! What every resolver can reach: the shared services, the caller, and the position the
//! caller asked to read after.

use std::sync::Arc;

use async_graphql::{Context, Scalar, ScalarType, Value};
use sqlx::PgPool;

use super::error::ApiError;
use crate::auth::{Accounts, Principal, Role};
use crate::consistency::{ReadModel, ReadModelPositions};

/// The shared handles behind the schema; one per process.
pub struct Services {
    /// The read models (with the API's statement timeout).
    pub db: PgPool,
    /// NATS, for subscriptions.
    pub jetstream: async_nats::jetstream::Context,
    /// Accounts and tokens.
    pub accounts: Accounts,
    /// The use cases, and the command side behind them.
    pub shop: Arc<application::Shop>,
    /// Where the read models are.
    pub positions: ReadModelPositions,
}

/// Who is asking: `None` for an anonymous request.
#[derive(Debug, Clone, Default)]
pub struct Viewer(pub Option<Principal>);

/// A stream position a read must reflect (`X-Min-Position`), if the caller sent one.
#[derive(Debug, Clone, Copy, Default)]
pub struct MinPosition(pub Option<u64>);

/// A position in the event log: a stream sequence, sent as a string because GraphQL's
/// `Int` has 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub u64);

/// A global position in the event log (the stream sequence a commit was stored at), as a
/// decimal string. Pass it back in the `X-Min-Position` header to read your own write.
#[Scalar(name = "Position")]
impl ScalarType for Position {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            Value::String(text) => text
                .parse()
                .map(Position)
                .map_err(|_| async_graphql::InputValueError::custom("not a position")),
            Value::Number(number) => number
                .as_u64()
                .map(Position)
                .ok_or_else(|| async_graphql::InputValueError::custom("not a position")),
            _ => Err(async_graphql::InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// Shortcuts for resolvers.
pub trait ContextExt {
    /// The shared services.
    fn services(&self) -> &Arc<Services>;
    /// The caller, if signed in.
    fn viewer(&self) -> Option<&Principal>;
    /// The caller, who must be signed in with one of `roles`.
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`] without a valid token, [`ApiError::Forbidden`] for
    /// another role.
    fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError>;
    /// The database, once `read_model` reflects the caller's `X-Min-Position` (if any).
    ///
    /// # Errors
    /// [`ApiError::ReadModelBehind`] when it does not within the bound.
    fn read(
        &self,
        read_model: ReadModel,
    ) -> impl std::future::Future<Output = Result<&PgPool, ApiError>> + Send;
}

impl ContextExt for Context<'_> {
    fn services(&self) -> &Arc<Services> {
        // The schema is always built with its services (see `build_schema`).
        self.data_unchecked::<Arc<Services>>()
    }

    fn viewer(&self) -> Option<&Principal> {
        self.data_opt::<Viewer>()
            .and_then(|viewer| viewer.0.as_ref())
    }

    fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        let principal = self.viewer().ok_or(ApiError::Unauthenticated)?;
        if roles.contains(&principal.role) {
            Ok(principal)
        } else {
            Err(ApiError::Forbidden)
        }
    }

    async fn read(&self, read_model: ReadModel) -> Result<&PgPool, ApiError> {
        let services = self.services();
        if let Some(position) = self.data_opt::<MinPosition>().and_then(|min| min.0) {
            services.positions.wait_for(read_model, position).await?;
        }
        Ok(&services.db)
    }
}
