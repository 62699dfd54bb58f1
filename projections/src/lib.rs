//! Read models in PostgreSQL, built from the JetStream log.
//!
//! - [`projection`]: the contract a read model implements.
//! - [`runtime`]: the projector that feeds a projection from its durable consumer,
//!   exactly once, with batching, retries and the sequenced dead-letter queue.
//! - One module per read model: [`catalog`], [`inventory`], [`orders`], [`payments`],
//!   [`sagas`], [`sales`], [`notifications`].
//! - [`page`]: keyset pagination shared by the query functions.
//! - `commits`: decoding commits and checking version continuity, shared by the
//!   orders, payments, sagas and sales models; `batch`: the batch checks of the catalog
//!   and inventory models.
//!
//! The schema migrations (`migrations/`) are applied by `shopstream migrate` and at
//! start-up.

mod batch;
pub mod catalog;
mod commits;
pub mod dead_letters;
pub mod fixtures;
pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod page;
pub mod payments;
pub mod projection;
pub mod registry;
pub mod runtime;
pub mod sagas;
pub mod sales;
pub mod status;

pub use projection::{ApplyError, Delivery, DeliveryMode, Projection};

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::{PgPool, Postgres};

/// The read-model schema, embedded in the binary.
///
/// Other crates' migrators (the api crate's, versions from 1001) share
/// `_sqlx_migrations` with this one, so it ignores applied versions it does not know
/// (`ignore_missing`) instead of refusing to run.
pub static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations")
};

/// Creates the database named in `database_url` if it does not exist yet; safe when
/// several processes do it at once.
///
/// # Errors
/// When PostgreSQL is unreachable or refuses to create it.
pub async fn ensure_database(database_url: &str) -> Result<(), sqlx::Error> {
    if Postgres::database_exists(database_url).await? {
        return Ok(());
    }
    match Postgres::create_database(database_url).await {
        Ok(()) => Ok(()),
        // Several roles starting at once race to create it; losing that race is fine.
        Err(error) if Postgres::database_exists(database_url).await? => {
            tracing::debug!(%error, "the database was created concurrently");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Applies every pending migration; safe to run concurrently from several replicas
/// (sqlx takes an advisory lock).
///
/// # Errors
/// When a migration fails or a previously applied one was changed.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
