//! What happened to an order.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Canceller, OrderLine, ShippingAddress};
use crate::ids::{CustomerId, OrderId, PaymentId};
use crate::money::{Currency, Money};
use crate::payment::PaymentMethod;

/// An event of the order aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Placement carries the whole order (lines, address); events are built once and
// serialised, so the size of the other variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum OrderEvent {
    /// The customer placed the order.
    OrderPlaced {
        /// The order.
        order_id: OrderId,
        /// Who ordered.
        customer_id: CustomerId,
        /// What was ordered, at which unit prices.
        lines: Vec<OrderLine>,
        /// The order's currency.
        currency: Currency,
        /// The sum of the line totals.
        subtotal: Money,
        /// What the customer pays; for now the subtotal (no shipping or tax yet).
        total: Money,
        /// How the customer will pay, which the saga needs to authorise the payment.
        ///
        /// Always set on new events; `None` only for orders placed before the method
        /// was recorded, whose stored events have no such field.
        #[serde(default)]
        payment_method: Option<PaymentMethod>,
        /// Where to deliver; absent in orders placed before addresses were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shipping_address: Option<ShippingAddress>,
        /// When the customer placed it.
        placed_at: DateTime<Utc>,
    },
    /// Inventory holds the stock for every line.
    OrderStockReserved {
        /// The order.
        order_id: OrderId,
    },
    /// The payment was authorised.
    OrderPaymentAuthorised {
        /// The order.
        order_id: OrderId,
        /// The payment.
        payment_id: PaymentId,
    },
    /// The order was confirmed to the customer.
    OrderConfirmed {
        /// The order.
        order_id: OrderId,
    },
    /// The parcel left the warehouse.
    OrderShipped {
        /// The order.
        order_id: OrderId,
        /// The carrier.
        carrier: String,
        /// The tracking number.
        tracking: String,
    },
    /// The parcel reached the customer.
    OrderDelivered {
        /// The order.
        order_id: OrderId,
    },
    /// The order was cancelled.
    OrderCancelled {
        /// The order.
        order_id: OrderId,
        /// Why.
        reason: String,
        /// Who cancelled.
        by: Canceller,
    },
    /// Money went back to the customer.
    OrderRefunded {
        /// The order.
        order_id: OrderId,
        /// How much.
        amount: Money,
        /// Why.
        reason: String,
    },
}

/// The type names the events are stored under ([`DomainEvent::event_type`]), for
/// consumers that route on a commit's event types without decoding it.
impl OrderEvent {
    /// The type of [`OrderEvent::OrderPlaced`].
    pub const PLACED_TYPE: &'static str = "OrderPlaced";
    /// The type of [`OrderEvent::OrderStockReserved`].
    pub const STOCK_RESERVED_TYPE: &'static str = "OrderStockReserved";
    /// The type of [`OrderEvent::OrderPaymentAuthorised`].
    pub const PAYMENT_AUTHORISED_TYPE: &'static str = "OrderPaymentAuthorised";
    /// The type of [`OrderEvent::OrderConfirmed`].
    pub const CONFIRMED_TYPE: &'static str = "OrderConfirmed";
    /// The type of [`OrderEvent::OrderShipped`].
    pub const SHIPPED_TYPE: &'static str = "OrderShipped";
    /// The type of [`OrderEvent::OrderDelivered`].
    pub const DELIVERED_TYPE: &'static str = "OrderDelivered";
    /// The type of [`OrderEvent::OrderCancelled`].
    pub const CANCELLED_TYPE: &'static str = "OrderCancelled";
    /// The type of [`OrderEvent::OrderRefunded`].
    pub const REFUNDED_TYPE: &'static str = "OrderRefunded";
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        let name = match self {
            OrderEvent::OrderPlaced { .. } => Self::PLACED_TYPE,
            OrderEvent::OrderStockReserved { .. } => Self::STOCK_RESERVED_TYPE,
            OrderEvent::OrderPaymentAuthorised { .. } => Self::PAYMENT_AUTHORISED_TYPE,
            OrderEvent::OrderConfirmed { .. } => Self::CONFIRMED_TYPE,
            OrderEvent::OrderShipped { .. } => Self::SHIPPED_TYPE,
            OrderEvent::OrderDelivered { .. } => Self::DELIVERED_TYPE,
            OrderEvent::OrderCancelled { .. } => Self::CANCELLED_TYPE,
            OrderEvent::OrderRefunded { .. } => Self::REFUNDED_TYPE,
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
