//! Why the saga refused to record something.

use super::OperatorAction;
use crate::error_code::ErrorCode;

/// A broken saga rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SagaError {
    /// Only `Start` is possible before the saga starts.
    #[error("the saga has not started")]
    NotStarted,
    /// A saga needs at least one line.
    #[error("a saga needs at least one order line")]
    NoLines,
    /// The amount to charge must be positive.
    #[error("the amount to charge must be positive")]
    NonPositiveAmount,
    /// The order carries no card token.
    #[error("the order carries no card token")]
    MissingCardToken,
    /// The provider's reference is blank.
    #[error("the provider reference must not be blank")]
    MissingReference,
    /// A reason is required.
    #[error("a reason is required")]
    MissingReason,
    /// The operator action does not fit the saga's phase.
    #[error("cannot {action} a saga that is {phase}")]
    InterventionNotAllowed {
        /// The refused action.
        action: OperatorAction,
        /// The saga's phase.
        phase: &'static str,
    },
}

impl ErrorCode for SagaError {
    fn code(&self) -> &'static str {
        match self {
            SagaError::NotStarted => "NOT_STARTED",
            SagaError::NoLines => "NO_LINES",
            SagaError::NonPositiveAmount => "NON_POSITIVE_AMOUNT",
            SagaError::MissingCardToken => "MISSING_CARD_TOKEN",
            SagaError::MissingReference => "MISSING_REFERENCE",
            SagaError::MissingReason => "MISSING_REASON",
            SagaError::InterventionNotAllowed { .. } => "INTERVENTION_NOT_ALLOWED",
        }
    }
}
