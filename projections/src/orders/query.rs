//! What the API reads from the orders read model (the live `orders` schema).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use domain::ids::{CustomerId, OrderId, PaymentId};
use domain::money::{Currency, Money};
use domain::order::OrderStatus;
use domain::order::ShippingAddress;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{parse_order_status, PaymentState};
use crate::page::{encode_cursor, Page, PageRequest, QueryError};

/// An order as listed: who, how much, where it stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrderSummary {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub status: OrderStatus,
    pub payment_state: PaymentState,
    pub total: Money,
    /// How many lines the order has.
    pub line_count: i32,
    /// How many units over all lines.
    pub item_count: i64,
    pub placed_at: DateTime<Utc>,
    /// When the last event about the order (or its payment) was written.
    pub updated_at: DateTime<Utc>,
}

impl OrderSummary {
    /// The opaque cursor of this order in a newest-first list (the cursor of its edge).
    pub fn cursor(&self) -> String {
        encode_cursor(&(self.placed_at, self.id.as_uuid()))
    }
}

/// One line of an order, as placed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrderLineView {
    /// The SKU; the catalog has the product's name.
    pub sku: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

/// Where the parcel went.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Shipping {
    pub carrier: String,
    pub tracking: String,
    pub shipped_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Why and by whom an order was cancelled.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cancellation {
    pub reason: String,
    /// `customer`, `system` or `admin`.
    pub by: String,
    pub cancelled_at: DateTime<Utc>,
}

/// The money given back for an order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Refund {
    pub amount: Money,
    pub reason: String,
    pub refunded_at: DateTime<Utc>,
}

/// One status transition of an order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusChange {
    pub status: OrderStatus,
    pub at: DateTime<Utc>,
    /// The reason given, for a cancellation or a refund.
    pub reason: Option<String>,
    /// The stream position of the commit that made the change.
    pub position: i64,
}

/// Everything the read model knows about one order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrderDetail {
    pub summary: OrderSummary,
    pub subtotal: Money,
    /// The payment that last changed the payment state.
    pub payment_id: Option<PaymentId>,
    pub lines: Vec<OrderLineView>,
    pub shipping: Option<Shipping>,
    pub cancellation: Option<Cancellation>,
    pub refund: Option<Refund>,
    /// Every status the order went through, oldest first.
    pub timeline: Vec<StatusChange>,
    /// Where it goes; `None` for orders placed before addresses were recorded.
    pub shipping_address: Option<ShippingAddress>,
}

/// Which orders to list; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<CustomerId>,
    /// Orders placed at or after this time.
    pub placed_after: Option<DateTime<Utc>>,
    /// Orders placed strictly before this time.
    pub placed_before: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct SummaryRecord {
    order_id: Uuid,
    customer_id: Uuid,
    status: String,
    payment_state: String,
    currency: String,
    total_minor: i64,
    line_count: i32,
    item_count: i64,
    placed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const SUMMARY_COLUMNS: &str = "order_id, customer_id, status, payment_state, currency, \
    total_minor, line_count, item_count, placed_at, updated_at";

impl TryFrom<SummaryRecord> for OrderSummary {
    type Error = sqlx::Error;

    fn try_from(record: SummaryRecord) -> Result<Self, Self::Error> {
        Ok(OrderSummary {
            id: OrderId(record.order_id),
            customer_id: CustomerId(record.customer_id),
            status: parse_order_status(&record.status).map_err(decode_error)?,
            payment_state: record.payment_state.parse().map_err(decode_error)?,
            total: money(record.total_minor, &record.currency)?,
            line_count: record.line_count,
            item_count: record.item_count,
            placed_at: record.placed_at,
            updated_at: record.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DetailRecord {
    #[sqlx(flatten)]
    summary: SummaryRecord,
    subtotal_minor: i64,
    payment_id: Option<Uuid>,
    carrier: Option<String>,
    tracking: Option<String>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    cancellation_reason: Option<String>,
    cancelled_by: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
    refunded_minor: Option<i64>,
    refund_reason: Option<String>,
    refunded_at: Option<DateTime<Utc>>,
    shipping_address: Option<serde_json::Value>,
}

/// A line as stored: SKU, quantity, unit price, line total (minor units), currency.
type LineColumns = (String, i64, i64, i64, String);
/// A timeline entry as stored: status, when, reason, position.
type TimelineColumns = (String, DateTime<Utc>, Option<String>, i64);

/// An order row with its lines and timeline, as one statement returns them.
#[derive(sqlx::FromRow)]
struct DetailWithChildren {
    #[sqlx(flatten)]
    record: DetailRecord,
    lines: Json<Vec<LineColumns>>,
    timeline: Json<Vec<TimelineColumns>>,
}

/// An order row with its lines and timeline aggregated as JSON, to be filtered, from the
/// tables of `schema` (the live `orders`, or a scratch copy: see [`super::as_of`]).
fn detail_select(schema: &str) -> String {
    format!(
        "SELECT o.*,
    (SELECT coalesce(json_agg(json_build_array(l.sku, l.quantity, l.unit_price_minor,
                l.line_total_minor, l.currency) ORDER BY l.line_no), '[]'::json)
       FROM \"{schema}\".order_lines l WHERE l.order_id = o.order_id) AS lines,
    (SELECT coalesce(json_agg(json_build_array(t.status, t.occurred_at, t.reason,
                t.position) ORDER BY t.position, t.event_index), '[]'::json)
       FROM \"{schema}\".status_timeline t WHERE t.order_id = o.order_id) AS timeline
 FROM \"{schema}\".orders o"
    )
}

/// [`detail_select`] of the live schema.
static DETAIL_SELECT: LazyLock<String> = LazyLock::new(|| detail_select("orders"));

/// One order with its lines and timeline from the tables of `schema`, on `conn` (inside
/// whatever transaction it holds).
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub(crate) async fn order_in(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    id: OrderId,
) -> Result<Option<OrderDetail>, sqlx::Error> {
    let found: Option<DetailWithChildren> =
        sqlx::query_as(&format!("{} WHERE o.order_id = $1", detail_select(schema)))
            .bind(id.as_uuid())
            .fetch_optional(conn)
            .await?;
    found.map(detail_from).transpose()
}

/// One order with its lines and timeline; `None` when the read model does not know it.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn order(pool: &PgPool, id: OrderId) -> Result<Option<OrderDetail>, sqlx::Error> {
    // One statement (lines and timeline aggregated as JSON): a single round trip, which
    // is most of the cost of reading one order.
    let found: Option<DetailWithChildren> =
        sqlx::query_as(&format!("{} WHERE o.order_id = $1", *DETAIL_SELECT))
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?;
    found.map(detail_from).transpose()
}

/// Each of `ids` with its lines and timeline, in one statement whatever their number:
/// the loader behind the detail fields of a page of orders. An order the read model
/// does not know has no entry.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn details_by_ids(
    pool: &PgPool,
    ids: &[OrderId],
) -> Result<HashMap<OrderId, OrderDetail>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let found: Vec<DetailWithChildren> =
        sqlx::query_as(&format!("{} WHERE o.order_id = ANY($1)", *DETAIL_SELECT))
            .bind(&ids)
            .fetch_all(pool)
            .await?;
    found
        .into_iter()
        .map(|found| detail_from(found).map(|detail| (detail.summary.id, detail)))
        .collect()
}

/// An order's detail from its row, lines and timeline.
fn detail_from(found: DetailWithChildren) -> Result<OrderDetail, sqlx::Error> {
    let DetailWithChildren {
        record,
        lines: Json(lines),
        timeline: Json(timeline),
    } = found;
    let currency = record.summary.currency.clone();
    let shipping = match (record.carrier, record.tracking, record.shipped_at) {
        (Some(carrier), Some(tracking), Some(shipped_at)) => Some(Shipping {
            carrier,
            tracking,
            shipped_at,
            delivered_at: record.delivered_at,
        }),
        _ => None,
    };
    let cancellation = match (
        record.cancellation_reason,
        record.cancelled_by,
        record.cancelled_at,
    ) {
        (Some(reason), Some(by), Some(cancelled_at)) => Some(Cancellation {
            reason,
            by,
            cancelled_at,
        }),
        _ => None,
    };
    let refund = match (
        record.refunded_minor,
        record.refund_reason,
        record.refunded_at,
    ) {
        (Some(amount), Some(reason), Some(refunded_at)) => Some(Refund {
            amount: money(amount, &currency)?,
            reason,
            refunded_at,
        }),
        _ => None,
    };
    Ok(OrderDetail {
        subtotal: money(record.subtotal_minor, &currency)?,
        summary: record.summary.try_into()?,
        payment_id: record.payment_id.map(PaymentId),
        lines: lines
            .into_iter()
            .map(|(sku, quantity, unit_price, line_total, currency)| {
                line_view(sku, quantity, unit_price, line_total, &currency)
            })
            .collect::<Result<_, sqlx::Error>>()?,
        shipping,
        cancellation,
        refund,
        shipping_address: record
            .shipping_address
            .map(serde_json::from_value)
            .transpose()
            .map_err(decode_error)?,
        timeline: timeline
            .into_iter()
            .map(|(status, at, reason, position)| status_change(&status, at, reason, position))
            .collect::<Result<_, sqlx::Error>>()?,
    })
}

/// A customer's orders, newest first (by `placed_at`, then id): the page `page` asks for,
/// each order with its cursor, with the number of the customer's orders.
///
/// # Errors
/// [`QueryError::InvalidCursor`], [`QueryError::PageTooLarge`], or a database error.
pub async fn customer_orders(
    pool: &PgPool,
    customer_id: CustomerId,
    page: PageRequest<'_>,
) -> Result<Page<OrderSummary>, QueryError> {
    let filter = OrderFilter {
        customer_id: Some(customer_id),
        ..OrderFilter::default()
    };
    list(pool, &filter, page).await
}

/// The orders matching `filter`, newest first (by `placed_at`, then id): the page `page`
/// asks for, each order with its cursor, with the number of matching orders.
///
/// # Errors
/// [`QueryError::InvalidCursor`], [`QueryError::PageTooLarge`], or a database error.
pub async fn orders(
    pool: &PgPool,
    filter: &OrderFilter,
    page: PageRequest<'_>,
) -> Result<Page<OrderSummary>, QueryError> {
    list(pool, filter, page).await
}

async fn list(
    pool: &PgPool,
    filter: &OrderFilter,
    page: PageRequest<'_>,
) -> Result<Page<OrderSummary>, QueryError> {
    let scan = page.scan::<(DateTime<Utc>, Uuid)>(true)?;

    let mut query = QueryBuilder::<Postgres>::new(format!(
        "SELECT {SUMMARY_COLUMNS} FROM orders.orders WHERE true"
    ));
    push_filter(&mut query, filter);
    if let Some((placed_at, order_id)) = scan.cursor {
        query
            .push(format!(
                " AND (placed_at, order_id) {} (",
                scan.comparison()
            ))
            .push_bind(placed_at)
            .push(", ")
            .push_bind(order_id)
            .push(")");
    }
    let direction = scan.direction();
    query
        .push(format!(
            " ORDER BY placed_at {direction}, order_id {direction} LIMIT "
        ))
        .push_bind(scan.limit);
    let records: Vec<SummaryRecord> = query.build_query_as().fetch_all(pool).await?;
    let items = records
        .into_iter()
        .map(OrderSummary::try_from)
        .collect::<Result<Vec<_>, _>>()?;

    let mut query = QueryBuilder::<Postgres>::new("SELECT count(*) FROM orders.orders WHERE true");
    push_filter(&mut query, filter);
    let (total,): (i64,) = query.build_query_as().fetch_one(pool).await?;
    let total_count = Some(total);
    Ok(Page::from_lookahead(
        items,
        page,
        total_count,
        OrderSummary::cursor,
    ))
}

/// The orders of `ids` that the read model knows, by id, in one query: the loader behind
/// a page of items that each name an order.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn orders_by_ids(
    pool: &PgPool,
    ids: &[OrderId],
) -> Result<HashMap<OrderId, OrderSummary>, sqlx::Error> {
    let records: Vec<SummaryRecord> = sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM orders.orders WHERE order_id = ANY($1)"
    ))
    .bind(uuids(ids))
    .fetch_all(pool)
    .await?;
    records
        .into_iter()
        .map(|record| {
            let summary = OrderSummary::try_from(record)?;
            Ok((summary.id, summary))
        })
        .collect()
}

/// The lines of each of `ids`, as placed (in line order), in one query: the loader behind
/// the lines of a page of orders. An order the read model does not know has no entry.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn lines_for_orders(
    pool: &PgPool,
    ids: &[OrderId],
) -> Result<HashMap<OrderId, Vec<OrderLineView>>, sqlx::Error> {
    let rows: Vec<(Uuid, String, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT order_id, sku, quantity, unit_price_minor, line_total_minor, currency \
         FROM orders.order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no",
    )
    .bind(uuids(ids))
    .fetch_all(pool)
    .await?;
    let mut lines: HashMap<OrderId, Vec<OrderLineView>> = HashMap::new();
    for (order_id, sku, quantity, unit_price, line_total, currency) in rows {
        let line = line_view(sku, quantity, unit_price, line_total, &currency)?;
        lines.entry(OrderId(order_id)).or_default().push(line);
    }
    Ok(lines)
}

/// The status transitions of each of `ids`, oldest first, in one query: the loader behind
/// the timelines of a page of orders. An order the read model does not know has no
/// entry.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn timelines_for_orders(
    pool: &PgPool,
    ids: &[OrderId],
) -> Result<HashMap<OrderId, Vec<StatusChange>>, sqlx::Error> {
    let records: Vec<TimelineRecord> = sqlx::query_as(
        "SELECT order_id, status, occurred_at, reason, position FROM orders.status_timeline \
         WHERE order_id = ANY($1) ORDER BY order_id, position, event_index",
    )
    .bind(uuids(ids))
    .fetch_all(pool)
    .await?;
    let mut timelines: HashMap<OrderId, Vec<StatusChange>> = HashMap::new();
    for record in records {
        let change = status_change(
            &record.status,
            record.occurred_at,
            record.reason,
            record.position,
        )?;
        timelines
            .entry(OrderId(record.order_id))
            .or_default()
            .push(change);
    }
    Ok(timelines)
}

#[derive(sqlx::FromRow)]
struct TimelineRecord {
    order_id: Uuid,
    status: String,
    occurred_at: DateTime<Utc>,
    reason: Option<String>,
    position: i64,
}

fn uuids(ids: &[OrderId]) -> Vec<Uuid> {
    ids.iter().map(|id| id.as_uuid()).collect()
}

fn line_view(
    sku: String,
    quantity: i64,
    unit_price: i64,
    line_total: i64,
    currency: &str,
) -> Result<OrderLineView, sqlx::Error> {
    Ok(OrderLineView {
        sku,
        quantity,
        unit_price: money(unit_price, currency)?,
        line_total: money(line_total, currency)?,
    })
}

fn status_change(
    status: &str,
    at: DateTime<Utc>,
    reason: Option<String>,
    position: i64,
) -> Result<StatusChange, sqlx::Error> {
    Ok(StatusChange {
        status: parse_order_status(status).map_err(decode_error)?,
        at,
        reason,
        position,
    })
}

fn push_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &OrderFilter) {
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(customer_id) = filter.customer_id {
        query
            .push(" AND customer_id = ")
            .push_bind(customer_id.as_uuid());
    }
    if let Some(placed_after) = filter.placed_after {
        query.push(" AND placed_at >= ").push_bind(placed_after);
    }
    if let Some(placed_before) = filter.placed_before {
        query.push(" AND placed_at < ").push_bind(placed_before);
    }
}

/// Money from its columns.
///
/// # Errors
/// A decode error when the stored currency is not an ISO code.
pub(crate) fn money(amount_minor: i64, currency: &str) -> Result<Money, sqlx::Error> {
    let currency = Currency::from_str(currency).map_err(decode_error)?;
    Ok(Money::new(amount_minor, currency))
}

/// A stored value this code cannot read, as a decode error.
pub(crate) fn decode_error(error: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(error))
}
