//! What the API reads from the payments read model (the live `payments` schema).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::ids::{OrderId, PaymentId, RefundId};
use domain::money::Money;
use sqlx::PgPool;
use uuid::Uuid;

use super::{OperationKind, PaymentStatus};
use crate::orders::query::{decode_error, money};

/// One payment with its totals and operations.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PaymentView {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub status: PaymentStatus,
    /// `card`; `None` when declined (the provider's answer names no method).
    pub method: Option<String>,
    /// The provider's id for the authorisation.
    pub provider_reference: Option<String>,
    /// The provider's reason, when declined.
    pub decline_reason: Option<String>,
    /// The amount authorised, or asked for when declined.
    pub amount: Money,
    /// What the authorisation holds or held: `amount`, or zero when declined.
    pub authorised: Money,
    pub captured: Money,
    pub refunded: Money,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every operation, oldest first.
    pub operations: Vec<PaymentOperation>,
}

/// One thing the provider did with a payment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PaymentOperation {
    pub kind: OperationKind,
    /// `None` for a void, which moves no money.
    pub amount: Option<Money>,
    pub at: DateTime<Utc>,
    /// The decline or refund reason.
    pub reason: Option<String>,
    /// The provider's id, for an authorisation.
    pub provider_reference: Option<String>,
    pub refund_id: Option<RefundId>,
    /// The payment's version after the operation.
    pub sequence: i64,
}

/// The payments of one order summed up, in one currency.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrderPaymentTotals {
    pub order_id: OrderId,
    /// How many payments (attempts included) the order had.
    pub payments: i64,
    /// Authorisations standing or used: payments neither declined nor voided.
    pub authorised: Money,
    pub captured: Money,
    pub refunded: Money,
}

#[derive(sqlx::FromRow)]
struct PaymentRecord {
    payment_id: Uuid,
    order_id: Uuid,
    status: String,
    currency: String,
    amount_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    method: Option<String>,
    provider_reference: Option<String>,
    decline_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OperationRecord {
    payment_id: Uuid,
    sequence: i64,
    kind: String,
    amount_minor: Option<i64>,
    currency: String,
    occurred_at: DateTime<Utc>,
    reason: Option<String>,
    provider_reference: Option<String>,
    refund_id: Option<Uuid>,
}

const PAYMENT_COLUMNS: &str = "payment_id, order_id, status, currency, amount_minor, \
    captured_minor, refunded_minor, method, provider_reference, decline_reason, created_at, \
    updated_at";

/// One payment with its operations; `None` when the read model does not know it.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn payment(pool: &PgPool, id: PaymentId) -> Result<Option<PaymentView>, sqlx::Error> {
    let records: Vec<PaymentRecord> = sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments.payments WHERE payment_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await?;
    Ok(with_operations(pool, records).await?.pop())
}

/// The payments of an order (attempts included), oldest first, with their operations.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn payments_for_order(
    pool: &PgPool,
    order_id: OrderId,
) -> Result<Vec<PaymentView>, sqlx::Error> {
    let records: Vec<PaymentRecord> = sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments.payments WHERE order_id = $1 \
         ORDER BY created_at, payment_id"
    ))
    .bind(order_id.as_uuid())
    .fetch_all(pool)
    .await?;
    with_operations(pool, records).await
}

/// The payments of each of `order_ids` (attempts included), oldest first, with their
/// operations, in two queries whatever the number of orders: the loader behind the
/// payments of a page of orders. An order without a payment has no entry.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn payments_for_orders(
    pool: &PgPool,
    order_ids: &[OrderId],
) -> Result<HashMap<OrderId, Vec<PaymentView>>, sqlx::Error> {
    let ids: Vec<Uuid> = order_ids.iter().map(|id| id.as_uuid()).collect();
    let records: Vec<PaymentRecord> = sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments.payments WHERE order_id = ANY($1) \
         ORDER BY order_id, created_at, payment_id"
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut payments: HashMap<OrderId, Vec<PaymentView>> = HashMap::new();
    for view in with_operations(pool, records).await? {
        payments.entry(view.order_id).or_default().push(view);
    }
    Ok(payments)
}

/// The totals of an order's payments, one entry per currency (normally exactly one; none
/// when the order has no payment).
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn order_payment_totals(
    pool: &PgPool,
    order_id: OrderId,
) -> Result<Vec<OrderPaymentTotals>, sqlx::Error> {
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT currency, count(*), \
             coalesce(sum(amount_minor) FILTER (WHERE status NOT IN ('declined', 'voided')), 0)::bigint, \
             sum(captured_minor)::bigint, sum(refunded_minor)::bigint \
         FROM payments.payments WHERE order_id = $1 GROUP BY currency ORDER BY currency",
    )
    .bind(order_id.as_uuid())
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(currency, payments, authorised, captured, refunded)| {
            Ok(OrderPaymentTotals {
                order_id,
                payments,
                authorised: money(authorised, &currency)?,
                captured: money(captured, &currency)?,
                refunded: money(refunded, &currency)?,
            })
        })
        .collect()
}

async fn with_operations(
    pool: &PgPool,
    records: Vec<PaymentRecord>,
) -> Result<Vec<PaymentView>, sqlx::Error> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.payment_id).collect();
    let operations: Vec<OperationRecord> = sqlx::query_as(
        "SELECT payment_id, sequence, kind, amount_minor, currency, occurred_at, reason, \
             provider_reference, refund_id \
         FROM payments.operations WHERE payment_id = ANY($1) ORDER BY payment_id, sequence",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_payment: HashMap<Uuid, Vec<PaymentOperation>> = HashMap::new();
    for operation in operations {
        by_payment
            .entry(operation.payment_id)
            .or_default()
            .push(PaymentOperation {
                kind: operation.kind.parse().map_err(decode_error)?,
                amount: operation
                    .amount_minor
                    .map(|amount| money(amount, &operation.currency))
                    .transpose()?,
                at: operation.occurred_at,
                reason: operation.reason,
                provider_reference: operation.provider_reference,
                refund_id: operation.refund_id.map(RefundId),
                sequence: operation.sequence,
            });
    }
    records
        .into_iter()
        .map(|record| {
            let status: PaymentStatus = record.status.parse().map_err(decode_error)?;
            let authorised = if status == PaymentStatus::Declined {
                0
            } else {
                record.amount_minor
            };
            Ok(PaymentView {
                id: PaymentId(record.payment_id),
                order_id: OrderId(record.order_id),
                status,
                method: record.method,
                provider_reference: record.provider_reference,
                decline_reason: record.decline_reason,
                amount: money(record.amount_minor, &record.currency)?,
                authorised: money(authorised, &record.currency)?,
                captured: money(record.captured_minor, &record.currency)?,
                refunded: money(record.refunded_minor, &record.currency)?,
                created_at: record.created_at,
                updated_at: record.updated_at,
                operations: by_payment.remove(&record.payment_id).unwrap_or_default(),
            })
        })
        .collect()
}
