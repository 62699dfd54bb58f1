//! The GraphQL API: one schema merged from a module per area, served over HTTP
//! (`POST /graphql`, GraphiQL on `GET /graphql`) and WebSocket (`graphql-transport-ws`).
//!
//! Resolvers are thin: check the caller, parse, send a command or read a view. Every
//! top-level error carries `extensions.code`; internal causes are logged, not sent.

pub mod account;
pub mod analytics;
pub mod audit;
pub mod cart;
pub mod catalog;
pub mod context;
pub mod error;
mod http;
pub mod idempotency;
pub mod ids;
pub mod inventory;
pub mod loaders;
pub mod money;
pub mod operations;
pub mod orders;
pub mod outcome;
pub mod relay;
pub mod subscription;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{MergedObject, Schema};

pub use context::Services;
pub use http::{router, GraphqlConfig};

use crate::metrics::RootFieldMetrics;

/// Every query.
#[derive(MergedObject, Default)]
pub struct Query(
    catalog::CatalogQuery,
    inventory::InventoryQuery,
    cart::CartQuery,
    orders::OrderQuery,
    account::AccountQuery,
    analytics::AnalyticsQuery,
    audit::AuditQuery,
    operations::OperationsQuery,
);

/// Every mutation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    catalog::CatalogMutation,
    inventory::InventoryMutation,
    cart::CartMutation,
    orders::OrderMutation,
    operations::OperationsMutation,
);

/// The schema type.
pub type ShopSchema = Schema<Query, Mutation, subscription::SubscriptionRoot>;

/// Limits on what one request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    /// Deepest selection nesting.
    pub max_depth: usize,
    /// Most complexity points (a field is 1; a list field multiplies its children by
    /// its page size).
    pub max_complexity: usize,
    /// Whether clients may introspect the schema (off in production).
    pub introspection: bool,
    /// Whether errors suggest similar field names (off in production).
    pub suggestions: bool,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 2_500,
            introspection: true,
            suggestions: true,
        }
    }
}

/// The schema with its services and limits (async-graphql ships the limits off).
pub fn build_schema(services: Arc<Services>, limits: SchemaLimits) -> ShopSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        subscription::SubscriptionRoot,
    )
    .data(services)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(32)
    .limit_directives(8)
    .extension(RootFieldMetrics);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    if !limits.suggestions {
        builder = builder.disable_suggestions();
    }
    builder.finish()
}

/// The schema in SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        subscription::SubscriptionRoot,
    )
    .finish()
    .sdl()
}

/// How long a read waits for a read model to reach a requested position by default.
pub const DEFAULT_READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);
