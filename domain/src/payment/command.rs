//! What callers may ask of a payment.

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, PaymentId, RefundId};
use crate::money::Money;

/// How the customer pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentMethod {
    /// A card, known to us only by the provider's token.
    Card {
        /// The provider's card token; not blank.
        token: String,
    },
}

/// A command to the payment aggregate.
///
/// A payment starts with the provider's answer: `AuthorisePayment` when it authorised
/// the amount, `DeclinePayment` when it refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentCommand {
    /// Records that the provider authorised an amount.
    AuthorisePayment {
        /// The new payment's id.
        payment_id: PaymentId,
        /// The order being paid.
        order_id: OrderId,
        /// The authorised amount; positive.
        amount: Money,
        /// How the customer pays.
        method: PaymentMethod,
        /// The provider's id for the authorisation; not blank.
        provider_reference: String,
    },
    /// Records that the provider refused to authorise an amount.
    DeclinePayment {
        /// The new payment's id.
        payment_id: PaymentId,
        /// The order being paid.
        order_id: OrderId,
        /// The amount asked for; positive.
        amount: Money,
        /// The provider's reason; not blank.
        reason: String,
    },
    /// Takes the money, up to the authorised amount, once.
    CapturePayment {
        /// How much; positive, at most the authorised amount.
        amount: Money,
    },
    /// Cancels an authorisation that was not captured.
    VoidPayment,
    /// Gives captured money back, in full or in part.
    RefundPayment {
        /// The refund's id; repeating it has no further effect.
        refund_id: RefundId,
        /// How much; positive, at most what is captured and not yet refunded.
        amount: Money,
        /// Why; not blank.
        reason: String,
    },
}
