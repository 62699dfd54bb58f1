//! What happened to a SKU's inventory.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, Sku};

/// An event of the inventory aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InventoryEvent {
    /// Units arrived and were booked into stock.
    StockReceived {
        /// The SKU.
        sku: Sku,
        /// How many units.
        quantity: u32,
        /// Where they came from.
        reference: String,
    },
    /// The stock count was corrected.
    ///
    /// Version 2.0 added `reason`; version 1.0 events are upcast by
    /// [`upcasters`](super::upcasters).
    StockAdjusted {
        /// The SKU.
        sku: Sku,
        /// Units added (positive) or removed (negative).
        delta: i64,
        /// Why the count changed.
        reason: String,
    },
    /// Units were held for an order.
    StockReserved {
        /// The SKU.
        sku: Sku,
        /// The order.
        order_id: OrderId,
        /// How many units.
        quantity: u32,
    },
    /// An order's held units became available again.
    ReservationReleased {
        /// The SKU.
        sku: Sku,
        /// The order.
        order_id: OrderId,
        /// How many units were released.
        quantity: u32,
        /// Why.
        reason: String,
    },
    /// An order's held units left stock to fulfil it.
    ReservationCommitted {
        /// The SKU.
        sku: Sku,
        /// The order.
        order_id: OrderId,
        /// How many units left stock.
        quantity: u32,
    },
    /// An order's committed units came back into stock.
    CommittedStockReturned {
        /// The SKU.
        sku: Sku,
        /// The order.
        order_id: OrderId,
        /// How many units came back: all that were committed for the order.
        quantity: u32,
        /// Why.
        reason: String,
    },
}

impl InventoryEvent {
    /// The current version of `StockAdjusted`.
    pub const STOCK_ADJUSTED_VERSION: &'static str = "2.0";
}

impl DomainEvent for InventoryEvent {
    fn event_type(&self) -> String {
        let name = match self {
            InventoryEvent::StockReceived { .. } => "StockReceived",
            InventoryEvent::StockAdjusted { .. } => "StockAdjusted",
            InventoryEvent::StockReserved { .. } => "StockReserved",
            InventoryEvent::ReservationReleased { .. } => "ReservationReleased",
            InventoryEvent::ReservationCommitted { .. } => "ReservationCommitted",
            InventoryEvent::CommittedStockReturned { .. } => "CommittedStockReturned",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            InventoryEvent::StockAdjusted { .. } => Self::STOCK_ADJUSTED_VERSION.to_owned(),
            _ => "1.0".to_owned(),
        }
    }
}
