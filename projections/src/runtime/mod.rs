//! The projector runtime: durable consumer, transaction, position, retries, parking,
//! rebuilds.

mod failure;
mod projector;
pub mod rebuild;
pub mod replay;
mod sink;
pub mod verify;
pub(crate) mod sink_conversions {
    pub(crate) use super::sink::to_u64;
}

pub use failure::{fingerprint, is_transient, is_transient_sql};
pub use projector::{consumer_filter, Projector, ProjectorConfig};
pub use rebuild::{rebuild, RebuildError, RebuildOptions, RebuildProgress, RebuildReport};
pub use sink::{AggregateKey, BatchError, BatchOutcome, Incoming, RetryPolicy, Sink, Target, Term};
pub use verify::{verify, RowDifference, VerifyReport};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// A pool of its own for one projection's writer, on the same database as `pool`.
///
/// Projections name their tables unqualified and sqlx caches prepared statements per
/// connection by SQL text: two projections sharing a connection can send the same text
/// (`SELECT * FROM orders WHERE ...`) meaning tables of different shapes in different
/// schemas, and PostgreSQL then refuses the cached statement ("cached plan must not
/// change result type"). A private pool per writer keeps each statement text bound to
/// one projection.
pub fn private_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with((*pool.connect_options()).clone())
}

use crate::projection::{ApplyError, Delivery, Projection};

/// Points `search_path` of the current transaction at `schema`, so that a projection's
/// unqualified table names resolve to the live tables or to the ones being rebuilt.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn set_schema(conn: &mut sqlx::PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(format!("\"{schema}\""))
        .execute(conn)
        .await?;
    Ok(())
}

/// Applies `batch` to the live schema of `projection` in one transaction, without
/// touching positions: for tests of a read model's SQL and for tools.
///
/// # Errors
/// What `apply` returns, or a database error.
pub async fn apply_directly(
    pool: &PgPool,
    projection: &dyn Projection,
    batch: &[Delivery<'_>],
) -> Result<(), ApplyError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    set_schema(&mut tx, projection.schema()).await?;
    projection.apply(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(())
}
