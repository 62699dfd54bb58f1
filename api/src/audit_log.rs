//! The audit access log: who read which aggregate's history or state, when, and how.
//!
//! Every audit read records a row before it answers, from the CLI and from GraphQL
//! alike, in `audit.access_log` (migration `1003_audit_access_log.sql`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

/// One audit read to record.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// `user:<uuid>` or `system:<name>`.
    pub actor: &'a str,
    /// `verify`, `history`, `state` or `access`.
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    /// The read's arguments (bounds, limits, filters).
    pub arguments: Value,
}

/// One recorded audit read.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AccessRow {
    pub access_id: i64,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub arguments: Value,
    pub accessed_at: DateTime<Utc>,
}

/// Records one audit read.
///
/// # Errors
/// When PostgreSQL refuses the insert.
pub async fn record(pool: &PgPool, access: &Access<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit.access_log (actor, action, target_type, target_id, arguments) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(access.actor)
    .bind(access.action)
    .bind(access.target_type)
    .bind(access.target_id)
    .bind(&access.arguments)
    .execute(pool)
    .await?;
    Ok(())
}

/// The most recent audit reads, newest first.
///
/// # Errors
/// When PostgreSQL cannot be read.
pub async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<AccessRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT access_id, actor, action, target_type, target_id, arguments, accessed_at \
         FROM audit.access_log ORDER BY access_id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}
