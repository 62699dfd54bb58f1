//! The orders read model: what each customer ordered, where each order stands, and how
//! it got there.
//!
//! [`OrdersProjection`] consumes the `order` and `payment` aggregates and keeps, in the
//! `orders` schema:
//! - `orders`: one row per order with its customer, totals, status, payment state,
//!   shipping, cancellation and refund, and the aggregate version last applied;
//! - `order_lines`: the lines as placed (SKU, quantity, unit price, line total);
//! - `status_timeline`: one row per status transition, keyed by stream position and
//!   event index;
//! - `order_payments`: which order each payment pays, because capture, void and refund
//!   events name only the payment.
//!
//! The order events carry no product name or id, only the SKU: the API joins the catalog
//! for names, since a read model reads nothing outside its own schema.
//!
//! The query functions ([`order`], [`customer_orders`], [`orders`]) read the live schema
//! for the API, with keyset pagination ([`Page`](crate::page::Page)); the batch loaders
//! ([`orders_by_ids`], [`lines_for_orders`], [`timelines_for_orders`]) read what a page
//! of orders needs in one query each.

pub mod as_of;
mod projection;
pub(crate) mod query;

use std::fmt;
use std::str::FromStr;

use domain::order::OrderStatus;

pub use as_of::{order_as_of, AsOfError, OrderAsOf};
pub use projection::OrdersProjection;
pub use query::{
    customer_orders, details_by_ids, lines_for_orders, order, orders, orders_by_ids,
    timelines_for_orders, Cancellation, OrderDetail, OrderFilter, OrderLineView, OrderSummary,
    Refund, Shipping, StatusChange,
};

/// What became of the payment of an order, from whichever events say so.
///
/// The state only moves up the order of the variants below (a declined attempt does not
/// hide an authorised payment, and an authorisation reported by the order after the
/// payment was captured does not undo the capture), so it does not depend on how the
/// order's and the payment's events interleave in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// No payment event yet.
    None,
    /// The provider refused an attempt, and no attempt succeeded.
    Declined,
    /// The provider authorised the amount; nothing taken yet.
    Authorised,
    /// The authorisation was cancelled without taking money.
    Voided,
    /// The money was taken.
    Captured,
    /// Money went back to the customer, in full or in part.
    Refunded,
}

impl PaymentState {
    /// The state as stored and shown: a lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::None => "none",
            PaymentState::Declined => "declined",
            PaymentState::Authorised => "authorised",
            PaymentState::Voided => "voided",
            PaymentState::Captured => "captured",
            PaymentState::Refunded => "refunded",
        }
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no [`PaymentState`] or [`OrderStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a known state")]
pub struct UnknownState(pub String);

impl FromStr for PaymentState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            PaymentState::None,
            PaymentState::Declined,
            PaymentState::Authorised,
            PaymentState::Voided,
            PaymentState::Captured,
            PaymentState::Refunded,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Parses an order status stored with [`OrderStatus::as_str`].
///
/// # Errors
/// [`UnknownState`] when the text names no status.
pub fn parse_order_status(s: &str) -> Result<OrderStatus, UnknownState> {
    [
        OrderStatus::Placed,
        OrderStatus::StockReserved,
        OrderStatus::PaymentAuthorised,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ]
    .into_iter()
    .find(|status| status.as_str() == s)
    .ok_or_else(|| UnknownState(s.to_owned()))
}
