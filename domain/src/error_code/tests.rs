//! Every code, written out: changing a published code must fail here first.

use std::collections::HashSet;

use uuid::Uuid;

use super::ErrorCode;
use crate::inventory::InventoryError;
use crate::order::{OrderError, OrderStatus};
use crate::payment::PaymentError;
use crate::product::ProductError;
use crate::saga::{OperatorAction, SagaError};
use crate::{Currency, Money, OrderId, Sku};

fn sku() -> Sku {
    Sku::parse("MUG-1").expect("a valid SKU")
}

fn euros(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::EUR)
}

fn order_id() -> OrderId {
    OrderId(Uuid::nil())
}

fn order_codes() -> Vec<(OrderError, &'static str)> {
    vec![
        (OrderError::NotPlaced, "NOT_PLACED"),
        (OrderError::AlreadyPlaced, "ALREADY_PLACED"),
        (OrderError::NoLines, "NO_LINES"),
        (OrderError::ZeroQuantity { sku: sku() }, "ZERO_QUANTITY"),
        (
            OrderError::NonPositivePrice { sku: sku() },
            "NON_POSITIVE_PRICE",
        ),
        (
            OrderError::CurrencyMismatch {
                expected: Currency::EUR,
                found: Currency::USD,
            },
            "CURRENCY_MISMATCH",
        ),
        (OrderError::DuplicateSku { sku: sku() }, "DUPLICATE_SKU"),
        (OrderError::MissingPaymentToken, "MISSING_PAYMENT_TOKEN"),
        (
            OrderError::IncompleteAddress { field: "country" },
            "INCOMPLETE_ADDRESS",
        ),
        (OrderError::AmountOverflow, "AMOUNT_OVERFLOW"),
        (OrderError::EmptyCarrier, "EMPTY_CARRIER"),
        (OrderError::EmptyTracking, "EMPTY_TRACKING"),
        (OrderError::EmptyReason, "EMPTY_REASON"),
        (
            OrderError::InvalidTransition {
                from: OrderStatus::Placed,
                to: OrderStatus::Shipped,
            },
            "INVALID_TRANSITION",
        ),
        (OrderError::AlreadyShipped, "ALREADY_SHIPPED"),
        (OrderError::AlreadyCancelled, "ALREADY_CANCELLED"),
        (OrderError::OtherPayment, "OTHER_PAYMENT"),
        (OrderError::AlreadyRefunded, "ALREADY_REFUNDED"),
        (OrderError::NotPaid, "NOT_PAID"),
        (OrderError::NonPositiveRefund, "NON_POSITIVE_REFUND"),
        (
            OrderError::RefundExceedsTotal {
                requested: euros(200),
                total: euros(100),
            },
            "REFUND_EXCEEDS_TOTAL",
        ),
    ]
}

fn payment_codes() -> Vec<(PaymentError, &'static str)> {
    vec![
        (PaymentError::NotFound, "NOT_FOUND"),
        (PaymentError::AlreadyAuthorised, "ALREADY_AUTHORISED"),
        (PaymentError::AlreadyDeclined, "ALREADY_DECLINED"),
        (PaymentError::AlreadyCaptured, "ALREADY_CAPTURED"),
        (PaymentError::AlreadyVoided, "ALREADY_VOIDED"),
        (PaymentError::NotCaptured, "NOT_CAPTURED"),
        (PaymentError::NonPositiveAmount, "NON_POSITIVE_AMOUNT"),
        (
            PaymentError::CurrencyMismatch {
                expected: Currency::EUR,
                found: Currency::USD,
            },
            "CURRENCY_MISMATCH",
        ),
        (
            PaymentError::EmptyProviderReference,
            "EMPTY_PROVIDER_REFERENCE",
        ),
        (PaymentError::EmptyCardToken, "EMPTY_CARD_TOKEN"),
        (PaymentError::EmptyReason, "EMPTY_REASON"),
        (
            PaymentError::CaptureExceedsAuthorised {
                requested: euros(200),
                authorised: euros(100),
            },
            "CAPTURE_EXCEEDS_AUTHORISED",
        ),
        (
            PaymentError::RefundExceedsCaptured {
                requested: euros(200),
                refundable: euros(100),
            },
            "REFUND_EXCEEDS_CAPTURED",
        ),
    ]
}

fn inventory_codes() -> Vec<(InventoryError, &'static str)> {
    vec![
        (
            InventoryError::SkuMismatch {
                expected: sku(),
                found: Sku::parse("MUG-2").expect("a valid SKU"),
            },
            "SKU_MISMATCH",
        ),
        (InventoryError::ZeroQuantity, "ZERO_QUANTITY"),
        (InventoryError::EmptyReference, "EMPTY_REFERENCE"),
        (InventoryError::ZeroDelta, "ZERO_DELTA"),
        (InventoryError::MissingReason, "MISSING_REASON"),
        (
            InventoryError::NegativeStock {
                on_hand: 1,
                delta: -2,
            },
            "NEGATIVE_STOCK",
        ),
        (
            InventoryError::BelowReserved {
                reserved: 2,
                resulting: 1,
            },
            "BELOW_RESERVED",
        ),
        (InventoryError::Overflow, "OVERFLOW"),
        (
            InventoryError::InsufficientStock {
                requested: 2,
                available: 1,
            },
            "INSUFFICIENT_STOCK",
        ),
        (
            InventoryError::ReservationEnded {
                order_id: order_id(),
            },
            "RESERVATION_ENDED",
        ),
        (
            InventoryError::NoReservation {
                order_id: order_id(),
            },
            "NO_RESERVATION",
        ),
        (
            InventoryError::NotCommitted {
                order_id: order_id(),
            },
            "NOT_COMMITTED",
        ),
    ]
}

fn product_codes() -> Vec<(ProductError, &'static str)> {
    vec![
        (ProductError::NotFound, "NOT_FOUND"),
        (ProductError::AlreadyExists, "ALREADY_EXISTS"),
        (ProductError::EmptyName, "EMPTY_NAME"),
        (ProductError::EmptyCategory, "EMPTY_CATEGORY"),
        (ProductError::NoVariants, "NO_VARIANTS"),
        (
            ProductError::EmptyVariantName { sku: sku() },
            "EMPTY_VARIANT_NAME",
        ),
        (
            ProductError::NonPositivePrice { sku: sku() },
            "NON_POSITIVE_PRICE",
        ),
        (
            ProductError::CurrencyMismatch {
                expected: Currency::EUR,
                found: Currency::USD,
            },
            "CURRENCY_MISMATCH",
        ),
        (ProductError::DuplicateSku { sku: sku() }, "DUPLICATE_SKU"),
        (
            ProductError::UnknownVariant { sku: sku() },
            "UNKNOWN_VARIANT",
        ),
        (
            ProductError::VariantRetired { sku: sku() },
            "VARIANT_RETIRED",
        ),
        (
            ProductError::LastActiveVariant { sku: sku() },
            "LAST_ACTIVE_VARIANT",
        ),
        (ProductError::NoActiveVariant, "NO_ACTIVE_VARIANT"),
    ]
}

fn saga_codes() -> Vec<(SagaError, &'static str)> {
    vec![
        (SagaError::NotStarted, "NOT_STARTED"),
        (SagaError::NoLines, "NO_LINES"),
        (SagaError::NonPositiveAmount, "NON_POSITIVE_AMOUNT"),
        (SagaError::MissingCardToken, "MISSING_CARD_TOKEN"),
        (SagaError::MissingReference, "MISSING_REFERENCE"),
        (SagaError::MissingReason, "MISSING_REASON"),
        (
            SagaError::InterventionNotAllowed {
                action: OperatorAction::Retry,
                phase: "running",
            },
            "INTERVENTION_NOT_ALLOWED",
        ),
    ]
}

fn assert_codes<E: ErrorCode + std::fmt::Debug>(table: &[(E, &str)]) {
    for (error, code) in table {
        assert_eq!(error.code(), *code, "{error:?}");
    }
}

#[test]
fn order_errors_keep_their_codes() {
    assert_codes(&order_codes());
}

#[test]
fn payment_errors_keep_their_codes() {
    assert_codes(&payment_codes());
}

#[test]
fn inventory_errors_keep_their_codes() {
    assert_codes(&inventory_codes());
}

#[test]
fn product_errors_keep_their_codes() {
    assert_codes(&product_codes());
}

#[test]
fn saga_errors_keep_their_codes() {
    assert_codes(&saga_codes());
}

/// Upper-case ASCII words joined by single underscores, such as `ALREADY_SHIPPED`.
fn is_upper_snake_case(code: &str) -> bool {
    !code.is_empty()
        && code.split('_').all(|word| {
            word.starts_with(|c: char| c.is_ascii_uppercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
}

fn codes_of<E: ErrorCode>(table: &[(E, &str)]) -> Vec<&'static str> {
    table.iter().map(|(error, _)| error.code()).collect()
}

#[test]
fn codes_are_upper_snake_case_and_unique_within_their_enum() {
    let enums = [
        ("OrderError", codes_of(&order_codes())),
        ("PaymentError", codes_of(&payment_codes())),
        ("InventoryError", codes_of(&inventory_codes())),
        ("ProductError", codes_of(&product_codes())),
        ("SagaError", codes_of(&saga_codes())),
    ];
    for (name, codes) in enums {
        let mut seen = HashSet::new();
        for code in codes {
            assert!(
                is_upper_snake_case(code),
                "{name}: `{code}` is not UPPER_SNAKE_CASE"
            );
            assert!(seen.insert(code), "{name}: `{code}` is used twice");
        }
    }
}

#[test]
fn the_case_check_refuses_other_spellings() {
    assert!(is_upper_snake_case("ALREADY_SHIPPED"));
    assert!(is_upper_snake_case("NOT_FOUND"));
    for bad in [
        "",
        "AlreadyShipped",
        "already_shipped",
        "_SHIPPED",
        "ALREADY__SHIPPED",
        "SHIPPED_",
        "ALREADY-SHIPPED",
        "2FA",
    ] {
        assert!(!is_upper_snake_case(bad), "`{bad}` passed");
    }
}
