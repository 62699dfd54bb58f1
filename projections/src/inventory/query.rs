//! Reads of the live inventory model, for the API.

use chrono::{DateTime, Utc};
use domain::OrderId;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::MovementKind;
use crate::page::{encode_cursor, Page, PageRequest, QueryError};

/// The stock of one SKU.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StockLevel {
    /// The SKU.
    pub sku: String,
    /// Units physically in stock, reserved or not.
    pub on_hand: i64,
    /// Units held for orders.
    pub reserved: i64,
    /// Units that can still be reserved: on hand minus reserved.
    pub available: i64,
    /// When stock last moved.
    pub last_movement_at: DateTime<Utc>,
}

/// One event in a SKU's stock history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Movement {
    /// The SKU.
    pub sku: String,
    /// What happened.
    pub kind: MovementKind,
    /// The event's quantity; for adjustments, the signed delta.
    pub quantity: i64,
    /// The signed change of units on hand.
    pub on_hand_change: i64,
    /// The signed change of units reserved.
    pub reserved_change: i64,
    /// The order, for reservations, releases and commits.
    pub order_id: Option<OrderId>,
    /// Where received units came from.
    pub reference: Option<String>,
    /// Why the count was adjusted or a reservation released.
    pub reason: Option<String>,
    /// When it happened (the commit's time).
    pub occurred_at: DateTime<Utc>,
    /// The position of the commit in the event stream.
    pub position: i64,
    /// The index of the event within its commit.
    pub event_index: i32,
}

const STOCK_LEVEL_COLUMNS: &str = "sku, on_hand, reserved, available, last_movement_at";

/// The stock of `sku`, or `None` when no stock was ever booked for it.
///
/// # Errors
/// [`QueryError::Database`] when PostgreSQL fails.
pub async fn stock_level(pool: &PgPool, sku: &str) -> Result<Option<StockLevel>, QueryError> {
    let row = sqlx::query(&format!(
        "SELECT {STOCK_LEVEL_COLUMNS} FROM inventory.stock_levels WHERE sku = $1"
    ))
    .bind(sku)
    .fetch_optional(pool)
    .await?;
    row.map(|row| stock_level_from(&row)).transpose()
}

/// The stock of each of `skus` that has any, ordered by SKU; SKUs without stock are left
/// out. One query for a whole page of variants.
///
/// # Errors
/// [`QueryError::Database`] when PostgreSQL fails.
pub async fn stock_levels(pool: &PgPool, skus: &[String]) -> Result<Vec<StockLevel>, QueryError> {
    let rows = sqlx::query(&format!(
        "SELECT {STOCK_LEVEL_COLUMNS} FROM inventory.stock_levels
         WHERE sku = ANY($1) ORDER BY sku"
    ))
    .bind(skus)
    .fetch_all(pool)
    .await?;
    rows.iter().map(stock_level_from).collect()
}

/// The movements of `sku`, newest first (by stream position, then index in the commit):
/// the page `page` asks for (at most 100), each movement with its cursor, with the
/// number of the SKU's movements.
///
/// # Errors
/// [`QueryError::PageTooLarge`] for a page above 100, [`QueryError::InvalidCursor`] for a
/// cursor this function did not issue, [`QueryError::Database`].
pub async fn movements(
    pool: &PgPool,
    sku: &str,
    page: PageRequest<'_>,
) -> Result<Page<Movement>, QueryError> {
    let scan = page.scan::<(i64, i32)>(true)?;
    let (cursor_position, cursor_index) = scan.cursor.unzip();
    // Both words come from `scan`, never from the caller.
    let (comparison, direction) = (scan.comparison(), scan.direction());
    let rows = sqlx::query(&format!(
        "SELECT sku, kind, quantity, on_hand_change, reserved_change, order_id, reference,
                reason, occurred_at, position, event_index
         FROM inventory.movements
         WHERE sku = $1
           AND ($2::bigint IS NULL OR (position, event_index) {comparison} ($2, $3::integer))
         ORDER BY position {direction}, event_index {direction}
         LIMIT $4"
    ))
    .bind(sku)
    .bind(cursor_position)
    .bind(cursor_index)
    .bind(scan.limit)
    .fetch_all(pool)
    .await?;
    let items = rows
        .iter()
        .map(movement_from)
        .collect::<Result<Vec<_>, _>>()?;
    let total_count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inventory.movements WHERE sku = $1")
            .bind(sku)
            .fetch_one(pool)
            .await?;
    Ok(Page::from_lookahead(items, page, Some(total_count), |m| {
        encode_cursor(&(m.position, m.event_index))
    }))
}

fn stock_level_from(row: &PgRow) -> Result<StockLevel, QueryError> {
    Ok(StockLevel {
        sku: row.try_get("sku")?,
        on_hand: row.try_get("on_hand")?,
        reserved: row.try_get("reserved")?,
        available: row.try_get("available")?,
        last_movement_at: row.try_get("last_movement_at")?,
    })
}

fn movement_from(row: &PgRow) -> Result<Movement, QueryError> {
    let kind: String = row.try_get("kind")?;
    let kind = MovementKind::parse(&kind).ok_or_else(|| {
        QueryError::Database(sqlx::Error::Decode(
            format!("unknown movement kind `{kind}`").into(),
        ))
    })?;
    Ok(Movement {
        sku: row.try_get("sku")?,
        kind,
        quantity: row.try_get("quantity")?,
        on_hand_change: row.try_get("on_hand_change")?,
        reserved_change: row.try_get("reserved_change")?,
        order_id: row.try_get::<Option<Uuid>, _>("order_id")?.map(OrderId),
        reference: row.try_get("reference")?,
        reason: row.try_get("reason")?,
        occurred_at: row.try_get("occurred_at")?,
        position: row.try_get("position")?,
        event_index: row.try_get("event_index")?,
    })
}
