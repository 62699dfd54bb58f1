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

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        let name = match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderStockReserved { .. } => "OrderStockReserved",
            OrderEvent::OrderPaymentAuthorised { .. } => "OrderPaymentAuthorised",
            OrderEvent::OrderConfirmed { .. } => "OrderConfirmed",
            OrderEvent::OrderShipped { .. } => "OrderShipped",
            OrderEvent::OrderDelivered { .. } => "OrderDelivered",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
            OrderEvent::OrderRefunded { .. } => "OrderRefunded",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
