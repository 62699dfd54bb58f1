//! The application layer: every use case of the shop has its home here.
//!
//! A use case takes typed input, loads what it decides on from the command side (never
//! from a read model), sends commands through the one [`CommandSide`] and returns a typed
//! outcome: what it did, a [`Rejection`] naming the rule the input broke, or an
//! [`AppError`] saying why it could not be carried out. The GraphQL resolvers, the CLI and
//! the roles call these functions; they parse, authorise and shape answers, and decide
//! nothing themselves.
//!
//! What it may depend on: `domain`, `infra-nats`, `projections` and `saga` (the engines).
//! What it may not: `api` or the binary (the edges), and no HTTP or GraphQL crate.

pub mod admission;
pub mod catalog;
pub mod commands;
pub mod error;
pub mod idempotency;
pub mod inventory;
pub mod operations;
pub mod orders;
pub mod payments;
pub mod storefront;
pub mod text;

use std::sync::Arc;

pub use admission::CheckoutAdmission;
pub use commands::CommandSide;
pub use error::{AppError, Refusal, Rejection, UseCaseResult};
pub use idempotency::{Idempotency, Operation};
pub use payments::{PaymentProvider, ProviderSettings};
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use storefront::{Carts, IdempotencyKeys};

/// The application crate's schema (`storefront`: carts and idempotency keys), embedded in
/// the binary.
///
/// It shares `_sqlx_migrations` with the other crates' migrators, so each ignores the
/// versions the others applied (`ignore_missing`).
pub static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations")
};

/// Applies every pending migration of the application crate; safe to run concurrently
/// from several replicas (sqlx takes an advisory lock).
///
/// # Errors
/// When a migration fails or a previously applied one was changed.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Everything the use cases act on; one per process, shared by every edge in it.
pub struct Shop {
    /// The command buses of every aggregate, and the SKU registry.
    pub commands: CommandSide,
    /// Where payments are taken and given back (one configuration per process).
    pub provider: Arc<dyn PaymentProvider>,
    /// Customers' carts.
    pub carts: Carts,
    /// Idempotency keys of the use cases that take one.
    pub idempotency: IdempotencyKeys,
    /// Whether checkouts are admitted (the saga's backlog).
    pub admission: CheckoutAdmission,
}
