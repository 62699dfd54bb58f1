//! What happened to a payment.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::PaymentMethod;
use crate::ids::{OrderId, PaymentId, RefundId};
use crate::money::Money;

/// An event of the payment aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    /// The provider authorised the amount.
    PaymentAuthorised {
        /// The payment.
        payment_id: PaymentId,
        /// The order being paid.
        order_id: OrderId,
        /// The authorised amount.
        amount: Money,
        /// How the customer pays.
        method: PaymentMethod,
        /// The provider's id for the authorisation.
        provider_reference: String,
    },
    /// The provider refused to authorise the amount.
    PaymentDeclined {
        /// The payment.
        payment_id: PaymentId,
        /// The order being paid.
        order_id: OrderId,
        /// The amount asked for.
        amount: Money,
        /// The provider's reason.
        reason: String,
    },
    /// The money was taken.
    PaymentCaptured {
        /// The payment.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
    },
    /// The authorisation was cancelled without taking money.
    PaymentVoided {
        /// The payment.
        payment_id: PaymentId,
    },
    /// Captured money went back to the customer.
    PaymentRefunded {
        /// The payment.
        payment_id: PaymentId,
        /// The refund.
        refund_id: RefundId,
        /// How much.
        amount: Money,
        /// Why.
        reason: String,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        let name = match self {
            PaymentEvent::PaymentAuthorised { .. } => "PaymentAuthorised",
            PaymentEvent::PaymentDeclined { .. } => "PaymentDeclined",
            PaymentEvent::PaymentCaptured { .. } => "PaymentCaptured",
            PaymentEvent::PaymentVoided { .. } => "PaymentVoided",
            PaymentEvent::PaymentRefunded { .. } => "PaymentRefunded",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
