//! The public code of each broken rule: part of the API's contract, so written out per
//! variant (never derived from a Rust name, which a rename would change).

/// An error whose code a client sees (GraphQL `userErrors { code }`).
pub trait ErrorCode {
    /// The code, in UPPER_SNAKE_CASE; it never changes once published.
    fn code(&self) -> &'static str;
}

impl ErrorCode for crate::order::OrderError {
    fn code(&self) -> &'static str {
        use crate::order::OrderError as E;
        match self {
            E::NotPlaced => "NOT_PLACED",
            E::AlreadyPlaced => "ALREADY_PLACED",
            E::NoLines => "NO_LINES",
            E::ZeroQuantity { .. } => "ZERO_QUANTITY",
            E::NonPositivePrice { .. } => "NON_POSITIVE_PRICE",
            E::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            E::DuplicateSku { .. } => "DUPLICATE_SKU",
            E::MissingPaymentToken => "MISSING_PAYMENT_TOKEN",
            E::IncompleteAddress { .. } => "INCOMPLETE_ADDRESS",
            E::AmountOverflow => "AMOUNT_OVERFLOW",
            E::EmptyCarrier => "EMPTY_CARRIER",
            E::EmptyTracking => "EMPTY_TRACKING",
            E::EmptyReason => "EMPTY_REASON",
            E::InvalidTransition { .. } => "INVALID_TRANSITION",
            E::AlreadyShipped => "ALREADY_SHIPPED",
            E::AlreadyCancelled => "ALREADY_CANCELLED",
            E::OtherPayment => "OTHER_PAYMENT",
            E::AlreadyRefunded => "ALREADY_REFUNDED",
            E::NotPaid => "NOT_PAID",
            E::NonPositiveRefund => "NON_POSITIVE_REFUND",
            E::RefundExceedsTotal { .. } => "REFUND_EXCEEDS_TOTAL",
        }
    }
}

impl ErrorCode for crate::payment::PaymentError {
    fn code(&self) -> &'static str {
        use crate::payment::PaymentError as E;
        match self {
            E::NotFound => "NOT_FOUND",
            E::AlreadyAuthorised => "ALREADY_AUTHORISED",
            E::AlreadyDeclined => "ALREADY_DECLINED",
            E::AlreadyCaptured => "ALREADY_CAPTURED",
            E::AlreadyVoided => "ALREADY_VOIDED",
            E::NotCaptured => "NOT_CAPTURED",
            E::NonPositiveAmount => "NON_POSITIVE_AMOUNT",
            E::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            E::EmptyProviderReference => "EMPTY_PROVIDER_REFERENCE",
            E::EmptyCardToken => "EMPTY_CARD_TOKEN",
            E::EmptyReason => "EMPTY_REASON",
            E::CaptureExceedsAuthorised { .. } => "CAPTURE_EXCEEDS_AUTHORISED",
            E::RefundExceedsCaptured { .. } => "REFUND_EXCEEDS_CAPTURED",
        }
    }
}

impl ErrorCode for crate::inventory::InventoryError {
    fn code(&self) -> &'static str {
        use crate::inventory::InventoryError as E;
        match self {
            E::SkuMismatch { .. } => "SKU_MISMATCH",
            E::ZeroQuantity => "ZERO_QUANTITY",
            E::EmptyReference => "EMPTY_REFERENCE",
            E::ZeroDelta => "ZERO_DELTA",
            E::MissingReason => "MISSING_REASON",
            E::NegativeStock { .. } => "NEGATIVE_STOCK",
            E::BelowReserved { .. } => "BELOW_RESERVED",
            E::Overflow => "OVERFLOW",
            E::InsufficientStock { .. } => "INSUFFICIENT_STOCK",
            E::ReservationEnded { .. } => "RESERVATION_ENDED",
            E::NoReservation { .. } => "NO_RESERVATION",
            E::NotCommitted { .. } => "NOT_COMMITTED",
        }
    }
}

impl ErrorCode for crate::product::ProductError {
    fn code(&self) -> &'static str {
        use crate::product::ProductError as E;
        match self {
            E::NotFound => "NOT_FOUND",
            E::AlreadyExists => "ALREADY_EXISTS",
            E::EmptyName => "EMPTY_NAME",
            E::EmptyCategory => "EMPTY_CATEGORY",
            E::NoVariants => "NO_VARIANTS",
            E::EmptyVariantName { .. } => "EMPTY_VARIANT_NAME",
            E::NonPositivePrice { .. } => "NON_POSITIVE_PRICE",
            E::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            E::DuplicateSku { .. } => "DUPLICATE_SKU",
            E::UnknownVariant { .. } => "UNKNOWN_VARIANT",
            E::VariantRetired { .. } => "VARIANT_RETIRED",
            E::LastActiveVariant { .. } => "LAST_ACTIVE_VARIANT",
            E::NoActiveVariant => "NO_ACTIVE_VARIANT",
        }
    }
}

impl ErrorCode for crate::saga::SagaError {
    fn code(&self) -> &'static str {
        use crate::saga::SagaError as E;
        match self {
            E::NotStarted => "NOT_STARTED",
            E::NoLines => "NO_LINES",
            E::NonPositiveAmount => "NON_POSITIVE_AMOUNT",
            E::MissingCardToken => "MISSING_CARD_TOKEN",
            E::MissingReference => "MISSING_REFERENCE",
            E::MissingReason => "MISSING_REASON",
            E::InterventionNotAllowed { .. } => "INTERVENTION_NOT_ALLOWED",
        }
    }
}
