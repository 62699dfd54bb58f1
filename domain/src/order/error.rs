//! Why an order command was rejected.

use super::OrderStatus;
use crate::error_code::ErrorCode;
use crate::ids::Sku;
use crate::money::{Currency, Money};

/// A broken order rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The command needs an order, and this one was never placed.
    #[error("order not placed")]
    NotPlaced,
    /// `PlaceOrder` was sent to an order that exists.
    #[error("order already placed")]
    AlreadyPlaced,
    /// The order has no lines.
    #[error("an order needs at least one line")]
    NoLines,
    /// A line orders zero units.
    #[error("line {sku} orders no units")]
    ZeroQuantity {
        /// The line's SKU.
        sku: Sku,
    },
    /// A unit price is zero or negative.
    #[error("line {sku} needs a positive unit price")]
    NonPositivePrice {
        /// The line's SKU.
        sku: Sku,
    },
    /// An amount is not in the order's currency.
    #[error("the order is in {expected}, not {found}")]
    CurrencyMismatch {
        /// The order's currency.
        expected: Currency,
        /// The currency given.
        found: Currency,
    },
    /// A SKU appears on two lines.
    #[error("SKU {sku} appears on more than one line")]
    DuplicateSku {
        /// The repeated SKU.
        sku: Sku,
    },
    /// The order's card has a blank token, so the payment could not be authorised.
    #[error("a card payment needs a token")]
    MissingPaymentToken,
    /// A shipping address lacks a required field, or its country is not an ISO code.
    #[error("the shipping address needs a valid {field}")]
    IncompleteAddress {
        /// The field at fault.
        field: &'static str,
    },
    /// The totals do not fit in the money type.
    #[error("order total overflow")]
    AmountOverflow,
    /// A shipment has no carrier.
    #[error("a shipment needs a carrier")]
    EmptyCarrier,
    /// A shipment has no tracking number.
    #[error("a shipment needs a tracking number")]
    EmptyTracking,
    /// A cancellation or refund has no reason.
    #[error("a reason is required")]
    EmptyReason,
    /// The order cannot move from its status to the requested one.
    #[error("an order cannot go from {from} to {to}")]
    InvalidTransition {
        /// The current status.
        from: OrderStatus,
        /// The requested status.
        to: OrderStatus,
    },
    /// The order has shipped, so it can no longer be cancelled.
    #[error("the order has already shipped")]
    AlreadyShipped,
    /// The order was cancelled.
    #[error("the order was cancelled")]
    AlreadyCancelled,
    /// The order was authorised with another payment than the one confirming it.
    #[error("the order is paid by another payment")]
    OtherPayment,
    /// The order was refunded.
    #[error("the order was already refunded")]
    AlreadyRefunded,
    /// The order was cancelled before any payment, so there is nothing to refund.
    #[error("the order was never paid")]
    NotPaid,
    /// A refund amount is zero or negative.
    #[error("a refund must be positive")]
    NonPositiveRefund,
    /// A refund is larger than the order total.
    #[error("cannot refund {requested} of an order totalling {total}")]
    RefundExceedsTotal {
        /// The refund asked for.
        requested: Money,
        /// The order total.
        total: Money,
    },
}

impl ErrorCode for OrderError {
    fn code(&self) -> &'static str {
        match self {
            OrderError::NotPlaced => "NOT_PLACED",
            OrderError::AlreadyPlaced => "ALREADY_PLACED",
            OrderError::NoLines => "NO_LINES",
            OrderError::ZeroQuantity { .. } => "ZERO_QUANTITY",
            OrderError::NonPositivePrice { .. } => "NON_POSITIVE_PRICE",
            OrderError::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            OrderError::DuplicateSku { .. } => "DUPLICATE_SKU",
            OrderError::MissingPaymentToken => "MISSING_PAYMENT_TOKEN",
            OrderError::IncompleteAddress { .. } => "INCOMPLETE_ADDRESS",
            OrderError::AmountOverflow => "AMOUNT_OVERFLOW",
            OrderError::EmptyCarrier => "EMPTY_CARRIER",
            OrderError::EmptyTracking => "EMPTY_TRACKING",
            OrderError::EmptyReason => "EMPTY_REASON",
            OrderError::InvalidTransition { .. } => "INVALID_TRANSITION",
            OrderError::AlreadyShipped => "ALREADY_SHIPPED",
            OrderError::AlreadyCancelled => "ALREADY_CANCELLED",
            OrderError::OtherPayment => "OTHER_PAYMENT",
            OrderError::AlreadyRefunded => "ALREADY_REFUNDED",
            OrderError::NotPaid => "NOT_PAID",
            OrderError::NonPositiveRefund => "NON_POSITIVE_REFUND",
            OrderError::RefundExceedsTotal { .. } => "REFUND_EXCEEDS_TOTAL",
        }
    }
}
