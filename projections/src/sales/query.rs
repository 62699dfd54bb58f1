//! What the API reads from the sales read model (the live `sales` schema).

use chrono::NaiveDate;
use domain::money::Money;
use domain::order::OrderStatus;
use sqlx::PgPool;

use crate::orders::parse_order_status;
use crate::orders::query::{decode_error, money};

/// The sales of one UTC day in one currency.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DailySales {
    pub day: NaiveDate,
    pub orders_placed: i64,
    pub orders_confirmed: i64,
    pub orders_cancelled: i64,
    /// Units of the orders confirmed that day.
    pub units_sold: i64,
    /// The line totals of the orders confirmed that day.
    pub gross_revenue: Money,
    /// The refunds recorded that day.
    pub refunded: Money,
    /// `gross_revenue - refunded`; negative on a day with more refunds than sales.
    pub net_revenue: Money,
}

/// What one SKU sold over a period, in one currency.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopSeller {
    pub sku: String,
    pub units_sold: i64,
    /// Gross: refunds are whole-order amounts and are not attributed to lines.
    pub revenue: Money,
    /// How many confirmed orders had the SKU.
    pub orders: i64,
}

/// How many orders are in one status now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub orders: i64,
}

/// The share of the orders placed in a period that were cancelled.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CancellationRate {
    pub placed: i64,
    /// Of `placed`, how many were cancelled, whenever that happened.
    pub cancelled: i64,
    /// `cancelled / placed`; `None` when nothing was placed.
    pub rate: Option<f64>,
}

/// The sales of each day from `from` to `to`, both included, oldest first, then by
/// currency; days without any order activity are absent.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn daily_sales(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DailySales>, sqlx::Error> {
    type Row = (NaiveDate, String, i64, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT day, currency, orders_placed, orders_confirmed, orders_cancelled, units_sold, \
             gross_revenue_minor, refunded_minor, net_revenue_minor \
         FROM sales.daily WHERE day BETWEEN $1 AND $2 ORDER BY day, currency",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(
            |(day, currency, placed, confirmed, cancelled, units, gross, refunded, net)| {
                Ok(DailySales {
                    day,
                    orders_placed: placed,
                    orders_confirmed: confirmed,
                    orders_cancelled: cancelled,
                    units_sold: units,
                    gross_revenue: money(gross, &currency)?,
                    refunded: money(refunded, &currency)?,
                    net_revenue: money(net, &currency)?,
                })
            },
        )
        .collect()
}

/// The `limit` SKUs that sold the most units in orders confirmed from `from` to `to`
/// (both included): most units first, then most revenue, then by SKU.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn top_sellers(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
    limit: u32,
) -> Result<Vec<TopSeller>, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT sku, currency, sum(units_sold)::bigint AS units, \
             sum(revenue_minor)::bigint AS revenue, sum(orders)::bigint \
         FROM sales.daily_skus WHERE day BETWEEN $1 AND $2 \
         GROUP BY sku, currency ORDER BY units DESC, revenue DESC, sku, currency LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(sku, currency, units_sold, revenue, orders)| {
            Ok(TopSeller {
                sku,
                units_sold,
                revenue: money(revenue, &currency)?,
                orders,
            })
        })
        .collect()
}

/// How many orders are in each status now, in lifecycle order; statuses no order is in
/// are left out.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn status_counts(pool: &PgPool) -> Result<Vec<StatusCount>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, orders FROM sales.status_counts WHERE orders <> 0")
            .fetch_all(pool)
            .await?;
    let mut counts = rows
        .into_iter()
        .map(|(status, orders)| {
            Ok(StatusCount {
                status: parse_order_status(&status).map_err(decode_error)?,
                orders,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    counts.sort_by_key(|count| lifecycle_rank(count.status));
    Ok(counts)
}

/// Of the orders placed from `from` to `to` (UTC days, both included), how many were
/// cancelled.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn cancellation_rate(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<CancellationRate, sqlx::Error> {
    let (placed, cancelled): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(cancelled_on) FROM sales.orders \
         WHERE placed_on BETWEEN $1 AND $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    // Counts of orders are far below 2^53, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let rate = (placed > 0).then(|| cancelled as f64 / placed as f64);
    Ok(CancellationRate {
        placed,
        cancelled,
        rate,
    })
}

fn lifecycle_rank(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::Placed => 0,
        OrderStatus::StockReserved => 1,
        OrderStatus::PaymentAuthorised => 2,
        OrderStatus::Confirmed => 3,
        OrderStatus::Shipped => 4,
        OrderStatus::Delivered => 5,
        OrderStatus::Cancelled => 6,
        OrderStatus::Refunded => 7,
    }
}
