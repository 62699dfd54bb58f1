use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use super::*;

type PaymentTest = TestFramework<Payment>;

fn payment_id() -> PaymentId {
    PaymentId(Uuid::from_u128(1))
}

fn order_id() -> OrderId {
    OrderId(Uuid::from_u128(2))
}

fn refund_id(n: u128) -> RefundId {
    RefundId(Uuid::from_u128(100 + n))
}

fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR)
}

fn card() -> PaymentMethod {
    PaymentMethod::Card {
        token: "tok_visa".into(),
    }
}

fn authorise(cents: i64) -> PaymentCommand {
    PaymentCommand::AuthorisePayment {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: eur(cents),
        method: card(),
        provider_reference: "auth_1".into(),
    }
}

fn decline() -> PaymentCommand {
    PaymentCommand::DeclinePayment {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: eur(5000),
        reason: "insufficient funds".into(),
    }
}

fn capture(cents: i64) -> PaymentCommand {
    PaymentCommand::CapturePayment { amount: eur(cents) }
}

fn refund(n: u128, cents: i64) -> PaymentCommand {
    PaymentCommand::RefundPayment {
        refund_id: refund_id(n),
        amount: eur(cents),
        reason: "returned".into(),
    }
}

/// 50.00 EUR authorised.
fn authorised() -> PaymentEvent {
    PaymentEvent::PaymentAuthorised {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: eur(5000),
        method: card(),
        provider_reference: "auth_1".into(),
    }
}

fn declined() -> PaymentEvent {
    PaymentEvent::PaymentDeclined {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: eur(5000),
        reason: "insufficient funds".into(),
    }
}

fn captured(cents: i64) -> PaymentEvent {
    PaymentEvent::PaymentCaptured {
        payment_id: payment_id(),
        amount: eur(cents),
    }
}

fn voided() -> PaymentEvent {
    PaymentEvent::PaymentVoided {
        payment_id: payment_id(),
    }
}

fn refunded(n: u128, cents: i64) -> PaymentEvent {
    PaymentEvent::PaymentRefunded {
        payment_id: payment_id(),
        refund_id: refund_id(n),
        amount: eur(cents),
        reason: "returned".into(),
    }
}

#[test]
fn authorising_a_payment_records_it() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(authorise(5000))
        .then_expect_events(vec![authorised()]);
}

#[test]
fn authorising_a_payment_twice_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(authorise(5000))
        .then_expect_error(PaymentError::AlreadyAuthorised);
}

#[test]
fn authorising_a_declined_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![declined()])
        .when(authorise(5000))
        .then_expect_error(PaymentError::AlreadyDeclined);
}

#[test]
fn authorising_a_zero_amount_is_rejected() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(authorise(0))
        .then_expect_error(PaymentError::NonPositiveAmount);
}

#[test]
fn authorising_without_a_provider_reference_is_rejected() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(PaymentCommand::AuthorisePayment {
            payment_id: payment_id(),
            order_id: order_id(),
            amount: eur(5000),
            method: card(),
            provider_reference: " ".into(),
        })
        .then_expect_error(PaymentError::EmptyProviderReference);
}

#[test]
fn authorising_with_a_blank_card_token_is_rejected() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(PaymentCommand::AuthorisePayment {
            payment_id: payment_id(),
            order_id: order_id(),
            amount: eur(5000),
            method: PaymentMethod::Card { token: "".into() },
            provider_reference: "auth_1".into(),
        })
        .then_expect_error(PaymentError::EmptyCardToken);
}

#[test]
fn declining_a_payment_records_the_reason() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(decline())
        .then_expect_events(vec![declined()]);
}

#[test]
fn declining_an_authorised_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(decline())
        .then_expect_error(PaymentError::AlreadyAuthorised);
}

#[test]
fn declining_without_a_reason_is_rejected() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(PaymentCommand::DeclinePayment {
            payment_id: payment_id(),
            order_id: order_id(),
            amount: eur(5000),
            reason: "".into(),
        })
        .then_expect_error(PaymentError::EmptyReason);
}

#[test]
fn capturing_a_payment_that_does_not_exist_is_rejected() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(capture(5000))
        .then_expect_error(PaymentError::NotFound);
}

#[test]
fn capturing_an_authorised_payment_records_it() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(capture(5000))
        .then_expect_events(vec![captured(5000)]);
}

#[test]
fn capturing_less_than_authorised_records_it() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(capture(3000))
        .then_expect_events(vec![captured(3000)]);
}

#[test]
fn capturing_more_than_authorised_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(capture(5001))
        .then_expect_error(PaymentError::CaptureExceedsAuthorised {
            requested: eur(5001),
            authorised: eur(5000),
        });
}

#[test]
fn capturing_a_payment_twice_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(2000)])
        .when(capture(2000))
        .then_expect_error(PaymentError::AlreadyCaptured);
}

#[test]
fn capturing_a_declined_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![declined()])
        .when(capture(5000))
        .then_expect_error(PaymentError::AlreadyDeclined);
}

#[test]
fn capturing_a_voided_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), voided()])
        .when(capture(5000))
        .then_expect_error(PaymentError::AlreadyVoided);
}

#[test]
fn capturing_in_another_currency_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(PaymentCommand::CapturePayment {
            amount: Money::new(5000, Currency::USD),
        })
        .then_expect_error(PaymentError::CurrencyMismatch {
            expected: Currency::EUR,
            found: Currency::USD,
        });
}

#[test]
fn capturing_nothing_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(capture(0))
        .then_expect_error(PaymentError::NonPositiveAmount);
}

#[test]
fn voiding_an_authorised_payment_records_it() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(PaymentCommand::VoidPayment)
        .then_expect_events(vec![voided()]);
}

#[test]
fn voiding_a_captured_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(5000)])
        .when(PaymentCommand::VoidPayment)
        .then_expect_error(PaymentError::AlreadyCaptured);
}

#[test]
fn voiding_a_payment_twice_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), voided()])
        .when(PaymentCommand::VoidPayment)
        .then_expect_error(PaymentError::AlreadyVoided);
}

#[test]
fn voiding_a_declined_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![declined()])
        .when(PaymentCommand::VoidPayment)
        .then_expect_error(PaymentError::AlreadyDeclined);
}

#[test]
fn refunding_part_of_a_capture_records_it() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(5000)])
        .when(refund(1, 2000))
        .then_expect_events(vec![refunded(1, 2000)]);
}

#[test]
fn refunding_the_rest_of_a_capture_records_it() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(5000), refunded(1, 2000)])
        .when(refund(2, 3000))
        .then_expect_events(vec![refunded(2, 3000)]);
}

#[test]
fn refunding_more_than_captured_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(4000), refunded(1, 2500)])
        .when(refund(2, 1501))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: eur(1501),
            refundable: eur(1500),
        });
}

#[test]
fn refunding_with_the_same_refund_id_twice_records_nothing() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(5000), refunded(1, 5000)])
        .when(refund(1, 5000))
        .then_expect_events(vec![]);
}

#[test]
fn refunding_an_uncaptured_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised()])
        .when(refund(1, 1000))
        .then_expect_error(PaymentError::NotCaptured);
}

#[test]
fn refunding_a_voided_payment_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), voided()])
        .when(refund(1, 1000))
        .then_expect_error(PaymentError::AlreadyVoided);
}

#[test]
fn refunding_without_a_reason_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(5000)])
        .when(PaymentCommand::RefundPayment {
            refund_id: refund_id(1),
            amount: eur(1000),
            reason: " ".into(),
        })
        .then_expect_error(PaymentError::EmptyReason);
}

#[test]
fn refunding_nothing_is_rejected() {
    PaymentTest::with(())
        .given(vec![authorised(), captured(5000)])
        .when(refund(1, -100))
        .then_expect_error(PaymentError::NonPositiveAmount);
}

#[test]
fn the_payment_tracks_captured_and_refunded_amounts() {
    let mut payment = Payment::default();
    assert_eq!(payment.status(), None);
    for event in [
        authorised(),
        captured(4000),
        refunded(1, 1000),
        refunded(2, 500),
    ] {
        payment.apply(event);
    }
    assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    assert_eq!(payment.amount(), Some(eur(5000)));
    assert_eq!(payment.captured(), Some(eur(4000)));
    assert_eq!(payment.refunded(), Some(eur(1500)));
    assert_eq!(payment.refundable(), Some(eur(2500)));
    assert_eq!(payment.provider_reference(), Some("auth_1"));
    assert_eq!(payment.order_id(), Some(order_id()));
}

#[test]
fn payment_events_are_externally_tagged() {
    let json = serde_json::to_value(authorised()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"PaymentAuthorised": {
            "payment_id": payment_id(),
            "order_id": order_id(),
            "amount": {"amount_minor": 5000, "currency": "EUR"},
            "method": {"Card": {"token": "tok_visa"}},
            "provider_reference": "auth_1",
        }})
    );
    assert_eq!(authorised().event_type(), "PaymentAuthorised");
    assert_eq!(authorised().event_version(), "1.0");
}
