//! What happened to an order's saga.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{OperatorAction, SagaLine};
use crate::ids::{CustomerId, OrderId, PaymentId};
use crate::money::Money;
use crate::order::Canceller;

/// A forward step that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailedStep {
    /// Reserving stock.
    Reserve,
    /// Authorising the payment.
    Authorise,
    /// Capturing, committing stock and confirming.
    Complete,
}

impl FailedStep {
    /// The step as a word.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailedStep::Reserve => "reserve",
            FailedStep::Authorise => "authorise",
            FailedStep::Complete => "complete",
        }
    }
}

/// An event of the saga aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SagaEvent {
    /// The saga took charge of a placed order; reserving stock starts.
    SagaStarted {
        /// The order.
        order_id: OrderId,
        /// Who ordered.
        customer_id: CustomerId,
        /// What to reserve.
        lines: Vec<SagaLine>,
        /// What to charge.
        amount: Money,
        /// The provider's card token.
        card_token: String,
        /// The payment aggregate.
        payment_id: PaymentId,
        /// The order event whose holder drives the saga.
        trigger_position: u64,
        /// When reserving gives up.
        deadline_at: DateTime<Utc>,
    },
    /// Every line is reserved; authorising starts.
    StockReserved {
        /// When authorising gives up.
        deadline_at: DateTime<Utc>,
    },
    /// The payment is authorised; completing starts.
    PaymentAuthorised {
        /// The provider's reference.
        provider_reference: String,
        /// When completing gives up.
        deadline_at: DateTime<Utc>,
    },
    /// Captured, committed, confirmed.
    SagaCompleted,
    /// A forward step failed for good; compensating starts.
    StepFailed {
        /// Which step.
        step: FailedStep,
        /// Why.
        reason: String,
    },
    /// The customer or an admin cancelled the order.
    CancellationNoticed {
        /// Who cancelled.
        by: Canceller,
        /// Why.
        reason: String,
        /// The cancellation event's position.
        trigger_position: u64,
        /// True when the saga was at rest and the noticing trigger drives from now on.
        takes_over: bool,
    },
    /// Everything was undone; the order is cancelled.
    SagaCompensated,
    /// A compensation step kept failing; parked for an operator.
    CompensationFailed {
        /// Which step.
        step: String,
        /// Its last error.
        error: String,
        /// How often it was tried.
        attempts: u32,
    },
    /// An operator acted on the saga.
    OperatorIntervened {
        /// What they did.
        action: OperatorAction,
        /// Who.
        actor: String,
        /// Why.
        reason: String,
    },
}

impl SagaEvent {
    /// What replaces a card token in views of the saga (read model, operator tools).
    pub const WITHHELD: &'static str = "withheld";

    /// The event with its card token (if it has one) replaced by [`Self::WITHHELD`]: the
    /// token stays with the provider and the log, out of operators' and auditors' views.
    pub fn without_card_token(self) -> Self {
        match self {
            SagaEvent::SagaStarted {
                order_id,
                customer_id,
                lines,
                amount,
                card_token: _,
                payment_id,
                trigger_position,
                deadline_at,
            } => SagaEvent::SagaStarted {
                order_id,
                customer_id,
                lines,
                amount,
                card_token: Self::WITHHELD.to_owned(),
                payment_id,
                trigger_position,
                deadline_at,
            },
            event => event,
        }
    }
}

impl DomainEvent for SagaEvent {
    fn event_type(&self) -> String {
        let name = match self {
            SagaEvent::SagaStarted { .. } => "SagaStarted",
            SagaEvent::StockReserved { .. } => "SagaStockReserved",
            SagaEvent::PaymentAuthorised { .. } => "SagaPaymentAuthorised",
            SagaEvent::SagaCompleted => "SagaCompleted",
            SagaEvent::StepFailed { .. } => "SagaStepFailed",
            SagaEvent::CancellationNoticed { .. } => "SagaCancellationNoticed",
            SagaEvent::SagaCompensated => "SagaCompensated",
            SagaEvent::CompensationFailed { .. } => "SagaCompensationFailed",
            SagaEvent::OperatorIntervened { .. } => "SagaOperatorIntervened",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
