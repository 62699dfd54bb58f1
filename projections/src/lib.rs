//! Read models in PostgreSQL, built from the JetStream log.
//!
//! For now this crate owns the schema migrations (`migrations/`, applied by
//! `shopstream migrate` and at start-up); the projectors that fill the read models
//! build on the checkpoint table created here.

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::{PgPool, Postgres};

/// The read-model schema, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Creates the database named in `database_url` if it does not exist yet.
///
/// # Errors
/// When PostgreSQL is unreachable or refuses to create it.
pub async fn ensure_database(database_url: &str) -> Result<(), sqlx::Error> {
    if !Postgres::database_exists(database_url).await? {
        Postgres::create_database(database_url).await?;
    }
    Ok(())
}

/// Applies every pending migration; safe to run concurrently from several replicas
/// (sqlx takes an advisory lock).
///
/// # Errors
/// When a migration fails or a previously applied one was changed.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
