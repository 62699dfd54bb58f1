//! Why a payment command was rejected.

use crate::error_code::ErrorCode;
use crate::money::{Currency, Money};

/// A broken payment rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The command needs a payment, and this one was never authorised or declined.
    #[error("payment not found")]
    NotFound,
    /// The payment was already authorised.
    #[error("the payment was already authorised")]
    AlreadyAuthorised,
    /// The payment was declined, so nothing more can happen to it.
    #[error("the payment was declined")]
    AlreadyDeclined,
    /// The payment was already captured.
    #[error("the payment was already captured")]
    AlreadyCaptured,
    /// The payment was voided, so nothing more can happen to it.
    #[error("the payment was voided")]
    AlreadyVoided,
    /// A refund needs captured money.
    #[error("the payment was not captured")]
    NotCaptured,
    /// An amount is zero or negative.
    #[error("the amount must be positive")]
    NonPositiveAmount,
    /// An amount is not in the payment's currency.
    #[error("the payment is in {expected}, not {found}")]
    CurrencyMismatch {
        /// The payment's currency.
        expected: Currency,
        /// The currency given.
        found: Currency,
    },
    /// The provider reference is blank.
    #[error("a provider reference is required")]
    EmptyProviderReference,
    /// The card token is blank.
    #[error("a card token is required")]
    EmptyCardToken,
    /// A decline or refund has no reason.
    #[error("a reason is required")]
    EmptyReason,
    /// A capture is larger than the authorised amount.
    #[error("cannot capture {requested} of {authorised} authorised")]
    CaptureExceedsAuthorised {
        /// The capture asked for.
        requested: Money,
        /// The authorised amount.
        authorised: Money,
    },
    /// A refund is larger than what is captured and not yet refunded.
    #[error("cannot refund {requested}, only {refundable} is refundable")]
    RefundExceedsCaptured {
        /// The refund asked for.
        requested: Money,
        /// Captured minus already refunded.
        refundable: Money,
    },
}

impl ErrorCode for PaymentError {
    fn code(&self) -> &'static str {
        match self {
            PaymentError::NotFound => "NOT_FOUND",
            PaymentError::AlreadyAuthorised => "ALREADY_AUTHORISED",
            PaymentError::AlreadyDeclined => "ALREADY_DECLINED",
            PaymentError::AlreadyCaptured => "ALREADY_CAPTURED",
            PaymentError::AlreadyVoided => "ALREADY_VOIDED",
            PaymentError::NotCaptured => "NOT_CAPTURED",
            PaymentError::NonPositiveAmount => "NON_POSITIVE_AMOUNT",
            PaymentError::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            PaymentError::EmptyProviderReference => "EMPTY_PROVIDER_REFERENCE",
            PaymentError::EmptyCardToken => "EMPTY_CARD_TOKEN",
            PaymentError::EmptyReason => "EMPTY_REASON",
            PaymentError::CaptureExceedsAuthorised { .. } => "CAPTURE_EXCEEDS_AUTHORISED",
            PaymentError::RefundExceedsCaptured { .. } => "REFUND_EXCEEDS_CAPTURED",
        }
    }
}
