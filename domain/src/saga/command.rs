//! What the saga driver and operators may record on a saga.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SagaLine;
use crate::ids::{CustomerId, OrderId, PaymentId};
use crate::money::Money;
use crate::order::Canceller;

/// The facts a saga starts from, read from the placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaStart {
    /// The order.
    pub order_id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// What to reserve; at least one line.
    pub lines: Vec<SagaLine>,
    /// What to charge; positive.
    pub amount: Money,
    /// The provider's card token; not blank.
    pub card_token: String,
    /// The payment aggregate to record provider outcomes on.
    pub payment_id: PaymentId,
    /// The stream position of the order event that starts the saga; its holder drives.
    pub trigger_position: u64,
    /// When reserving stock gives up.
    pub deadline_at: DateTime<Utc>,
}

/// What an operator does to a saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperatorAction {
    /// Takes over a running saga whose driver seems gone, and drives it on.
    Resume,
    /// Runs a failed compensation again.
    Retry,
    /// Abandons the order: compensates whatever was done.
    Compensate,
}

impl OperatorAction {
    /// The action as a word, such as `compensate`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OperatorAction::Resume => "resume",
            OperatorAction::Retry => "retry",
            OperatorAction::Compensate => "compensate",
        }
    }
}

impl std::fmt::Display for OperatorAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command to the saga aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaCommand {
    /// Starts the saga; starting again changes nothing.
    Start(SagaStart),
    /// Every line is reserved and the order says so; payment may start.
    RecordStockReserved {
        /// When authorising gives up.
        deadline_at: DateTime<Utc>,
    },
    /// The provider authorised the payment and the order says so.
    RecordPaymentAuthorised {
        /// The provider's reference; not blank.
        provider_reference: String,
        /// When completing gives up.
        deadline_at: DateTime<Utc>,
    },
    /// Captured, committed and confirmed.
    RecordCompleted,
    /// A forward step failed for good; compensation follows.
    RecordStepFailed {
        /// Which step.
        step: super::FailedStep,
        /// Why; not blank.
        reason: String,
    },
    /// The customer or an admin cancelled the order.
    NoteCancellation {
        /// Who cancelled.
        by: Canceller,
        /// Why; not blank.
        reason: String,
        /// The stream position of the cancellation event.
        trigger_position: u64,
    },
    /// Every compensation step succeeded.
    RecordCompensated,
    /// A compensation step kept failing.
    RecordCompensationFailed {
        /// Which step, such as `refund`.
        step: String,
        /// Its last error.
        error: String,
        /// How often it was tried.
        attempts: u32,
    },
    /// An operator acts on the saga.
    Intervene {
        /// What they do.
        action: OperatorAction,
        /// Who, as `user:<uuid>` or a name.
        actor: String,
        /// Why; not blank.
        reason: String,
    },
}
