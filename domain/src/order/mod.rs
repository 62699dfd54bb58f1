//! The order aggregate: what a customer bought, at which prices, and how far along it is.
//!
//! An order moves forward through
//! `Placed -> StockReserved -> PaymentAuthorised -> Confirmed -> Shipped -> Delivered`,
//! one step per command, in that order only.
//! Anyone ([`Canceller`]) may cancel it up to and including `Confirmed`; once shipped,
//! getting money back goes through delivery and a refund instead.
//! `Refunded` follows either `Delivered`, or `Cancelled` when a payment had been
//! authorised before the cancellation; an order is refunded once, fully or in part.
//!
//! Prices are facts from the catalog that travel in `PlaceOrder`; the order computes
//! and records its totals with checked arithmetic.
//! `PlaceOrder` also carries the [`PaymentMethod`], recorded in `OrderPlaced` so that
//! the saga can authorise the payment from the order alone.

mod command;
mod error;
mod event;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use command::{Canceller, OrderCommand, OrderLine, ShippingAddress};
pub use error::OrderError;
pub use event::OrderEvent;

use crate::ids::{CustomerId, OrderId, PaymentId};
use crate::money::{Currency, Money};
use crate::payment::PaymentMethod;
use crate::text::required;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Placed by the customer; nothing reserved or paid yet.
    Placed,
    /// Stock is held for every line.
    StockReserved,
    /// The payment is authorised.
    PaymentAuthorised,
    /// Confirmed to the customer; waiting to ship.
    Confirmed,
    /// On its way.
    Shipped,
    /// Received by the customer.
    Delivered,
    /// Cancelled before shipping.
    Cancelled,
    /// Money went back to the customer.
    Refunded,
}

impl OrderStatus {
    /// The status as a snake_case word, such as `stock_reserved`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::StockReserved => "stock_reserved",
            OrderStatus::PaymentAuthorised => "payment_authorised",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of an order, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    placed: Option<Placed>,
}

/// The state of an order that was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Placed {
    id: OrderId,
    customer_id: CustomerId,
    lines: Vec<OrderLine>,
    currency: Currency,
    subtotal: Money,
    total: Money,
    /// `None` only for orders placed before the method was recorded.
    #[serde(default)]
    payment_method: Option<PaymentMethod>,
    #[serde(default)]
    shipping_address: Option<ShippingAddress>,
    placed_at: DateTime<Utc>,
    status: OrderStatus,
    payment_id: Option<PaymentId>,
    refunded: Option<Money>,
}

impl Order {
    /// The order id, once placed.
    pub fn id(&self) -> Option<OrderId> {
        self.placed.as_ref().map(|o| o.id)
    }

    /// Who ordered, once placed.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.placed.as_ref().map(|o| o.customer_id)
    }

    /// The current status; `None` until placed.
    pub fn status(&self) -> Option<OrderStatus> {
        self.placed.as_ref().map(|o| o.status)
    }

    /// The lines; empty until placed.
    pub fn lines(&self) -> &[OrderLine] {
        self.placed.as_ref().map_or(&[], |o| o.lines.as_slice())
    }

    /// The order's currency, once placed.
    pub fn currency(&self) -> Option<Currency> {
        self.placed.as_ref().map(|o| o.currency)
    }

    /// The sum of the line totals, once placed.
    pub fn subtotal(&self) -> Option<Money> {
        self.placed.as_ref().map(|o| o.subtotal)
    }

    /// What the customer pays, once placed.
    pub fn total(&self) -> Option<Money> {
        self.placed.as_ref().map(|o| o.total)
    }

    /// How the customer pays, once placed; `None` also for orders placed before the
    /// method was recorded.
    pub fn payment_method(&self) -> Option<&PaymentMethod> {
        self.placed.as_ref().and_then(|o| o.payment_method.as_ref())
    }

    /// Where the order goes, when it was recorded.
    pub fn shipping_address(&self) -> Option<&ShippingAddress> {
        self.placed
            .as_ref()
            .and_then(|o| o.shipping_address.as_ref())
    }

    /// When the customer placed the order.
    pub fn placed_at(&self) -> Option<DateTime<Utc>> {
        self.placed.as_ref().map(|o| o.placed_at)
    }

    /// The authorised payment, once recorded.
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.placed.as_ref().and_then(|o| o.payment_id)
    }

    /// The refunded amount, once refunded.
    pub fn refunded(&self) -> Option<Money> {
        self.placed.as_ref().and_then(|o| o.refunded)
    }

    /// Decides which events a command causes, without changing the state.
    ///
    /// # Errors
    /// The [`OrderError`] naming the broken rule; a rejected command has no events.
    pub fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let Some(order) = &self.placed else {
            return match command {
                OrderCommand::PlaceOrder {
                    order_id,
                    customer_id,
                    lines,
                    currency,
                    payment_method,
                    shipping_address,
                    placed_at,
                } => place(
                    order_id,
                    customer_id,
                    lines,
                    currency,
                    payment_method,
                    shipping_address,
                    placed_at,
                ),
                _ => Err(OrderError::NotPlaced),
            };
        };
        let order_id = order.id;
        match command {
            OrderCommand::PlaceOrder { .. } => Err(OrderError::AlreadyPlaced),
            OrderCommand::MarkStockReserved => {
                order.advance(OrderStatus::Placed, OrderStatus::StockReserved)?;
                Ok(vec![OrderEvent::OrderStockReserved { order_id }])
            }
            OrderCommand::MarkPaymentAuthorised { payment_id } => {
                order.advance(OrderStatus::StockReserved, OrderStatus::PaymentAuthorised)?;
                Ok(vec![OrderEvent::OrderPaymentAuthorised {
                    order_id,
                    payment_id,
                }])
            }
            OrderCommand::ConfirmOrder => {
                order.advance(OrderStatus::PaymentAuthorised, OrderStatus::Confirmed)?;
                Ok(vec![OrderEvent::OrderConfirmed { order_id }])
            }
            OrderCommand::ConfirmPaidOrder { payment_id } => match order.status {
                OrderStatus::StockReserved => Ok(vec![
                    OrderEvent::OrderPaymentAuthorised {
                        order_id,
                        payment_id,
                    },
                    OrderEvent::OrderConfirmed { order_id },
                ]),
                OrderStatus::PaymentAuthorised if order.payment_id == Some(payment_id) => {
                    Ok(vec![OrderEvent::OrderConfirmed { order_id }])
                }
                OrderStatus::PaymentAuthorised => Err(OrderError::OtherPayment),
                OrderStatus::Cancelled => Err(OrderError::AlreadyCancelled),
                from => Err(OrderError::InvalidTransition {
                    from,
                    to: OrderStatus::Confirmed,
                }),
            },
            OrderCommand::ShipOrder { carrier, tracking } => {
                let carrier = required(&carrier, OrderError::EmptyCarrier)?;
                let tracking = required(&tracking, OrderError::EmptyTracking)?;
                order.advance(OrderStatus::Confirmed, OrderStatus::Shipped)?;
                Ok(vec![OrderEvent::OrderShipped {
                    order_id,
                    carrier,
                    tracking,
                }])
            }
            OrderCommand::MarkDelivered => {
                order.advance(OrderStatus::Shipped, OrderStatus::Delivered)?;
                Ok(vec![OrderEvent::OrderDelivered { order_id }])
            }
            OrderCommand::CancelOrder { reason, by } => {
                let reason = required(&reason, OrderError::EmptyReason)?;
                // The same rule holds for every canceller: a customer, the system and an
                // admin alike may cancel only before the parcel ships.
                match order.status {
                    OrderStatus::Placed
                    | OrderStatus::StockReserved
                    | OrderStatus::PaymentAuthorised
                    | OrderStatus::Confirmed => {}
                    OrderStatus::Shipped | OrderStatus::Delivered => {
                        return Err(OrderError::AlreadyShipped)
                    }
                    OrderStatus::Cancelled => return Err(OrderError::AlreadyCancelled),
                    OrderStatus::Refunded => {
                        return Err(OrderError::InvalidTransition {
                            from: OrderStatus::Refunded,
                            to: OrderStatus::Cancelled,
                        })
                    }
                }
                Ok(vec![OrderEvent::OrderCancelled {
                    order_id,
                    reason,
                    by,
                }])
            }
            OrderCommand::MarkRefunded { amount, reason } => {
                let reason = required(&reason, OrderError::EmptyReason)?;
                if amount.currency != order.currency {
                    return Err(OrderError::CurrencyMismatch {
                        expected: order.currency,
                        found: amount.currency,
                    });
                }
                if !amount.is_positive() {
                    return Err(OrderError::NonPositiveRefund);
                }
                match order.status {
                    OrderStatus::Delivered => {}
                    OrderStatus::Cancelled if order.payment_id.is_some() => {}
                    OrderStatus::Cancelled => return Err(OrderError::NotPaid),
                    OrderStatus::Refunded => return Err(OrderError::AlreadyRefunded),
                    from => {
                        return Err(OrderError::InvalidTransition {
                            from,
                            to: OrderStatus::Refunded,
                        })
                    }
                }
                if amount.amount_minor > order.total.amount_minor {
                    return Err(OrderError::RefundExceedsTotal {
                        requested: amount,
                        total: order.total,
                    });
                }
                Ok(vec![OrderEvent::OrderRefunded {
                    order_id,
                    amount,
                    reason,
                }])
            }
        }
    }
}

impl Placed {
    /// Checks one forward step of the status machine.
    fn advance(&self, required: OrderStatus, to: OrderStatus) -> Result<(), OrderError> {
        match self.status {
            from if from == required => Ok(()),
            OrderStatus::Cancelled => Err(OrderError::AlreadyCancelled),
            from => Err(OrderError::InvalidTransition { from, to }),
        }
    }
}

fn place(
    order_id: OrderId,
    customer_id: CustomerId,
    lines: Vec<OrderLine>,
    currency: Currency,
    payment_method: PaymentMethod,
    shipping_address: Option<ShippingAddress>,
    placed_at: DateTime<Utc>,
) -> Result<Vec<OrderEvent>, OrderError> {
    if lines.is_empty() {
        return Err(OrderError::NoLines);
    }
    let mut seen = BTreeSet::new();
    let mut subtotal = Money::zero(currency);
    for line in &lines {
        if line.quantity == 0 {
            return Err(OrderError::ZeroQuantity {
                sku: line.sku.clone(),
            });
        }
        if line.unit_price.currency != currency {
            return Err(OrderError::CurrencyMismatch {
                expected: currency,
                found: line.unit_price.currency,
            });
        }
        if !line.unit_price.is_positive() {
            return Err(OrderError::NonPositivePrice {
                sku: line.sku.clone(),
            });
        }
        if !seen.insert(&line.sku) {
            return Err(OrderError::DuplicateSku {
                sku: line.sku.clone(),
            });
        }
        subtotal = line
            .line_total()
            .and_then(|line_total| subtotal.checked_add(line_total))
            .map_err(|_| OrderError::AmountOverflow)?;
    }
    let payment_method = match payment_method {
        PaymentMethod::Card { token } => PaymentMethod::Card {
            token: required(&token, OrderError::MissingPaymentToken)?,
        },
    };
    Ok(vec![OrderEvent::OrderPlaced {
        order_id,
        customer_id,
        lines,
        currency,
        subtotal,
        total: subtotal,
        payment_method: Some(payment_method),
        shipping_address: shipping_address.map(checked_address).transpose()?,
        placed_at,
    }])
}

/// An address with its required fields present (trimmed) and an ISO country code.
fn checked_address(address: ShippingAddress) -> Result<ShippingAddress, OrderError> {
    let field = |value: &str, name: &'static str| {
        required(value, OrderError::IncompleteAddress { field: name })
    };
    let country_code = address.country_code.trim().to_ascii_uppercase();
    if country_code.len() != 2 || !country_code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(OrderError::IncompleteAddress {
            field: "country_code",
        });
    }
    Ok(ShippingAddress {
        name: field(&address.name, "name")?,
        line1: field(&address.line1, "line1")?,
        line2: address.line2.trim().to_owned(),
        city: field(&address.city, "city")?,
        postal_code: field(&address.postal_code, "postal_code")?,
        country_code,
    })
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrderCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrderError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: OrderEvent) {
        if let OrderEvent::OrderPlaced {
            order_id,
            customer_id,
            lines,
            currency,
            subtotal,
            total,
            payment_method,
            shipping_address,
            placed_at,
        } = event
        {
            self.placed = Some(Placed {
                id: order_id,
                customer_id,
                lines,
                currency,
                subtotal,
                total,
                payment_method,
                shipping_address,
                placed_at,
                status: OrderStatus::Placed,
                payment_id: None,
                refunded: None,
            });
            return;
        }
        // Every other event follows placement; one without it changes nothing.
        let Some(order) = self.placed.as_mut() else {
            return;
        };
        order.status = match event {
            OrderEvent::OrderPlaced { .. } => order.status,
            OrderEvent::OrderStockReserved { .. } => OrderStatus::StockReserved,
            OrderEvent::OrderPaymentAuthorised { payment_id, .. } => {
                order.payment_id = Some(payment_id);
                OrderStatus::PaymentAuthorised
            }
            OrderEvent::OrderConfirmed { .. } => OrderStatus::Confirmed,
            OrderEvent::OrderShipped { .. } => OrderStatus::Shipped,
            OrderEvent::OrderDelivered { .. } => OrderStatus::Delivered,
            OrderEvent::OrderCancelled { .. } => OrderStatus::Cancelled,
            OrderEvent::OrderRefunded { amount, .. } => {
                order.refunded = Some(amount);
                OrderStatus::Refunded
            }
        };
    }
}

/// Upcasters for stored order events; no order event has changed shape yet.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

#[cfg(test)]
mod tests;
