//! What callers may ask of an order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CustomerId, OrderId, PaymentId, Sku};
use crate::money::{Currency, Money, MoneyError};
use crate::payment::PaymentMethod;

/// One line of an order: a SKU, how many, and the unit price quoted to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The variant ordered.
    pub sku: Sku,
    /// How many units; more than zero.
    pub quantity: u32,
    /// The price of one unit when the order was placed; positive.
    pub unit_price: Money,
}

impl OrderLine {
    /// `unit_price * quantity`.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn line_total(&self) -> Result<Money, MoneyError> {
        self.unit_price.checked_mul(self.quantity)
    }
}

/// Where an order is to be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    /// The recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, floor, building; may be empty.
    #[serde(default)]
    pub line2: String,
    /// The town or city.
    pub city: String,
    /// The postal or ZIP code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case (`DE`, `US`).
    pub country_code: String,
}

/// Who cancels an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Canceller {
    /// The customer who placed it.
    Customer,
    /// The system, such as the saga compensating a failed step.
    System,
    /// A shop administrator.
    Admin,
}

/// A command to the order aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// Places a new order; prices are quoted by the caller.
    PlaceOrder {
        /// The new order's id.
        order_id: OrderId,
        /// Who orders.
        customer_id: CustomerId,
        /// At least one line, each SKU once, all priced in `currency`.
        lines: Vec<OrderLine>,
        /// The order's currency.
        currency: Currency,
        /// How the customer will pay; a card token must not be blank.
        payment_method: PaymentMethod,
        /// Where to deliver; `None` only where no address is known (imports, tests).
        shipping_address: Option<ShippingAddress>,
        /// When the customer placed it.
        placed_at: DateTime<Utc>,
    },
    /// Records that inventory holds the stock for every line.
    MarkStockReserved,
    /// Records that the payment provider authorised the payment.
    MarkPaymentAuthorised {
        /// The authorised payment.
        payment_id: PaymentId,
    },
    /// Confirms the order to the customer.
    ConfirmOrder,
    /// Records the authorised (and captured) payment and confirms the order at once: the
    /// saga's last step, one commit instead of two. From `StockReserved`, or from
    /// `PaymentAuthorised` with the same payment (a repeat).
    ConfirmPaidOrder {
        /// The payment that pays the order.
        payment_id: PaymentId,
    },
    /// Records that the parcel left the warehouse.
    ShipOrder {
        /// The carrier, such as "DHL"; not blank.
        carrier: String,
        /// The carrier's tracking number; not blank.
        tracking: String,
    },
    /// Records that the parcel reached the customer.
    MarkDelivered,
    /// Cancels the order; only possible before it ships.
    CancelOrder {
        /// Why; not blank.
        reason: String,
        /// Who cancels.
        by: Canceller,
    },
    /// Records that money went back to the customer.
    MarkRefunded {
        /// How much; positive, in the order's currency, at most the total.
        amount: Money,
        /// Why; not blank.
        reason: String,
    },
}
