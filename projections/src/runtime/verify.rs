//! Checking a read model against the log: recompute it beside the live tables and
//! compare them row by row.
//!
//! 1. Clone the structure of every table of the live schema into `<schema>__verify`
//!    and replay the log into it (mode [`DeliveryMode::Rebuild`](crate::DeliveryMode),
//!    its own position row `<name>#verify`), exactly as a rebuild does.
//! 2. Hold the live position row (the live projector waits) and apply up to exactly the
//!    live position, so both sides describe the same position.
//! 3. In that transaction, compare every table with `EXCEPT` both ways on every column
//!    but the ones filled in by `now()` (they record when a row was written, not what
//!    the log says), then release the row.
//!
//! The scratch schema, its position row and any commit it parked are dropped or
//! resolved afterwards, on success and on error alike; the live tables are only read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};

use super::rebuild::{quoted, replay_to_live, Scratch};
use super::{RebuildError, RebuildOptions, RebuildProgress};
use crate::dead_letters;
use crate::projection::Projection;

/// The schema a verification of `schema` recomputes into.
pub fn verify_schema(schema: &str) -> String {
    format!("{schema}__verify")
}

/// The position row and dead-letter consumer of a verification of `name`.
pub fn verify_consumer(name: &str) -> String {
    format!("{name}#verify")
}

/// One row that differs between the live read model and the one recomputed from the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowDifference {
    pub table: String,
    /// The primary key columns (every compared column when the table has none).
    pub key: serde_json::Value,
    /// The live row, `None` when only the recomputed model has it.
    pub live: Option<serde_json::Value>,
    /// The recomputed row, `None` when only the live model has it.
    pub recomputed: Option<serde_json::Value>,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub projection: String,
    /// The live position both sides were compared at.
    pub position: u64,
    /// Commits replayed into the scratch schema.
    pub commits: u64,
    /// Commits the replay parked (they are missing from the recomputed side).
    pub parked: u64,
    pub tables: Vec<String>,
    /// Columns left out of the comparison, as `table.column`.
    pub ignored_columns: Vec<String>,
    pub differences: Vec<RowDifference>,
}

/// Recomputes `projection` from the log into `<schema>__verify` up to the live position
/// and reports every row that differs from the live tables.
///
/// # Errors
/// See [`RebuildError`] (`AlreadyRunning` when another verification of it runs). The
/// live tables are never written; the scratch schema is dropped in every case.
pub async fn verify(
    projection: Arc<dyn Projection>,
    pool: &PgPool,
    jetstream: &jetstream::Context,
    options: &RebuildOptions,
    mut progress: impl FnMut(&RebuildProgress),
) -> Result<VerifyReport, RebuildError> {
    let started = Instant::now();
    // Its own connections: see `private_pool`.
    let pool = &super::private_pool(pool, 3);
    let name = projection.name();
    let scratch = Scratch {
        schema: verify_schema(projection.schema()),
        consumer: verify_consumer(name),
    };
    let mut guard = pool.acquire().await?.detach();
    let lock = format!("shopstream.verify.{name}");
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(&lock)
        .fetch_one(&mut guard)
        .await?;
    if !locked {
        return Err(RebuildError::AlreadyRunning(name.to_owned()));
    }
    let result = compare(
        &projection,
        pool,
        jetstream,
        options,
        &scratch,
        started,
        &mut progress,
    )
    .await;
    // Always: drop the scratch copy and forget its position and parked commits.
    let cleaned = clean_up(&mut guard, &scratch).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(&lock)
        .execute(&mut guard)
        .await
        .ok();
    guard.close().await.ok();
    let report = result?;
    cleaned?;
    Ok(report)
}

async fn compare(
    projection: &Arc<dyn Projection>,
    pool: &PgPool,
    jetstream: &jetstream::Context,
    options: &RebuildOptions,
    scratch: &Scratch,
    started: Instant,
    progress: &mut impl FnMut(&RebuildProgress),
) -> Result<VerifyReport, RebuildError> {
    let (mut tx, position, replayed) = replay_to_live(
        projection, pool, jetstream, options, scratch, started, progress,
    )
    .await?;
    let live = projection.schema();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
    )
    .bind(live)
    .fetch_all(&mut *tx)
    .await?;
    let mut report = VerifyReport {
        projection: projection.name().to_owned(),
        position,
        commits: replayed.commits,
        parked: replayed.parked,
        tables: tables.clone(),
        ignored_columns: Vec::new(),
        differences: Vec::new(),
    };
    for table in &tables {
        diff_table(&mut tx, live, &scratch.schema, table, &mut report).await?;
    }
    // Nothing was written in this transaction: ending it releases the live row.
    tx.rollback().await?;
    Ok(report)
}

/// Compares `live.table` with `scratch.table` and appends what differs to `report`.
async fn diff_table(
    conn: &mut PgConnection,
    live: &str,
    scratch: &str,
    table: &str,
    report: &mut VerifyReport,
) -> Result<(), RebuildError> {
    let columns: Vec<(String, bool)> = sqlx::query_as(
        "SELECT column_name::text,
                coalesce(column_default ILIKE '%now()%'
                         OR column_default ILIKE '%clock_timestamp()%', false)
           FROM information_schema.columns
          WHERE table_schema = $1 AND table_name = $2
          ORDER BY ordinal_position",
    )
    .bind(live)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    let compared: Vec<&str> = columns
        .iter()
        .filter(|(_, stamped)| !stamped)
        .map(|(column, _)| column.as_str())
        .collect();
    report.ignored_columns.extend(
        columns
            .iter()
            .filter(|(_, stamped)| *stamped)
            .map(|(column, _)| format!("{table}.{column}")),
    );
    let mut key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text
           FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
          WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass
            AND i.indisprimary
          ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(live)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    if key.is_empty() {
        key = compared.iter().map(|c| (*c).to_owned()).collect();
    }
    let list = compared
        .iter()
        .map(|c| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    let only_in = |left: &str, right: &str| {
        format!(
            "SELECT to_jsonb(d) FROM (SELECT {list} FROM {left}.{t} EXCEPT SELECT {list} FROM {right}.{t}) d",
            left = quoted(left),
            right = quoted(right),
            t = quoted(table),
        )
    };
    let live_only: Vec<serde_json::Value> = sqlx::query_scalar(&only_in(live, scratch))
        .fetch_all(&mut *conn)
        .await?;
    let recomputed_only: Vec<serde_json::Value> = sqlx::query_scalar(&only_in(scratch, live))
        .fetch_all(&mut *conn)
        .await?;
    let key_of = |row: &serde_json::Value| {
        let object: serde_json::Map<String, serde_json::Value> = key
            .iter()
            .map(|k| (k.clone(), row.get(k).cloned().unwrap_or_default()))
            .collect();
        serde_json::Value::Object(object)
    };
    // Pair the two sides by key: a changed row shows both versions on one line.
    let mut by_key: BTreeMap<String, RowDifference> = BTreeMap::new();
    for row in live_only {
        let key = key_of(&row);
        by_key
            .entry(key.to_string())
            .or_insert_with(|| RowDifference {
                table: table.to_owned(),
                key,
                live: None,
                recomputed: None,
            })
            .live = Some(row);
    }
    for row in recomputed_only {
        let key = key_of(&row);
        by_key
            .entry(key.to_string())
            .or_insert_with(|| RowDifference {
                table: table.to_owned(),
                key,
                live: None,
                recomputed: None,
            })
            .recomputed = Some(row);
    }
    report.differences.extend(by_key.into_values());
    Ok(())
}

/// Drops the scratch schema, deletes its position row and resolves what it parked.
async fn clean_up(conn: &mut PgConnection, scratch: &Scratch) -> Result<(), RebuildError> {
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quoted(&scratch.schema)
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM public.projector_positions WHERE projector = $1")
        .bind(&scratch.consumer)
        .execute(&mut *conn)
        .await?;
    dead_letters::store::supersede(conn, &scratch.consumer).await?;
    Ok(())
}
