//! The notifier projection: its own state in schema `notifications`, and the outbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::money::{Currency, Money};
use domain::order::{Canceller, Order, OrderEvent};
use domain::payment::{Payment, PaymentEvent};
use domain::{CustomerId, OrderId, PaymentId, RefundId};
use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::outbox::NotificationKind;
use crate::projection::{ApplyError, Delivery, Projection};

/// The notifier: keeps which customer placed which order and which order each payment
/// pays, and on live deliveries enqueues a notification per order confirmed, order
/// cancelled and refund issued.
///
/// Its state tables (`orders`, `payments`) follow the projection contract and are written
/// unqualified. The outbox `outbox.notifications` is the one exception: it is written
/// qualified, because it records effects and must survive a rebuild of the schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotifierProjection;

const AGGREGATE_TYPES: &[&str] = &[<Order as Aggregate>::TYPE, <Payment as Aggregate>::TYPE];

#[async_trait]
impl Projection for NotifierProjection {
    fn name(&self) -> &'static str {
        "notifier"
    }

    fn schema(&self) -> &'static str {
        "notifications"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        AGGREGATE_TYPES
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        let folded = Folded::from_batch(batch)?;
        let stored_payments = load_payments(conn, folded.payments_to_load()).await?;
        let resolved = folded.resolve_payments(&stored_payments)?;
        let stored_orders = load_orders(conn, folded.orders_to_load(&resolved)).await?;
        let enqueued = folded.notifications(&resolved, &stored_orders)?;
        upsert_orders(conn, &folded.orders).await?;
        upsert_payments(conn, &folded.payments).await?;
        enqueue(conn, &enqueued).await?;
        Ok(())
    }
}

/// Where an event sits in the stream: commit position, then index within the commit.
type StreamKey = (u64, usize);

/// What the notifier keeps of an `OrderPlaced`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PlacedOrder {
    customer_id: CustomerId,
    total: Money,
    position: u64,
}

/// What the notifier keeps of a `PaymentAuthorised`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AuthorisedPayment {
    order_id: OrderId,
    position: u64,
}

/// A meaningful event, before its customer is known.
#[derive(Debug, Clone)]
struct Pending {
    event_id: Uuid,
    at: StreamKey,
    occurred_at: DateTime<Utc>,
    live: bool,
    fact: Fact,
    /// The order placed earlier in this batch, when it was; else it is read from the
    /// `orders` table as it stood before the batch.
    placed_in_batch: Option<PlacedOrder>,
}

/// What happened, with what the notification says about it.
#[derive(Debug, Clone)]
enum Fact {
    Confirmed {
        order_id: OrderId,
    },
    Cancelled {
        order_id: OrderId,
        reason: String,
        by: Canceller,
    },
    Refunded {
        payment_id: PaymentId,
        /// The order the payment pays, when it was authorised earlier in this batch.
        order_in_batch: Option<OrderId>,
        refund_id: RefundId,
        amount: Money,
        reason: String,
    },
}

/// One row for `outbox.notifications`.
#[derive(Debug, Clone, PartialEq)]
struct Enqueued {
    id: Uuid,
    position: i64,
    event_index: i32,
    kind: NotificationKind,
    customer_id: CustomerId,
    order_id: OrderId,
    payload: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

/// A batch folded in memory, in stream order: the state rows it writes (the last event
/// per key wins) and its meaningful events.
#[derive(Debug, Default)]
struct Folded {
    orders: BTreeMap<OrderId, PlacedOrder>,
    payments: BTreeMap<PaymentId, AuthorisedPayment>,
    pending: Vec<Pending>,
}

impl Folded {
    fn from_batch(batch: &[Delivery<'_>]) -> Result<Self, ApplyError> {
        let order_upcasters = domain::order::upcasters();
        let payment_upcasters = domain::payment::upcasters();
        let mut folded = Folded::default();
        for delivery in batch {
            let commit = &delivery.commit.envelope;
            let position = delivery.position();
            let stored = &commit.events;
            match delivery.aggregate_type() {
                <Order as Aggregate>::TYPE => {
                    let events = delivery.events::<Order>(&order_upcasters)?;
                    for (index, (event, stored)) in events.into_iter().zip(stored).enumerate() {
                        let meta = EventMeta {
                            event_id: stored.event_id,
                            at: (position, index),
                            occurred_at: commit.timestamp,
                            live: delivery.mode.allows_side_effects(),
                        };
                        folded.order_event(event.payload, meta);
                    }
                }
                <Payment as Aggregate>::TYPE => {
                    let events = delivery.events::<Payment>(&payment_upcasters)?;
                    for (index, (event, stored)) in events.into_iter().zip(stored).enumerate() {
                        let meta = EventMeta {
                            event_id: stored.event_id,
                            at: (position, index),
                            occurred_at: commit.timestamp,
                            live: delivery.mode.allows_side_effects(),
                        };
                        folded.payment_event(event.payload, meta);
                    }
                }
                other => {
                    return Err(ApplyError::Inconsistent(format!(
                        "the notifier does not consume `{other}` commits (position {position})"
                    )))
                }
            }
        }
        Ok(folded)
    }

    fn order_event(&mut self, event: OrderEvent, meta: EventMeta) {
        let fact = match event {
            OrderEvent::OrderPlaced {
                order_id,
                customer_id,
                total,
                ..
            } => {
                let placed = PlacedOrder {
                    customer_id,
                    total,
                    position: meta.at.0,
                };
                self.orders.insert(order_id, placed);
                return;
            }
            OrderEvent::OrderConfirmed { order_id } => Fact::Confirmed { order_id },
            OrderEvent::OrderCancelled {
                order_id,
                reason,
                by,
            } => Fact::Cancelled {
                order_id,
                reason,
                by,
            },
            // The refund is announced by the payment's `PaymentRefunded`; the order only
            // records it. The other steps are not worth a message.
            OrderEvent::OrderStockReserved { .. }
            | OrderEvent::OrderPaymentAuthorised { .. }
            | OrderEvent::OrderShipped { .. }
            | OrderEvent::OrderDelivered { .. }
            | OrderEvent::OrderRefunded { .. } => return,
        };
        self.push(fact, meta);
    }

    fn payment_event(&mut self, event: PaymentEvent, meta: EventMeta) {
        match event {
            PaymentEvent::PaymentAuthorised {
                payment_id,
                order_id,
                ..
            } => {
                let authorised = AuthorisedPayment {
                    order_id,
                    position: meta.at.0,
                };
                self.payments.insert(payment_id, authorised);
            }
            PaymentEvent::PaymentRefunded {
                payment_id,
                refund_id,
                amount,
                reason,
            } => {
                let order_in_batch = self.payments.get(&payment_id).map(|p| p.order_id);
                let fact = Fact::Refunded {
                    payment_id,
                    order_in_batch,
                    refund_id,
                    amount,
                    reason,
                };
                self.push(fact, meta);
            }
            PaymentEvent::PaymentDeclined { .. }
            | PaymentEvent::PaymentCaptured { .. }
            | PaymentEvent::PaymentVoided { .. } => {}
        }
    }

    fn push(&mut self, fact: Fact, meta: EventMeta) {
        let order_id = match &fact {
            Fact::Confirmed { order_id } | Fact::Cancelled { order_id, .. } => Some(*order_id),
            Fact::Refunded { order_in_batch, .. } => *order_in_batch,
        };
        let placed_in_batch = order_id.and_then(|id| self.orders.get(&id).copied());
        self.pending.push(Pending {
            event_id: meta.event_id,
            at: meta.at,
            occurred_at: meta.occurred_at,
            live: meta.live,
            fact,
            placed_in_batch,
        });
    }

    /// Payments refunded in this batch but authorised before it.
    fn payments_to_load(&self) -> Vec<Uuid> {
        let ids: BTreeSet<Uuid> = self
            .pending
            .iter()
            .filter_map(|pending| match &pending.fact {
                Fact::Refunded {
                    payment_id,
                    order_in_batch: None,
                    ..
                } => Some(payment_id.as_uuid()),
                _ => None,
            })
            .collect();
        ids.into_iter().collect()
    }

    /// The order of every pending event, one per entry of `pending`.
    fn resolve_payments(
        &self,
        stored_payments: &HashMap<Uuid, OrderId>,
    ) -> Result<Vec<OrderId>, ApplyError> {
        self.pending
            .iter()
            .map(|pending| match &pending.fact {
                Fact::Confirmed { order_id } | Fact::Cancelled { order_id, .. } => Ok(*order_id),
                Fact::Refunded {
                    order_in_batch: Some(order_id),
                    ..
                } => Ok(*order_id),
                Fact::Refunded {
                    payment_id,
                    order_in_batch: None,
                    ..
                } => stored_payments
                    .get(&payment_id.as_uuid())
                    .copied()
                    .ok_or_else(|| {
                        ApplyError::Inconsistent(format!(
                            "PaymentRefunded at position {} for payment {payment_id}, which the \
                             notifier never saw authorised",
                            pending.at.0
                        ))
                    }),
            })
            .collect()
    }

    /// Orders of pending events that were placed before this batch.
    fn orders_to_load(&self, order_ids: &[OrderId]) -> Vec<Uuid> {
        let ids: BTreeSet<Uuid> = self
            .pending
            .iter()
            .zip(order_ids)
            .filter(|(pending, _)| pending.placed_in_batch.is_none())
            .map(|(_, order_id)| order_id.as_uuid())
            .collect();
        ids.into_iter().collect()
    }

    /// The outbox rows of the live pending events, each addressed to its order's
    /// customer; an event of an order never placed is an inconsistency in every mode.
    fn notifications(
        &self,
        order_ids: &[OrderId],
        stored_orders: &HashMap<Uuid, PlacedOrder>,
    ) -> Result<Vec<Enqueued>, ApplyError> {
        let mut enqueued = Vec::new();
        let mut seen = BTreeSet::new();
        for (pending, order_id) in self.pending.iter().zip(order_ids) {
            let placed = pending
                .placed_in_batch
                .or_else(|| stored_orders.get(&order_id.as_uuid()).copied())
                .ok_or_else(|| {
                    ApplyError::Inconsistent(format!(
                        "{} at position {} for order {order_id}, which the notifier never saw \
                         placed",
                        pending.fact.event_name(),
                        pending.at.0
                    ))
                })?;
            // The same commit twice in one batch enqueues once, like across batches.
            if !pending.live || !seen.insert(pending.event_id) {
                continue;
            }
            enqueued.push(Enqueued {
                id: pending.event_id,
                position: to_i64(pending.at.0)?,
                event_index: i32::try_from(pending.at.1).map_err(|_| {
                    ApplyError::Inconsistent(format!("event index {} overflows", pending.at.1))
                })?,
                kind: pending.fact.kind(),
                customer_id: placed.customer_id,
                order_id: *order_id,
                payload: pending.fact.payload(&placed),
                occurred_at: pending.occurred_at,
            });
        }
        Ok(enqueued)
    }
}

#[derive(Debug, Clone, Copy)]
struct EventMeta {
    event_id: Uuid,
    at: StreamKey,
    occurred_at: DateTime<Utc>,
    live: bool,
}

impl Fact {
    fn kind(&self) -> NotificationKind {
        match self {
            Fact::Confirmed { .. } => NotificationKind::OrderConfirmed,
            Fact::Cancelled { .. } => NotificationKind::OrderCancelled,
            Fact::Refunded { .. } => NotificationKind::RefundIssued,
        }
    }

    fn event_name(&self) -> &'static str {
        match self {
            Fact::Confirmed { .. } => "OrderConfirmed",
            Fact::Cancelled { .. } => "OrderCancelled",
            Fact::Refunded { .. } => "PaymentRefunded",
        }
    }

    /// What a message template needs beyond the kind, the customer and the order.
    fn payload(&self, placed: &PlacedOrder) -> serde_json::Value {
        match self {
            Fact::Confirmed { .. } => json!({ "total": money(placed.total) }),
            Fact::Cancelled { reason, by, .. } => json!({
                "reason": reason,
                "cancelled_by": canceller(*by),
            }),
            Fact::Refunded {
                payment_id,
                refund_id,
                amount,
                reason,
                ..
            } => json!({
                "payment_id": payment_id,
                "refund_id": refund_id,
                "amount": money(*amount),
                "reason": reason,
            }),
        }
    }
}

fn money(money: Money) -> serde_json::Value {
    json!({ "amount_minor": money.amount_minor, "currency": money.currency.code() })
}

/// The payload's name for who cancelled: part of the message contract, so spelled out
/// here rather than borrowed from the event's serde names.
fn canceller(by: Canceller) -> &'static str {
    match by {
        Canceller::Customer => "customer",
        Canceller::System => "system",
        Canceller::Admin => "admin",
    }
}

fn to_i64(position: u64) -> Result<i64, ApplyError> {
    i64::try_from(position)
        .map_err(|_| ApplyError::Inconsistent(format!("stream position {position} overflows")))
}

async fn load_payments(
    conn: &mut PgConnection,
    payment_ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, OrderId>, ApplyError> {
    if payment_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query("SELECT payment_id, order_id FROM payments WHERE payment_id = ANY($1)")
        .bind(payment_ids)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            let order_id: Uuid = row.try_get("order_id")?;
            Ok((row.try_get("payment_id")?, OrderId::from_uuid(order_id)))
        })
        .collect()
}

async fn load_orders(
    conn: &mut PgConnection,
    order_ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, PlacedOrder>, ApplyError> {
    if order_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT order_id, customer_id, total_minor, currency, placed_position
         FROM orders WHERE order_id = ANY($1)",
    )
    .bind(order_ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let order_id: Uuid = row.try_get("order_id")?;
            let currency: String = row.try_get("currency")?;
            let currency: Currency = currency
                .parse()
                .map_err(|e| ApplyError::Inconsistent(format!("stored order {order_id}: {e}")))?;
            let position: i64 = row.try_get("placed_position")?;
            let placed = PlacedOrder {
                customer_id: CustomerId::from_uuid(row.try_get("customer_id")?),
                total: Money::new(row.try_get("total_minor")?, currency),
                position: u64::try_from(position).map_err(|_| {
                    ApplyError::Inconsistent(format!(
                        "stored order {order_id}: position {position}"
                    ))
                })?,
            };
            Ok((order_id, placed))
        })
        .collect()
}

async fn upsert_orders(
    conn: &mut PgConnection,
    orders: &BTreeMap<OrderId, PlacedOrder>,
) -> Result<(), ApplyError> {
    if orders.is_empty() {
        return Ok(());
    }
    let mut order_ids = Vec::with_capacity(orders.len());
    let mut customer_ids = Vec::with_capacity(orders.len());
    let mut totals = Vec::with_capacity(orders.len());
    let mut currencies = Vec::with_capacity(orders.len());
    let mut positions = Vec::with_capacity(orders.len());
    for (order_id, placed) in orders {
        order_ids.push(order_id.as_uuid());
        customer_ids.push(placed.customer_id.as_uuid());
        totals.push(placed.total.amount_minor);
        currencies.push(placed.total.currency.code().to_owned());
        positions.push(to_i64(placed.position)?);
    }
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, total_minor, currency, placed_position)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::bigint[])
         ON CONFLICT (order_id) DO UPDATE SET
             customer_id = EXCLUDED.customer_id,
             total_minor = EXCLUDED.total_minor,
             currency = EXCLUDED.currency,
             placed_position = EXCLUDED.placed_position",
    )
    .bind(order_ids)
    .bind(customer_ids)
    .bind(totals)
    .bind(currencies)
    .bind(positions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_payments(
    conn: &mut PgConnection,
    payments: &BTreeMap<PaymentId, AuthorisedPayment>,
) -> Result<(), ApplyError> {
    if payments.is_empty() {
        return Ok(());
    }
    let mut payment_ids = Vec::with_capacity(payments.len());
    let mut order_ids = Vec::with_capacity(payments.len());
    let mut positions = Vec::with_capacity(payments.len());
    for (payment_id, authorised) in payments {
        payment_ids.push(payment_id.as_uuid());
        order_ids.push(authorised.order_id.as_uuid());
        positions.push(to_i64(authorised.position)?);
    }
    sqlx::query(
        "INSERT INTO payments (payment_id, order_id, authorised_position)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[])
         ON CONFLICT (payment_id) DO UPDATE SET
             order_id = EXCLUDED.order_id,
             authorised_position = EXCLUDED.authorised_position",
    )
    .bind(payment_ids)
    .bind(order_ids)
    .bind(positions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts into the outbox, qualified: it lives outside the projection's schema so that
/// a rebuild neither clones nor empties it. A redelivered event is already there and is
/// left alone, sent or not.
async fn enqueue(conn: &mut PgConnection, notifications: &[Enqueued]) -> Result<(), ApplyError> {
    if notifications.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = notifications.iter().map(|n| n.id).collect();
    let positions: Vec<i64> = notifications.iter().map(|n| n.position).collect();
    let indexes: Vec<i32> = notifications.iter().map(|n| n.event_index).collect();
    let kinds: Vec<&str> = notifications.iter().map(|n| n.kind.as_str()).collect();
    let customers: Vec<Uuid> = notifications
        .iter()
        .map(|n| n.customer_id.as_uuid())
        .collect();
    let orders: Vec<Uuid> = notifications.iter().map(|n| n.order_id.as_uuid()).collect();
    let payloads: Vec<serde_json::Value> =
        notifications.iter().map(|n| n.payload.clone()).collect();
    let occurred: Vec<DateTime<Utc>> = notifications.iter().map(|n| n.occurred_at).collect();
    sqlx::query(
        "INSERT INTO outbox.notifications
             (id, position, event_index, kind, customer_id, order_id, payload, occurred_at)
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::uuid[],
                              $6::uuid[], $7::jsonb[], $8::timestamptz[])
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(ids)
    .bind(positions)
    .bind(indexes)
    .bind(kinds)
    .bind(customers)
    .bind(orders)
    .bind(payloads)
    .bind(occurred)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
