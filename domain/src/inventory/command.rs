//! What callers may ask of a SKU's inventory.

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, Sku};

/// A command to the inventory aggregate of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryCommand {
    /// Books goods that arrived into stock.
    ReceiveStock {
        /// The SKU; must match the aggregate's.
        sku: Sku,
        /// How many units arrived; more than zero.
        quantity: u32,
        /// Where they came from, such as a delivery note number; not blank.
        reference: String,
    },
    /// Corrects the stock count after a stocktake, breakage or loss.
    AdjustStock {
        /// The SKU; must match the aggregate's.
        sku: Sku,
        /// Units to add (positive) or remove (negative); not zero.
        delta: i64,
        /// Why the count changed; not blank.
        reason: String,
    },
    /// Holds units for an order until it is fulfilled or released.
    ///
    /// Reserving again for an order that already holds (or held and committed) a
    /// reservation changes nothing, whatever the quantity: the first reservation stands.
    /// An order reserves a SKU once: after a release, reserving again for the same order
    /// is refused (`ReservationEnded`), so a step re-run after its compensation cannot hold
    /// stock again.
    ReserveStock {
        /// The order to reserve for.
        order_id: OrderId,
        /// How many units; more than zero.
        quantity: u32,
    },
    /// Gives an order's reserved units back; nothing happens if it holds none.
    ReleaseReservation {
        /// The order whose reservation ends.
        order_id: OrderId,
        /// Why, such as "order cancelled"; not blank.
        reason: String,
    },
    /// Fulfils an order's reservation: the units leave the warehouse.
    CommitReservation {
        /// The order being fulfilled.
        order_id: OrderId,
    },
    /// Puts an order's committed units back into stock, such as when a confirmed order
    /// is cancelled before it ships.
    ///
    /// Only for an order whose reservation was committed on this SKU; returning again
    /// for the same order changes nothing, so the units come back exactly once.
    ReturnCommittedStock {
        /// The order whose committed units come back.
        order_id: OrderId,
        /// Why, such as "order cancelled before shipping"; not blank.
        reason: String,
    },
}
