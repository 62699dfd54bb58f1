//! Why an inventory command was rejected.

use crate::error_code::ErrorCode;
use crate::ids::{OrderId, Sku};

/// A broken inventory rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// The command names another SKU than this aggregate's.
    #[error("this inventory is for SKU {expected}, not {found}")]
    SkuMismatch {
        /// The aggregate's SKU.
        expected: Sku,
        /// The SKU in the command.
        found: Sku,
    },
    /// A quantity is zero.
    #[error("the quantity must be more than zero")]
    ZeroQuantity,
    /// A stock receipt has no reference.
    #[error("received stock needs a reference")]
    EmptyReference,
    /// An adjustment changes nothing.
    #[error("an adjustment must change the stock")]
    ZeroDelta,
    /// An adjustment, release or return has no reason.
    #[error("a reason is required")]
    MissingReason,
    /// The adjustment would leave fewer than zero units on hand.
    #[error("cannot adjust {on_hand} units on hand by {delta}")]
    NegativeStock {
        /// Units on hand.
        on_hand: u64,
        /// The requested change.
        delta: i64,
    },
    /// The adjustment would leave fewer units on hand than are reserved.
    #[error("adjusting to {resulting} units would leave less than the {reserved} reserved")]
    BelowReserved {
        /// Units reserved for orders.
        reserved: u64,
        /// Units on hand after the adjustment.
        resulting: u64,
    },
    /// The count would exceed what can be represented.
    #[error("stock count overflow")]
    Overflow,
    /// Fewer units are available than an order asks for.
    #[error("requested {requested} units but only {available} are available")]
    InsufficientStock {
        /// Units asked for.
        requested: u32,
        /// Units available.
        available: u64,
    },
    /// The order's reservation was released; an order reserves a SKU once.
    #[error("the reservation of order {order_id} was released and cannot be made again")]
    ReservationEnded {
        /// The order.
        order_id: OrderId,
    },
    /// The order holds no reservation to commit.
    #[error("order {order_id} holds no reservation")]
    NoReservation {
        /// The order.
        order_id: OrderId,
    },
    /// No reservation of the order was committed on this SKU, so there is no stock of
    /// it to return.
    #[error("order {order_id} has no committed stock to return")]
    NotCommitted {
        /// The order.
        order_id: OrderId,
    },
}

impl ErrorCode for InventoryError {
    fn code(&self) -> &'static str {
        match self {
            InventoryError::SkuMismatch { .. } => "SKU_MISMATCH",
            InventoryError::ZeroQuantity => "ZERO_QUANTITY",
            InventoryError::EmptyReference => "EMPTY_REFERENCE",
            InventoryError::ZeroDelta => "ZERO_DELTA",
            InventoryError::MissingReason => "MISSING_REASON",
            InventoryError::NegativeStock { .. } => "NEGATIVE_STOCK",
            InventoryError::BelowReserved { .. } => "BELOW_RESERVED",
            InventoryError::Overflow => "OVERFLOW",
            InventoryError::InsufficientStock { .. } => "INSUFFICIENT_STOCK",
            InventoryError::ReservationEnded { .. } => "RESERVATION_ENDED",
            InventoryError::NoReservation { .. } => "NO_RESERVATION",
            InventoryError::NotCommitted { .. } => "NOT_COMMITTED",
        }
    }
}
