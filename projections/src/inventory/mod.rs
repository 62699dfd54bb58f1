//! The inventory read model: stock per SKU, its movement history and open reservations.
//!
//! Schema `inventory` (migration `0004_inventory.sql`; `0009_inventory_returns.sql` adds
//! the `returned` movement kind):
//! - `stock_levels`: on hand, reserved, available (generated) and the last movement time
//!   per SKU, with the aggregate version applied last;
//! - `movements`: one row per inventory event, keyed by stream position and event index;
//! - `reservations`: the units held per (SKU, order) until released or committed; a
//!   return of committed units puts them on hand and leaves reservations alone.
//!
//! A batch is applied in a few statements: the stock and reservations it touches are
//! loaded, folded in memory in stream order, and written back with `UNNEST` upserts.
//! Events at or below the version a SKU already reflects are skipped, so replaying a
//! range of the log changes nothing.

mod ledger;
mod query;

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::inventory::Inventory;
use domain::OrderId;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::batch::{distinct, expect_aggregate_type, position_of};
use crate::projection::{ApplyError, Delivery, Projection};

pub use ledger::MovementKind;
pub(crate) use ledger::StockTally;
pub use query::{movements, stock_level, stock_levels, Movement, StockLevel};

/// Projects inventory commits into the `inventory` schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryProjection;

#[async_trait]
impl Projection for InventoryProjection {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn schema(&self) -> &'static str {
        "inventory"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Inventory::TYPE]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        let upcasters = domain::inventory::upcasters();
        let mut decoded = Vec::with_capacity(batch.len());
        for delivery in batch {
            expect_aggregate_type(delivery, Inventory::TYPE)?;
            decoded.push((delivery, delivery.events::<Inventory>(&upcasters)?));
        }
        if decoded.is_empty() {
            return Ok(());
        }

        let skus = distinct(
            decoded
                .iter()
                .map(|(d, _)| d.commit.envelope.aggregate_id.clone()),
        );
        let reservation_keys = distinct(decoded.iter().flat_map(|(delivery, events)| {
            events.iter().filter_map(|envelope| {
                ledger::reservation_order(&envelope.payload)
                    .map(|order_id| (delivery.commit.envelope.aggregate_id.clone(), order_id))
            })
        }));
        let mut levels = load_levels(conn, &skus).await?;
        let mut reservations = load_reservations(conn, &reservation_keys).await?;
        let mut changed_reservations = HashSet::new();
        let mut movements = MovementRows::default();

        for (delivery, events) in &decoded {
            let sku = delivery.commit.envelope.aggregate_id.as_str();
            let timestamp = delivery.commit.envelope.timestamp;
            let position = position_of(delivery)?;
            let level = levels.entry(sku.to_owned()).or_default();
            for (index, envelope) in events.iter().enumerate() {
                let Some(effect) = level
                    .tally
                    .record(sku, envelope.sequence, &envelope.payload)?
                else {
                    continue;
                };
                level.last_movement_at = Some(timestamp);
                level.changed = true;
                if let Some(order_id) = ledger::reservation_order(&envelope.payload) {
                    let key = (sku.to_owned(), order_id);
                    let held = reservations.entry(key.clone()).or_default();
                    hold(sku, order_id, held, &effect, timestamp)?;
                    changed_reservations.insert(key);
                }
                movements.push(position, index, sku, effect, timestamp);
            }
        }

        write_levels(conn, &levels).await?;
        movements.insert(conn).await?;
        write_reservations(conn, &reservations, &changed_reservations).await?;
        Ok(())
    }
}

/// A SKU's stock level while a batch is folded.
#[derive(Debug, Default)]
struct Level {
    tally: StockTally,
    last_movement_at: Option<DateTime<Utc>>,
    changed: bool,
}

/// An open reservation while a batch is folded.
#[derive(Debug, Clone, Copy)]
struct Held {
    quantity: i64,
    reserved_at: DateTime<Utc>,
}

/// Opens or closes the reservation of `order_id` on `sku` as `effect` says.
///
/// # Errors
/// [`ApplyError::Inconsistent`] when an order reserves twice, or a release or commit
/// finds no reservation of that quantity: the inventory aggregate never records either.
fn hold(
    sku: &str,
    order_id: OrderId,
    held: &mut Option<Held>,
    effect: &ledger::StockEffect,
    timestamp: DateTime<Utc>,
) -> Result<(), ApplyError> {
    match (effect.kind, *held) {
        (MovementKind::Reserved, None) => {
            *held = Some(Held {
                quantity: effect.quantity,
                reserved_at: timestamp,
            });
            Ok(())
        }
        (MovementKind::Reserved, Some(_)) => Err(ApplyError::Inconsistent(format!(
            "inventory {sku}: order {order_id} reserved again while it holds a reservation"
        ))),
        (MovementKind::Released | MovementKind::Committed, Some(open))
            if open.quantity == effect.quantity =>
        {
            *held = None;
            Ok(())
        }
        (kind @ (MovementKind::Released | MovementKind::Committed), open) => {
            Err(ApplyError::Inconsistent(format!(
                "inventory {sku}: {} {} units for order {order_id}, which holds {}",
                kind.as_str(),
                effect.quantity,
                open.map_or(0, |open| open.quantity)
            )))
        }
        (MovementKind::Received | MovementKind::Adjusted | MovementKind::Returned, _) => Ok(()),
    }
}

async fn load_levels(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<HashMap<String, Level>, ApplyError> {
    let rows = sqlx::query(
        "SELECT sku, on_hand, reserved, last_movement_at, last_sequence
         FROM stock_levels WHERE sku = ANY($1)",
    )
    .bind(skus)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let level = Level {
                tally: StockTally {
                    on_hand: row.try_get("on_hand")?,
                    reserved: row.try_get("reserved")?,
                    last_sequence: row.try_get("last_sequence")?,
                },
                last_movement_at: Some(row.try_get("last_movement_at")?),
                changed: false,
            };
            Ok((row.try_get("sku")?, level))
        })
        .collect()
}

async fn load_reservations(
    conn: &mut PgConnection,
    keys: &[(String, OrderId)],
) -> Result<HashMap<(String, OrderId), Option<Held>>, ApplyError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (skus, orders): (Vec<&str>, Vec<Uuid>) = keys
        .iter()
        .map(|(sku, order_id)| (sku.as_str(), order_id.as_uuid()))
        .unzip();
    let rows = sqlx::query(
        "SELECT r.sku, r.order_id, r.quantity, r.reserved_at
         FROM reservations r
         JOIN UNNEST($1::text[], $2::uuid[]) AS k(sku, order_id)
           ON k.sku = r.sku AND k.order_id = r.order_id",
    )
    .bind(&skus)
    .bind(&orders)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let key = (row.try_get("sku")?, OrderId(row.try_get("order_id")?));
            let held = Held {
                quantity: row.try_get("quantity")?,
                reserved_at: row.try_get("reserved_at")?,
            };
            Ok((key, Some(held)))
        })
        .collect()
}

async fn write_levels(
    conn: &mut PgConnection,
    levels: &HashMap<String, Level>,
) -> Result<(), ApplyError> {
    let mut skus = Vec::new();
    let mut on_hand = Vec::new();
    let mut reserved = Vec::new();
    let mut last_movement_at = Vec::new();
    let mut last_sequence = Vec::new();
    for (sku, level) in levels {
        let (true, Some(moved_at)) = (level.changed, level.last_movement_at) else {
            continue;
        };
        skus.push(sku.as_str());
        on_hand.push(level.tally.on_hand);
        reserved.push(level.tally.reserved);
        last_movement_at.push(moved_at);
        last_sequence.push(level.tally.last_sequence);
    }
    if skus.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO stock_levels (sku, on_hand, reserved, last_movement_at, last_sequence)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[],
                              $5::bigint[])
         ON CONFLICT (sku) DO UPDATE SET
             on_hand = EXCLUDED.on_hand,
             reserved = EXCLUDED.reserved,
             last_movement_at = EXCLUDED.last_movement_at,
             last_sequence = EXCLUDED.last_sequence",
    )
    .bind(&skus)
    .bind(&on_hand)
    .bind(&reserved)
    .bind(&last_movement_at)
    .bind(&last_sequence)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_reservations(
    conn: &mut PgConnection,
    reservations: &HashMap<(String, OrderId), Option<Held>>,
    changed: &HashSet<(String, OrderId)>,
) -> Result<(), ApplyError> {
    let (mut open_skus, mut open_orders, mut quantities, mut reserved_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut closed_skus, mut closed_orders) = (Vec::new(), Vec::new());
    for key @ (sku, order_id) in changed {
        match reservations.get(key).copied().flatten() {
            Some(held) => {
                open_skus.push(sku.as_str());
                open_orders.push(order_id.as_uuid());
                quantities.push(held.quantity);
                reserved_at.push(held.reserved_at);
            }
            None => {
                closed_skus.push(sku.as_str());
                closed_orders.push(order_id.as_uuid());
            }
        }
    }
    if !closed_skus.is_empty() {
        sqlx::query(
            "DELETE FROM reservations r
             USING UNNEST($1::text[], $2::uuid[]) AS k(sku, order_id)
             WHERE r.sku = k.sku AND r.order_id = k.order_id",
        )
        .bind(&closed_skus)
        .bind(&closed_orders)
        .execute(&mut *conn)
        .await?;
    }
    if !open_skus.is_empty() {
        sqlx::query(
            "INSERT INTO reservations (sku, order_id, quantity, reserved_at)
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::timestamptz[])
             ON CONFLICT (sku, order_id) DO UPDATE SET
                 quantity = EXCLUDED.quantity,
                 reserved_at = EXCLUDED.reserved_at",
        )
        .bind(&open_skus)
        .bind(&open_orders)
        .bind(&quantities)
        .bind(&reserved_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The movement rows of a batch, column by column for one `UNNEST` insert.
#[derive(Debug, Default)]
struct MovementRows {
    position: Vec<i64>,
    event_index: Vec<i32>,
    sku: Vec<String>,
    kind: Vec<&'static str>,
    quantity: Vec<i64>,
    on_hand_change: Vec<i64>,
    reserved_change: Vec<i64>,
    order_id: Vec<Option<Uuid>>,
    reference: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    occurred_at: Vec<DateTime<Utc>>,
}

impl MovementRows {
    fn push(
        &mut self,
        position: i64,
        index: usize,
        sku: &str,
        effect: ledger::StockEffect,
        occurred_at: DateTime<Utc>,
    ) {
        self.position.push(position);
        // A commit holds the events of one command: a handful, never 2^31.
        self.event_index
            .push(i32::try_from(index).expect("a commit holds fewer than 2^31 events"));
        self.sku.push(sku.to_owned());
        self.kind.push(effect.kind.as_str());
        self.quantity.push(effect.quantity);
        self.on_hand_change.push(effect.on_hand_change);
        self.reserved_change.push(effect.reserved_change);
        self.order_id.push(effect.order_id.map(|id| id.as_uuid()));
        self.reference.push(effect.reference);
        self.reason.push(effect.reason);
        self.occurred_at.push(occurred_at);
    }

    async fn insert(&self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        if self.position.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO movements (position, event_index, sku, kind, quantity, on_hand_change,
                                    reserved_change, order_id, reference, reason, occurred_at)
             SELECT * FROM UNNEST($1::bigint[], $2::integer[], $3::text[], $4::text[],
                                  $5::bigint[], $6::bigint[], $7::bigint[], $8::uuid[],
                                  $9::text[], $10::text[], $11::timestamptz[])",
        )
        .bind(&self.position)
        .bind(&self.event_index)
        .bind(&self.sku)
        .bind(&self.kind)
        .bind(&self.quantity)
        .bind(&self.on_hand_change)
        .bind(&self.reserved_change)
        .bind(&self.order_id)
        .bind(&self.reference)
        .bind(&self.reason)
        .bind(&self.occurred_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
