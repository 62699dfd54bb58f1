//! How order commits change the sales read model: load the orders a batch touches (and
//! the lines of those it confirms), fold in stream order, then write the changed orders
//! and add the batch's deltas to the counters (at most five bulk statements).

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::Aggregate;
use domain::order::{Order, OrderEvent, OrderStatus};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::commits::{continuity, decode_commit, Continuity, Decoded};
use crate::projection::{ApplyError, Delivery, Projection};

/// Projects order events into the sales analytics of the `sales` schema; see
/// [`crate::sales`] for when each figure counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SalesProjection;

#[async_trait]
impl Projection for SalesProjection {
    fn name(&self) -> &'static str {
        "sales"
    }

    fn schema(&self) -> &'static str {
        "sales"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Order::TYPE]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        let upcasters = domain::order::upcasters();
        let commits = batch
            .iter()
            .filter(|delivery| delivery.aggregate_type() == Order::TYPE)
            .map(|delivery| decode_commit::<Order>(delivery, &upcasters))
            .collect::<Result<Vec<_>, _>>()?;
        if commits.is_empty() {
            return Ok(());
        }
        let mut model = Model::load(conn, &commits).await?;
        for commit in &commits {
            model.apply(commit)?;
        }
        model.count_confirmed_lines(conn).await?;
        model.write(conn).await
    }
}

/// One row of `orders`: what sales needs to know of an order.
#[derive(Debug, Clone, sqlx::FromRow)]
struct SalesOrder {
    order_id: Uuid,
    currency: String,
    status: String,
    placed_at: DateTime<Utc>,
    placed_on: NaiveDate,
    confirmed_on: Option<NaiveDate>,
    cancelled_on: Option<NaiveDate>,
    last_sequence: i64,
}

/// One row of `order_lines`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Line {
    order_id: Uuid,
    sku: String,
    quantity: i64,
    line_total_minor: i64,
}

/// What a batch adds to one row of `daily`.
#[derive(Debug, Default)]
struct DailyDelta {
    orders_placed: i64,
    orders_confirmed: i64,
    orders_cancelled: i64,
    units_sold: i64,
    gross_revenue_minor: i64,
    refunded_minor: i64,
}

/// What a batch adds to one row of `daily_skus`.
#[derive(Debug, Default)]
struct SkuDelta {
    units_sold: i64,
    revenue_minor: i64,
    orders: i64,
}

#[derive(Default)]
struct Model {
    orders: HashMap<Uuid, SalesOrder>,
    changed: HashSet<Uuid>,
    /// Lines of the orders placed in this batch, also to be inserted.
    new_lines: HashMap<Uuid, Vec<Line>>,
    /// Orders confirmed in this batch, with the day and currency of the sale.
    confirmed: Vec<(Uuid, NaiveDate, String)>,
    daily: BTreeMap<(NaiveDate, String), DailyDelta>,
    skus: BTreeMap<(NaiveDate, String, String), SkuDelta>,
    statuses: BTreeMap<&'static str, i64>,
}

impl Model {
    async fn load(
        conn: &mut PgConnection,
        commits: &[Decoded<'_, OrderEvent>],
    ) -> Result<Self, ApplyError> {
        let ids: Vec<Uuid> = commits
            .iter()
            .map(|commit| commit.aggregate_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let rows: Vec<SalesOrder> = sqlx::query_as("SELECT * FROM orders WHERE order_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
        Ok(Model {
            orders: rows.into_iter().map(|row| (row.order_id, row)).collect(),
            ..Model::default()
        })
    }

    fn apply(&mut self, commit: &Decoded<'_, OrderEvent>) -> Result<(), ApplyError> {
        let order_id = commit.aggregate_id;
        let applied = self.orders.get(&order_id).map(|row| row.last_sequence);
        if continuity("order", applied, commit.envelope)? == Continuity::AlreadyApplied {
            return Ok(());
        }
        let day = commit.timestamp().date_naive();
        for (index, event) in commit.events.iter().enumerate() {
            let sequence = commit.sequence(index);
            let Some(order) = self.orders.get_mut(&order_id) else {
                self.place(order_id, event, sequence)?;
                continue;
            };
            let status = match event {
                OrderEvent::OrderPlaced { .. } => {
                    return Err(ApplyError::Inconsistent(format!(
                        "order {order_id} is placed a second time"
                    )))
                }
                OrderEvent::OrderStockReserved { .. } => OrderStatus::StockReserved,
                OrderEvent::OrderPaymentAuthorised { .. } => OrderStatus::PaymentAuthorised,
                OrderEvent::OrderConfirmed { .. } => {
                    order.confirmed_on = Some(day);
                    self.confirmed.push((order_id, day, order.currency.clone()));
                    daily(&mut self.daily, day, &order.currency).orders_confirmed += 1;
                    OrderStatus::Confirmed
                }
                OrderEvent::OrderShipped { .. } => OrderStatus::Shipped,
                OrderEvent::OrderDelivered { .. } => OrderStatus::Delivered,
                OrderEvent::OrderCancelled { .. } => {
                    order.cancelled_on = Some(day);
                    daily(&mut self.daily, day, &order.currency).orders_cancelled += 1;
                    OrderStatus::Cancelled
                }
                OrderEvent::OrderRefunded { amount, .. } => {
                    if amount.currency.code() != order.currency {
                        return Err(ApplyError::Inconsistent(format!(
                            "order {order_id} is in {}, yet refunded in {}",
                            order.currency, amount.currency
                        )));
                    }
                    daily(&mut self.daily, day, &order.currency).refunded_minor +=
                        amount.amount_minor;
                    OrderStatus::Refunded
                }
            };
            *self
                .statuses
                .entry(stored_status(&order.status)?)
                .or_default() -= 1;
            *self.statuses.entry(status.as_str()).or_default() += 1;
            order.status = status.as_str().to_owned();
            order.last_sequence = sequence;
        }
        self.changed.insert(order_id);
        Ok(())
    }

    /// Records the first event of an order, which must be its `OrderPlaced`.
    fn place(
        &mut self,
        order_id: Uuid,
        event: &OrderEvent,
        sequence: i64,
    ) -> Result<(), ApplyError> {
        let OrderEvent::OrderPlaced {
            lines,
            currency,
            placed_at,
            ..
        } = event
        else {
            return Err(ApplyError::Inconsistent(format!(
                "order {order_id} was never placed, yet it has a {event:?}"
            )));
        };
        let lines = lines
            .iter()
            .map(|line| {
                let total = line.line_total().map_err(|e| {
                    ApplyError::Inconsistent(format!("order {order_id}, line {}: {e}", line.sku))
                })?;
                Ok(Line {
                    order_id,
                    sku: line.sku.as_str().to_owned(),
                    quantity: i64::from(line.quantity),
                    line_total_minor: total.amount_minor,
                })
            })
            .collect::<Result<Vec<_>, ApplyError>>()?;
        let placed_on = placed_at.date_naive();
        daily(&mut self.daily, placed_on, currency.code()).orders_placed += 1;
        *self
            .statuses
            .entry(OrderStatus::Placed.as_str())
            .or_default() += 1;
        self.new_lines.insert(order_id, lines);
        self.orders.insert(
            order_id,
            SalesOrder {
                order_id,
                currency: currency.code().to_owned(),
                status: OrderStatus::Placed.as_str().to_owned(),
                placed_at: *placed_at,
                placed_on,
                confirmed_on: None,
                cancelled_on: None,
                last_sequence: sequence,
            },
        );
        self.changed.insert(order_id);
        Ok(())
    }

    /// Adds the lines of the orders confirmed in this batch to the units and revenue of
    /// their day, reading the lines of orders placed in earlier batches (one statement).
    async fn count_confirmed_lines(&mut self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let stored: Vec<Uuid> = self
            .confirmed
            .iter()
            .map(|(order_id, _, _)| *order_id)
            .filter(|order_id| !self.new_lines.contains_key(order_id))
            .collect();
        let mut stored_lines: HashMap<Uuid, Vec<Line>> = HashMap::new();
        if !stored.is_empty() {
            let lines: Vec<Line> = sqlx::query_as(
                "SELECT order_id, sku, quantity, line_total_minor FROM order_lines \
                 WHERE order_id = ANY($1)",
            )
            .bind(&stored)
            .fetch_all(&mut *conn)
            .await?;
            for line in lines {
                stored_lines.entry(line.order_id).or_default().push(line);
            }
        }
        for (order_id, day, currency) in &self.confirmed {
            let lines = self
                .new_lines
                .get(order_id)
                .or_else(|| stored_lines.get(order_id))
                .ok_or_else(|| {
                    ApplyError::Inconsistent(format!("order {order_id} has no lines"))
                })?;
            for line in lines {
                let day_total = daily(&mut self.daily, *day, currency);
                day_total.units_sold += line.quantity;
                day_total.gross_revenue_minor += line.line_total_minor;
                let sku = self
                    .skus
                    .entry((*day, line.sku.clone(), currency.clone()))
                    .or_default();
                sku.units_sold += line.quantity;
                sku.revenue_minor += line.line_total_minor;
                sku.orders += 1;
            }
        }
        Ok(())
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let orders: Vec<&SalesOrder> = self.changed.iter().map(|id| &self.orders[id]).collect();
        if !orders.is_empty() {
            upsert_orders(conn, &orders).await?;
        }
        let lines: Vec<&Line> = self.new_lines.values().flatten().collect();
        if !lines.is_empty() {
            insert_lines(conn, &lines).await?;
        }
        if !self.daily.is_empty() {
            add_daily(conn, &self.daily).await?;
        }
        if !self.skus.is_empty() {
            add_skus(conn, &self.skus).await?;
        }
        if !self.statuses.is_empty() {
            add_statuses(conn, &self.statuses).await?;
        }
        Ok(())
    }
}

fn daily<'a>(
    daily: &'a mut BTreeMap<(NaiveDate, String), DailyDelta>,
    day: NaiveDate,
    currency: &str,
) -> &'a mut DailyDelta {
    daily.entry((day, currency.to_owned())).or_default()
}

/// The stored status as the static text the counters are keyed by.
fn stored_status(status: &str) -> Result<&'static str, ApplyError> {
    crate::orders::parse_order_status(status)
        .map(|status| status.as_str())
        .map_err(|e| ApplyError::Inconsistent(format!("stored {e}")))
}

async fn upsert_orders(conn: &mut PgConnection, rows: &[&SalesOrder]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO orders (order_id, currency, status, placed_at, placed_on, confirmed_on, \
             cancelled_on, last_sequence) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], \
             $5::date[], $6::date[], $7::date[], $8::bigint[]) \
         ON CONFLICT (order_id) DO UPDATE SET \
             currency = EXCLUDED.currency, status = EXCLUDED.status, \
             placed_at = EXCLUDED.placed_at, placed_on = EXCLUDED.placed_on, \
             confirmed_on = EXCLUDED.confirmed_on, cancelled_on = EXCLUDED.cancelled_on, \
             last_sequence = EXCLUDED.last_sequence",
    )
    .bind(rows.iter().map(|r| r.order_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.placed_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.placed_on).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.confirmed_on).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.cancelled_on).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_lines(conn: &mut PgConnection, lines: &[&Line]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO order_lines (order_id, sku, quantity, line_total_minor) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[]) \
         ON CONFLICT (order_id, sku) DO NOTHING",
    )
    .bind(lines.iter().map(|l| l.order_id).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.line_total_minor).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn add_daily(
    conn: &mut PgConnection,
    deltas: &BTreeMap<(NaiveDate, String), DailyDelta>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO daily AS d (day, currency, orders_placed, orders_confirmed, \
             orders_cancelled, units_sold, gross_revenue_minor, refunded_minor) \
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::bigint[], $4::bigint[], \
             $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) \
         ON CONFLICT (day, currency) DO UPDATE SET \
             orders_placed = d.orders_placed + EXCLUDED.orders_placed, \
             orders_confirmed = d.orders_confirmed + EXCLUDED.orders_confirmed, \
             orders_cancelled = d.orders_cancelled + EXCLUDED.orders_cancelled, \
             units_sold = d.units_sold + EXCLUDED.units_sold, \
             gross_revenue_minor = d.gross_revenue_minor + EXCLUDED.gross_revenue_minor, \
             refunded_minor = d.refunded_minor + EXCLUDED.refunded_minor",
    )
    .bind(deltas.keys().map(|(day, _)| *day).collect::<Vec<_>>())
    .bind(
        deltas
            .keys()
            .map(|(_, currency)| currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(deltas.values().map(|d| d.orders_placed).collect::<Vec<_>>())
    .bind(
        deltas
            .values()
            .map(|d| d.orders_confirmed)
            .collect::<Vec<_>>(),
    )
    .bind(
        deltas
            .values()
            .map(|d| d.orders_cancelled)
            .collect::<Vec<_>>(),
    )
    .bind(deltas.values().map(|d| d.units_sold).collect::<Vec<_>>())
    .bind(
        deltas
            .values()
            .map(|d| d.gross_revenue_minor)
            .collect::<Vec<_>>(),
    )
    .bind(
        deltas
            .values()
            .map(|d| d.refunded_minor)
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn add_skus(
    conn: &mut PgConnection,
    deltas: &BTreeMap<(NaiveDate, String, String), SkuDelta>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO daily_skus AS s (day, sku, currency, units_sold, revenue_minor, orders) \
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
             $6::bigint[]) \
         ON CONFLICT (day, sku, currency) DO UPDATE SET \
             units_sold = s.units_sold + EXCLUDED.units_sold, \
             revenue_minor = s.revenue_minor + EXCLUDED.revenue_minor, \
             orders = s.orders + EXCLUDED.orders",
    )
    .bind(deltas.keys().map(|(day, _, _)| *day).collect::<Vec<_>>())
    .bind(
        deltas
            .keys()
            .map(|(_, sku, _)| sku.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        deltas
            .keys()
            .map(|(_, _, currency)| currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(deltas.values().map(|d| d.units_sold).collect::<Vec<_>>())
    .bind(deltas.values().map(|d| d.revenue_minor).collect::<Vec<_>>())
    .bind(deltas.values().map(|d| d.orders).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn add_statuses(
    conn: &mut PgConnection,
    deltas: &BTreeMap<&'static str, i64>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO status_counts AS c (status, orders) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
         ON CONFLICT (status) DO UPDATE SET orders = c.orders + EXCLUDED.orders",
    )
    .bind(deltas.keys().copied().collect::<Vec<_>>())
    .bind(deltas.values().copied().collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
