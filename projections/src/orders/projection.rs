//! How commits of orders and payments change the orders read model.
//!
//! A batch is applied in three steps: load the rows of every order and payment it
//! touches (two statements), fold the commits over them in memory in stream order, and
//! write back what changed (at most four bulk statements).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::order::{Canceller, Order, OrderEvent, OrderStatus};
use domain::payment::{Payment, PaymentEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use super::PaymentState;
use crate::commits::{continuity, decode_commit, event_index, Continuity, Decoded};
use crate::projection::{ApplyError, Delivery, Projection};

/// Projects orders, their lines, status timeline and payment state into the `orders`
/// schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersProjection;

#[async_trait]
impl Projection for OrdersProjection {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn schema(&self) -> &'static str {
        "orders"
    }

    fn version(&self) -> i32 {
        // 2: orders record their shipping address.
        2
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Order::TYPE, Payment::TYPE]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        let commits = decode(batch)?;
        let mut model = Model::load(conn, &commits).await?;
        for commit in &commits {
            match commit {
                Commit::Order(commit) => model.apply_order(commit)?,
                Commit::Payment(commit) => model.apply_payment(commit)?,
            }
        }
        model.write(conn).await
    }
}

enum Commit<'a> {
    Order(Decoded<'a, OrderEvent>),
    Payment(Decoded<'a, PaymentEvent>),
}

fn decode<'a>(batch: &[Delivery<'a>]) -> Result<Vec<Commit<'a>>, ApplyError> {
    let order_upcasters = domain::order::upcasters();
    let payment_upcasters = domain::payment::upcasters();
    let mut commits = Vec::with_capacity(batch.len());
    for delivery in batch {
        match delivery.aggregate_type() {
            Order::TYPE => commits.push(Commit::Order(decode_commit::<Order>(
                delivery,
                &order_upcasters,
            )?)),
            Payment::TYPE => commits.push(Commit::Payment(decode_commit::<Payment>(
                delivery,
                &payment_upcasters,
            )?)),
            // Not a subject this projector subscribes to: nothing here depends on it.
            other => tracing::debug!(aggregate_type = other, "ignoring commit"),
        }
    }
    Ok(commits)
}

/// One row of `orders`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct OrderRow {
    order_id: Uuid,
    customer_id: Uuid,
    status: String,
    payment_state: String,
    payment_id: Option<Uuid>,
    currency: String,
    subtotal_minor: i64,
    total_minor: i64,
    line_count: i32,
    item_count: i64,
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
    placed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_sequence: i64,
    shipping_address: Option<serde_json::Value>,
}

impl OrderRow {
    /// Moves the payment state up to `state`, never down (see [`PaymentState`]).
    fn raise_payment_state(
        &mut self,
        state: PaymentState,
        payment_id: Uuid,
    ) -> Result<(), ApplyError> {
        let current: PaymentState = self.payment_state.parse().map_err(|e| {
            ApplyError::Inconsistent(format!("order {}: stored {e}", self.order_id))
        })?;
        if state >= current {
            self.payment_state = state.as_str().to_owned();
            self.payment_id = Some(payment_id);
        }
        Ok(())
    }
}

/// One row of `order_payments`.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
struct PaymentLink {
    payment_id: Uuid,
    order_id: Uuid,
    last_sequence: i64,
}

/// One row of `order_lines`.
struct LineRow {
    order_id: Uuid,
    line_no: i32,
    sku: String,
    quantity: i64,
    unit_price_minor: i64,
    line_total_minor: i64,
    currency: String,
}

/// One row of `status_timeline`.
struct TimelineRow {
    order_id: Uuid,
    position: i64,
    event_index: i32,
    status: &'static str,
    occurred_at: DateTime<Utc>,
    reason: Option<String>,
}

/// The rows a batch touches, folded in memory.
#[derive(Default)]
struct Model {
    orders: HashMap<Uuid, OrderRow>,
    changed_orders: HashSet<Uuid>,
    links: HashMap<Uuid, PaymentLink>,
    changed_links: HashSet<Uuid>,
    lines: Vec<LineRow>,
    timeline: Vec<TimelineRow>,
}

impl Model {
    /// Loads the orders and payment links the batch refers to.
    async fn load(conn: &mut PgConnection, commits: &[Commit<'_>]) -> Result<Self, ApplyError> {
        let mut order_ids = HashSet::new();
        let mut payment_ids = HashSet::new();
        for commit in commits {
            match commit {
                Commit::Order(commit) => {
                    order_ids.insert(commit.aggregate_id);
                }
                Commit::Payment(commit) => {
                    payment_ids.insert(commit.aggregate_id);
                    for event in &commit.events {
                        if let PaymentEvent::PaymentAuthorised { order_id, .. }
                        | PaymentEvent::PaymentDeclined { order_id, .. } = event
                        {
                            order_ids.insert(order_id.as_uuid());
                        }
                    }
                }
            }
        }
        let mut model = Model::default();
        if !payment_ids.is_empty() {
            let payment_ids: Vec<Uuid> = payment_ids.into_iter().collect();
            let links: Vec<PaymentLink> = sqlx::query_as(
                "SELECT payment_id, order_id, last_sequence FROM order_payments \
                 WHERE payment_id = ANY($1)",
            )
            .bind(&payment_ids)
            .fetch_all(&mut *conn)
            .await?;
            for link in links {
                order_ids.insert(link.order_id);
                model.links.insert(link.payment_id, link);
            }
        }
        if !order_ids.is_empty() {
            let order_ids: Vec<Uuid> = order_ids.into_iter().collect();
            let rows: Vec<OrderRow> =
                sqlx::query_as("SELECT * FROM orders WHERE order_id = ANY($1)")
                    .bind(&order_ids)
                    .fetch_all(&mut *conn)
                    .await?;
            model.orders = rows.into_iter().map(|row| (row.order_id, row)).collect();
        }
        Ok(model)
    }

    fn apply_order(&mut self, commit: &Decoded<'_, OrderEvent>) -> Result<(), ApplyError> {
        let order_id = commit.aggregate_id;
        let applied = self.orders.get(&order_id).map(|row| row.last_sequence);
        if continuity("order", applied, commit.envelope)? == Continuity::AlreadyApplied {
            return Ok(());
        }
        for (index, event) in commit.events.iter().enumerate() {
            if event_order_id(event) != order_id {
                return Err(ApplyError::Inconsistent(format!(
                    "an event of order {order_id} names order {}",
                    event_order_id(event)
                )));
            }
            let sequence = commit.sequence(index);
            let (status, occurred_at, reason) = match self.orders.get_mut(&order_id) {
                None => self.place(order_id, event, sequence)?,
                Some(row) => {
                    let at = commit.timestamp();
                    let (status, reason) = transition(row, event, at)?;
                    row.updated_at = at;
                    row.last_sequence = sequence;
                    (status, at, reason)
                }
            };
            self.timeline.push(TimelineRow {
                order_id,
                position: commit.position,
                event_index: event_index(index)?,
                status: status.as_str(),
                occurred_at,
                reason,
            });
        }
        self.changed_orders.insert(order_id);
        Ok(())
    }

    /// Records the first event of an order, which must be its `OrderPlaced`; returns the
    /// transition to `Placed`.
    fn place(
        &mut self,
        order_id: Uuid,
        event: &OrderEvent,
        sequence: i64,
    ) -> Result<(OrderStatus, DateTime<Utc>, Option<String>), ApplyError> {
        let OrderEvent::OrderPlaced {
            customer_id,
            lines,
            currency,
            subtotal,
            total,
            placed_at,
            shipping_address,
            ..
        } = event
        else {
            return Err(ApplyError::Inconsistent(format!(
                "order {order_id} was never placed, yet it has a {event:?}"
            )));
        };
        let mut item_count = 0_i64;
        for (line_no, line) in lines.iter().enumerate() {
            let line_total = line.line_total().map_err(|e| {
                ApplyError::Inconsistent(format!("order {order_id}, line {}: {e}", line.sku))
            })?;
            item_count += i64::from(line.quantity);
            self.lines.push(LineRow {
                order_id,
                line_no: event_index(line_no)?,
                sku: line.sku.as_str().to_owned(),
                quantity: i64::from(line.quantity),
                unit_price_minor: line.unit_price.amount_minor,
                line_total_minor: line_total.amount_minor,
                currency: line.unit_price.currency.code().to_owned(),
            });
        }
        self.orders.insert(
            order_id,
            OrderRow {
                order_id,
                customer_id: customer_id.as_uuid(),
                status: OrderStatus::Placed.as_str().to_owned(),
                payment_state: PaymentState::None.as_str().to_owned(),
                payment_id: None,
                currency: currency.code().to_owned(),
                subtotal_minor: subtotal.amount_minor,
                total_minor: total.amount_minor,
                line_count: event_index(lines.len())?,
                item_count,
                carrier: None,
                tracking: None,
                shipped_at: None,
                delivered_at: None,
                cancellation_reason: None,
                cancelled_by: None,
                cancelled_at: None,
                refunded_minor: None,
                refund_reason: None,
                refunded_at: None,
                placed_at: *placed_at,
                updated_at: *placed_at,
                last_sequence: sequence,
                shipping_address: shipping_address
                    .as_ref()
                    .map(serde_json::to_value)
                    .transpose()
                    .map_err(|e| ApplyError::Inconsistent(format!("order {order_id}: {e}")))?,
            },
        );
        Ok((OrderStatus::Placed, *placed_at, None))
    }

    fn apply_payment(&mut self, commit: &Decoded<'_, PaymentEvent>) -> Result<(), ApplyError> {
        let payment_id = commit.aggregate_id;
        let applied = self.links.get(&payment_id).map(|link| link.last_sequence);
        if continuity("payment", applied, commit.envelope)? == Continuity::AlreadyApplied {
            return Ok(());
        }
        for (index, event) in commit.events.iter().enumerate() {
            let (state, order_id) = match event {
                PaymentEvent::PaymentAuthorised {
                    payment_id: id,
                    order_id,
                    ..
                }
                | PaymentEvent::PaymentDeclined {
                    payment_id: id,
                    order_id,
                    ..
                } => {
                    if id.as_uuid() != payment_id || self.links.contains_key(&payment_id) {
                        return Err(ApplyError::Inconsistent(format!(
                            "payment {payment_id}: unexpected first answer {event:?}"
                        )));
                    }
                    let state = if let PaymentEvent::PaymentAuthorised { .. } = event {
                        PaymentState::Authorised
                    } else {
                        PaymentState::Declined
                    };
                    (state, order_id.as_uuid())
                }
                PaymentEvent::PaymentCaptured { .. }
                | PaymentEvent::PaymentVoided { .. }
                | PaymentEvent::PaymentRefunded { .. } => {
                    let link = self.links.get(&payment_id).ok_or_else(|| {
                        ApplyError::Inconsistent(format!(
                            "payment {payment_id} was never authorised, yet it has a {event:?}"
                        ))
                    })?;
                    let state = match event {
                        PaymentEvent::PaymentCaptured { .. } => PaymentState::Captured,
                        PaymentEvent::PaymentVoided { .. } => PaymentState::Voided,
                        _ => PaymentState::Refunded,
                    };
                    (state, link.order_id)
                }
            };
            self.links.insert(
                payment_id,
                PaymentLink {
                    payment_id,
                    order_id,
                    last_sequence: commit.sequence(index),
                },
            );
            let row = self.orders.get_mut(&order_id).ok_or_else(|| {
                ApplyError::Inconsistent(format!(
                    "payment {payment_id} pays order {order_id}, which was never placed"
                ))
            })?;
            row.raise_payment_state(state, payment_id)?;
            row.updated_at = commit.timestamp();
            self.changed_orders.insert(order_id);
        }
        self.changed_links.insert(payment_id);
        Ok(())
    }

    /// Writes every changed row back, one statement per table.
    async fn write(self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let orders: Vec<&OrderRow> = self
            .changed_orders
            .iter()
            .map(|id| &self.orders[id])
            .collect();
        if !orders.is_empty() {
            upsert_orders(conn, &orders).await?;
        }
        if !self.lines.is_empty() {
            insert_lines(conn, &self.lines).await?;
        }
        if !self.timeline.is_empty() {
            insert_timeline(conn, &self.timeline).await?;
        }
        let links: Vec<PaymentLink> = self.changed_links.iter().map(|id| self.links[id]).collect();
        if !links.is_empty() {
            upsert_links(conn, &links).await?;
        }
        Ok(())
    }
}

/// Applies an event that follows `OrderPlaced` to its order; returns the status it moves
/// to and the reason given for it.
fn transition(
    row: &mut OrderRow,
    event: &OrderEvent,
    at: DateTime<Utc>,
) -> Result<(OrderStatus, Option<String>), ApplyError> {
    let mut reason = None;
    let status = match event {
        OrderEvent::OrderPlaced { .. } => {
            return Err(ApplyError::Inconsistent(format!(
                "order {} is placed a second time",
                row.order_id
            )))
        }
        OrderEvent::OrderStockReserved { .. } => OrderStatus::StockReserved,
        OrderEvent::OrderPaymentAuthorised { payment_id, .. } => {
            row.raise_payment_state(PaymentState::Authorised, payment_id.as_uuid())?;
            OrderStatus::PaymentAuthorised
        }
        OrderEvent::OrderConfirmed { .. } => OrderStatus::Confirmed,
        OrderEvent::OrderShipped {
            carrier, tracking, ..
        } => {
            row.carrier = Some(carrier.clone());
            row.tracking = Some(tracking.clone());
            row.shipped_at = Some(at);
            OrderStatus::Shipped
        }
        OrderEvent::OrderDelivered { .. } => {
            row.delivered_at = Some(at);
            OrderStatus::Delivered
        }
        OrderEvent::OrderCancelled {
            reason: why, by, ..
        } => {
            row.cancellation_reason = Some(why.clone());
            row.cancelled_by = Some(canceller(*by).to_owned());
            row.cancelled_at = Some(at);
            reason = Some(why.clone());
            OrderStatus::Cancelled
        }
        OrderEvent::OrderRefunded {
            amount,
            reason: why,
            ..
        } => {
            if let Some(payment_id) = row.payment_id {
                row.raise_payment_state(PaymentState::Refunded, payment_id)?;
            }
            row.refunded_minor = Some(amount.amount_minor);
            row.refund_reason = Some(why.clone());
            row.refunded_at = Some(at);
            reason = Some(why.clone());
            OrderStatus::Refunded
        }
    };
    row.status = status.as_str().to_owned();
    Ok((status, reason))
}

/// Who cancelled, as stored.
pub(crate) fn canceller(by: Canceller) -> &'static str {
    match by {
        Canceller::Customer => "customer",
        Canceller::System => "system",
        Canceller::Admin => "admin",
    }
}

fn event_order_id(event: &OrderEvent) -> Uuid {
    let id = match event {
        OrderEvent::OrderPlaced { order_id, .. }
        | OrderEvent::OrderStockReserved { order_id }
        | OrderEvent::OrderPaymentAuthorised { order_id, .. }
        | OrderEvent::OrderConfirmed { order_id }
        | OrderEvent::OrderShipped { order_id, .. }
        | OrderEvent::OrderDelivered { order_id }
        | OrderEvent::OrderCancelled { order_id, .. }
        | OrderEvent::OrderRefunded { order_id, .. } => order_id,
    };
    id.as_uuid()
}

async fn upsert_orders(conn: &mut PgConnection, rows: &[&OrderRow]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, status, payment_state, payment_id, \
             currency, subtotal_minor, total_minor, line_count, item_count, carrier, tracking, \
             shipped_at, delivered_at, cancellation_reason, cancelled_by, cancelled_at, \
             refunded_minor, refund_reason, refunded_at, placed_at, updated_at, last_sequence, \
             shipping_address) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], \
             $6::text[], $7::bigint[], $8::bigint[], $9::integer[], $10::bigint[], $11::text[], \
             $12::text[], $13::timestamptz[], $14::timestamptz[], $15::text[], $16::text[], \
             $17::timestamptz[], $18::bigint[], $19::text[], $20::timestamptz[], \
             $21::timestamptz[], $22::timestamptz[], $23::bigint[], $24::jsonb[]) \
         ON CONFLICT (order_id) DO UPDATE SET \
             customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, \
             payment_state = EXCLUDED.payment_state, payment_id = EXCLUDED.payment_id, \
             currency = EXCLUDED.currency, subtotal_minor = EXCLUDED.subtotal_minor, \
             total_minor = EXCLUDED.total_minor, line_count = EXCLUDED.line_count, \
             item_count = EXCLUDED.item_count, carrier = EXCLUDED.carrier, \
             tracking = EXCLUDED.tracking, shipped_at = EXCLUDED.shipped_at, \
             delivered_at = EXCLUDED.delivered_at, \
             cancellation_reason = EXCLUDED.cancellation_reason, \
             cancelled_by = EXCLUDED.cancelled_by, cancelled_at = EXCLUDED.cancelled_at, \
             refunded_minor = EXCLUDED.refunded_minor, refund_reason = EXCLUDED.refund_reason, \
             refunded_at = EXCLUDED.refunded_at, placed_at = EXCLUDED.placed_at, \
             updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence, \
             shipping_address = EXCLUDED.shipping_address",
    )
    .bind(rows.iter().map(|r| r.order_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.customer_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.payment_state.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.payment_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.subtotal_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.total_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.line_count).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.item_count).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.carrier.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.tracking.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.shipped_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.delivered_at).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.cancellation_reason.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.cancelled_by.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.cancelled_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.refunded_minor).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.refund_reason.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.refunded_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.placed_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.shipping_address.clone())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_lines(conn: &mut PgConnection, lines: &[LineRow]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor, \
             line_total_minor, currency) \
         SELECT * FROM UNNEST($1::uuid[], $2::integer[], $3::text[], $4::bigint[], \
             $5::bigint[], $6::bigint[], $7::text[]) \
         ON CONFLICT (order_id, line_no) DO NOTHING",
    )
    .bind(lines.iter().map(|l| l.order_id).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.line_no).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.unit_price_minor).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.line_total_minor).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.currency.clone()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_timeline(
    conn: &mut PgConnection,
    timeline: &[TimelineRow],
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO status_timeline (order_id, position, event_index, status, occurred_at, \
             reason) \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::integer[], $4::text[], \
             $5::timestamptz[], $6::text[]) \
         ON CONFLICT (order_id, position, event_index) DO NOTHING",
    )
    .bind(timeline.iter().map(|t| t.order_id).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.position).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.event_index).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.status).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.occurred_at).collect::<Vec<_>>())
    .bind(
        timeline
            .iter()
            .map(|t| t.reason.clone())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn upsert_links(conn: &mut PgConnection, links: &[PaymentLink]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO order_payments (payment_id, order_id, last_sequence) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]) \
         ON CONFLICT (payment_id) DO UPDATE SET \
             order_id = EXCLUDED.order_id, last_sequence = EXCLUDED.last_sequence",
    )
    .bind(links.iter().map(|l| l.payment_id).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.order_id).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.last_sequence).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
