use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use super::*;
use crate::ids::Sku;
use crate::payment::PaymentMethod;

type OrderTest = TestFramework<Order>;

fn order_id() -> OrderId {
    OrderId(Uuid::from_u128(1))
}

fn payment_id() -> PaymentId {
    PaymentId(Uuid::from_u128(2))
}

fn customer_id() -> CustomerId {
    CustomerId(Uuid::from_u128(3))
}

fn placed_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR)
}

fn line(sku: &str, quantity: u32, cents: i64) -> OrderLine {
    OrderLine {
        sku: Sku::parse(sku).unwrap(),
        quantity,
        unit_price: eur(cents),
    }
}

/// Two mugs at 8.50 and one T-shirt at 19.99: 36.99 EUR.
fn lines() -> Vec<OrderLine> {
    vec![line("MUG-01", 2, 850), line("TS-M", 1, 1999)]
}

fn card() -> PaymentMethod {
    PaymentMethod::Card {
        token: "tok_visa".into(),
    }
}

fn place(lines: Vec<OrderLine>) -> OrderCommand {
    place_paying(lines, card())
}

fn place_paying(lines: Vec<OrderLine>, payment_method: PaymentMethod) -> OrderCommand {
    OrderCommand::PlaceOrder {
        order_id: order_id(),
        customer_id: customer_id(),
        lines,
        currency: Currency::EUR,
        payment_method,
        placed_at: placed_at(),
        shipping_address: None,
    }
}

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced {
        order_id: order_id(),
        customer_id: customer_id(),
        lines: lines(),
        currency: Currency::EUR,
        subtotal: eur(3699),
        total: eur(3699),
        payment_method: Some(card()),
        placed_at: placed_at(),
        shipping_address: None,
    }
}

fn stock_reserved() -> OrderEvent {
    OrderEvent::OrderStockReserved {
        order_id: order_id(),
    }
}

fn payment_authorised() -> OrderEvent {
    OrderEvent::OrderPaymentAuthorised {
        order_id: order_id(),
        payment_id: payment_id(),
    }
}

fn confirmed() -> OrderEvent {
    OrderEvent::OrderConfirmed {
        order_id: order_id(),
    }
}

fn shipped() -> OrderEvent {
    OrderEvent::OrderShipped {
        order_id: order_id(),
        carrier: "DHL".into(),
        tracking: "JD0001".into(),
    }
}

fn delivered() -> OrderEvent {
    OrderEvent::OrderDelivered {
        order_id: order_id(),
    }
}

fn cancelled(by: Canceller) -> OrderEvent {
    OrderEvent::OrderCancelled {
        order_id: order_id(),
        reason: "changed my mind".into(),
        by,
    }
}

fn refunded(cents: i64) -> OrderEvent {
    OrderEvent::OrderRefunded {
        order_id: order_id(),
        amount: eur(cents),
        reason: "returned".into(),
    }
}

/// Every event up to and including a confirmed order.
fn confirmed_order() -> Vec<OrderEvent> {
    vec![
        placed(),
        stock_reserved(),
        payment_authorised(),
        confirmed(),
    ]
}

fn cancel(by: Canceller) -> OrderCommand {
    OrderCommand::CancelOrder {
        reason: "changed my mind".into(),
        by,
    }
}

fn refund(cents: i64) -> OrderCommand {
    OrderCommand::MarkRefunded {
        amount: eur(cents),
        reason: "returned".into(),
    }
}

#[test]
fn placing_an_order_records_its_totals() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place(lines()))
        .then_expect_events(vec![placed()]);
}

#[test]
fn placing_an_order_twice_is_rejected() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(place(lines()))
        .then_expect_error(OrderError::AlreadyPlaced);
}

#[test]
fn placing_an_order_without_lines_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place(vec![]))
        .then_expect_error(OrderError::NoLines);
}

#[test]
fn placing_an_order_for_zero_units_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place(vec![line("MUG-01", 0, 850)]))
        .then_expect_error(OrderError::ZeroQuantity {
            sku: Sku::parse("MUG-01").unwrap(),
        });
}

#[test]
fn placing_an_order_with_a_line_in_another_currency_is_rejected() {
    let mut in_dollars = line("TS-M", 1, 1999);
    in_dollars.unit_price = Money::new(1999, Currency::USD);
    OrderTest::with(())
        .given_no_previous_events()
        .when(place(vec![line("MUG-01", 2, 850), in_dollars]))
        .then_expect_error(OrderError::CurrencyMismatch {
            expected: Currency::EUR,
            found: Currency::USD,
        });
}

#[test]
fn placing_an_order_with_a_free_line_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place(vec![line("MUG-01", 2, 0)]))
        .then_expect_error(OrderError::NonPositivePrice {
            sku: Sku::parse("MUG-01").unwrap(),
        });
}

#[test]
fn placing_an_order_with_a_repeated_sku_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place(vec![line("MUG-01", 2, 850), line("MUG-01", 1, 850)]))
        .then_expect_error(OrderError::DuplicateSku {
            sku: Sku::parse("MUG-01").unwrap(),
        });
}

#[test]
fn placing_an_order_with_a_blank_card_token_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place_paying(
            lines(),
            PaymentMethod::Card { token: " ".into() },
        ))
        .then_expect_error(OrderError::MissingPaymentToken);
}

#[test]
fn placing_an_order_records_its_payment_method() {
    let events = Order::default().decide(place(lines())).unwrap();
    let mut order = Order::default();
    for event in events {
        order.apply(event);
    }
    assert_eq!(order.payment_method(), Some(&card()));
}

#[test]
fn an_order_placed_before_payment_methods_were_recorded_has_none() {
    let mut stored = serde_json::to_value(placed()).unwrap();
    stored["OrderPlaced"]
        .as_object_mut()
        .unwrap()
        .remove("payment_method");

    let event: OrderEvent = serde_json::from_value(stored).unwrap();

    let OrderEvent::OrderPlaced { payment_method, .. } = &event else {
        panic!("{event:?}");
    };
    assert_eq!(payment_method, &None);
    let mut order = Order::default();
    order.apply(event);
    assert_eq!(order.payment_method(), None);
    assert_eq!(order.status(), Some(OrderStatus::Placed));
}

#[test]
fn placing_an_order_whose_total_overflows_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place(vec![line("MUG-01", 1, i64::MAX), line("TS-M", 1, 1)]))
        .then_expect_error(OrderError::AmountOverflow);
}

#[test]
fn changing_an_order_that_was_never_placed_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(OrderCommand::MarkStockReserved)
        .then_expect_error(OrderError::NotPlaced);
}

#[test]
fn reserving_stock_moves_a_placed_order_on() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(OrderCommand::MarkStockReserved)
        .then_expect_events(vec![stock_reserved()]);
}

#[test]
fn reserving_stock_twice_is_rejected() {
    OrderTest::with(())
        .given(vec![placed(), stock_reserved()])
        .when(OrderCommand::MarkStockReserved)
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::StockReserved,
            to: OrderStatus::StockReserved,
        });
}

#[test]
fn authorising_payment_records_the_payment() {
    OrderTest::with(())
        .given(vec![placed(), stock_reserved()])
        .when(OrderCommand::MarkPaymentAuthorised {
            payment_id: payment_id(),
        })
        .then_expect_events(vec![payment_authorised()]);
}

#[test]
fn authorising_payment_before_stock_is_reserved_is_rejected() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(OrderCommand::MarkPaymentAuthorised {
            payment_id: payment_id(),
        })
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::Placed,
            to: OrderStatus::PaymentAuthorised,
        });
}

#[test]
fn confirming_a_paid_order_records_it() {
    OrderTest::with(())
        .given(vec![placed(), stock_reserved(), payment_authorised()])
        .when(OrderCommand::ConfirmOrder)
        .then_expect_events(vec![confirmed()]);
}

#[test]
fn confirming_a_paid_order_in_one_step_records_the_payment_and_the_confirmation() {
    let confirm = || OrderCommand::ConfirmPaidOrder {
        payment_id: payment_id(),
    };
    OrderTest::with(())
        .given(vec![placed(), stock_reserved()])
        .when(confirm())
        .then_expect_events(vec![payment_authorised(), confirmed()]);
    // A repeat after the payment was recorded on its own only confirms.
    OrderTest::with(())
        .given(vec![placed(), stock_reserved(), payment_authorised()])
        .when(confirm())
        .then_expect_events(vec![confirmed()]);
    OrderTest::with(())
        .given(vec![placed(), stock_reserved(), payment_authorised()])
        .when(OrderCommand::ConfirmPaidOrder {
            payment_id: PaymentId(Uuid::from_u128(99)),
        })
        .then_expect_error(OrderError::OtherPayment);
    OrderTest::with(())
        .given(vec![
            placed(),
            stock_reserved(),
            cancelled(Canceller::Customer),
        ])
        .when(confirm())
        .then_expect_error(OrderError::AlreadyCancelled);
    OrderTest::with(())
        .given(vec![placed()])
        .when(confirm())
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::Placed,
            to: OrderStatus::Confirmed,
        });
    OrderTest::with(())
        .given(confirmed_order())
        .when(confirm())
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::Confirmed,
            to: OrderStatus::Confirmed,
        });
}

#[test]
fn confirming_an_unpaid_order_is_rejected() {
    OrderTest::with(())
        .given(vec![placed(), stock_reserved()])
        .when(OrderCommand::ConfirmOrder)
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::StockReserved,
            to: OrderStatus::Confirmed,
        });
}

#[test]
fn shipping_a_confirmed_order_records_the_tracking() {
    OrderTest::with(())
        .given(confirmed_order())
        .when(OrderCommand::ShipOrder {
            carrier: "DHL".into(),
            tracking: "JD0001".into(),
        })
        .then_expect_events(vec![shipped()]);
}

#[test]
fn shipping_an_unconfirmed_order_is_rejected() {
    OrderTest::with(())
        .given(vec![placed(), stock_reserved(), payment_authorised()])
        .when(OrderCommand::ShipOrder {
            carrier: "DHL".into(),
            tracking: "JD0001".into(),
        })
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::PaymentAuthorised,
            to: OrderStatus::Shipped,
        });
}

#[test]
fn shipping_without_a_carrier_is_rejected() {
    OrderTest::with(())
        .given(confirmed_order())
        .when(OrderCommand::ShipOrder {
            carrier: " ".into(),
            tracking: "JD0001".into(),
        })
        .then_expect_error(OrderError::EmptyCarrier);
}

#[test]
fn shipping_without_a_tracking_number_is_rejected() {
    OrderTest::with(())
        .given(confirmed_order())
        .when(OrderCommand::ShipOrder {
            carrier: "DHL".into(),
            tracking: String::new(),
        })
        .then_expect_error(OrderError::EmptyTracking);
}

#[test]
fn delivering_a_shipped_order_records_it() {
    OrderTest::with(())
        .given([confirmed_order(), vec![shipped()]].concat())
        .when(OrderCommand::MarkDelivered)
        .then_expect_events(vec![delivered()]);
}

#[test]
fn delivering_an_order_that_has_not_shipped_is_rejected() {
    OrderTest::with(())
        .given(confirmed_order())
        .when(OrderCommand::MarkDelivered)
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::Confirmed,
            to: OrderStatus::Delivered,
        });
}

#[test]
fn cancelling_a_placed_order_records_who_cancelled() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(cancel(Canceller::System))
        .then_expect_events(vec![cancelled(Canceller::System)]);
}

#[test]
fn a_customer_may_cancel_a_confirmed_order_before_it_ships() {
    OrderTest::with(())
        .given(confirmed_order())
        .when(cancel(Canceller::Customer))
        .then_expect_events(vec![cancelled(Canceller::Customer)]);
}

#[test]
fn cancelling_a_shipped_order_is_rejected() {
    OrderTest::with(())
        .given([confirmed_order(), vec![shipped()]].concat())
        .when(cancel(Canceller::Admin))
        .then_expect_error(OrderError::AlreadyShipped);
}

#[test]
fn a_customer_cannot_cancel_a_delivered_order() {
    OrderTest::with(())
        .given([confirmed_order(), vec![shipped(), delivered()]].concat())
        .when(cancel(Canceller::Customer))
        .then_expect_error(OrderError::AlreadyShipped);
}

#[test]
fn cancelling_an_order_twice_is_rejected() {
    OrderTest::with(())
        .given(vec![placed(), cancelled(Canceller::Customer)])
        .when(cancel(Canceller::Customer))
        .then_expect_error(OrderError::AlreadyCancelled);
}

#[test]
fn cancelling_without_a_reason_is_rejected() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(OrderCommand::CancelOrder {
            reason: "".into(),
            by: Canceller::Customer,
        })
        .then_expect_error(OrderError::EmptyReason);
}

#[test]
fn moving_a_cancelled_order_on_is_rejected() {
    OrderTest::with(())
        .given(vec![placed(), cancelled(Canceller::System)])
        .when(OrderCommand::MarkStockReserved)
        .then_expect_error(OrderError::AlreadyCancelled);
}

#[test]
fn refunding_a_delivered_order_records_it() {
    OrderTest::with(())
        .given([confirmed_order(), vec![shipped(), delivered()]].concat())
        .when(refund(1999))
        .then_expect_events(vec![refunded(1999)]);
}

#[test]
fn refunding_an_order_cancelled_after_payment_records_it() {
    OrderTest::with(())
        .given([confirmed_order(), vec![cancelled(Canceller::Admin)]].concat())
        .when(refund(3699))
        .then_expect_events(vec![refunded(3699)]);
}

#[test]
fn refunding_an_order_cancelled_before_payment_is_rejected() {
    OrderTest::with(())
        .given(vec![
            placed(),
            stock_reserved(),
            cancelled(Canceller::System),
        ])
        .when(refund(3699))
        .then_expect_error(OrderError::NotPaid);
}

#[test]
fn refunding_an_order_still_in_progress_is_rejected() {
    OrderTest::with(())
        .given(confirmed_order())
        .when(refund(3699))
        .then_expect_error(OrderError::InvalidTransition {
            from: OrderStatus::Confirmed,
            to: OrderStatus::Refunded,
        });
}

#[test]
fn refunding_an_order_twice_is_rejected() {
    OrderTest::with(())
        .given(
            [
                confirmed_order(),
                vec![shipped(), delivered(), refunded(1000)],
            ]
            .concat(),
        )
        .when(refund(1000))
        .then_expect_error(OrderError::AlreadyRefunded);
}

#[test]
fn refunding_more_than_the_total_is_rejected() {
    OrderTest::with(())
        .given([confirmed_order(), vec![shipped(), delivered()]].concat())
        .when(refund(3700))
        .then_expect_error(OrderError::RefundExceedsTotal {
            requested: eur(3700),
            total: eur(3699),
        });
}

#[test]
fn refunding_nothing_is_rejected() {
    OrderTest::with(())
        .given([confirmed_order(), vec![shipped(), delivered()]].concat())
        .when(refund(0))
        .then_expect_error(OrderError::NonPositiveRefund);
}

#[test]
fn refunding_in_another_currency_is_rejected() {
    OrderTest::with(())
        .given([confirmed_order(), vec![shipped(), delivered()]].concat())
        .when(OrderCommand::MarkRefunded {
            amount: Money::new(100, Currency::USD),
            reason: "returned".into(),
        })
        .then_expect_error(OrderError::CurrencyMismatch {
            expected: Currency::EUR,
            found: Currency::USD,
        });
}

#[test]
fn the_order_tracks_its_status_totals_and_payment() {
    let mut order = Order::default();
    assert_eq!(order.status(), None);
    for event in [confirmed_order(), vec![shipped(), delivered()]].concat() {
        order.apply(event);
    }
    assert_eq!(order.status(), Some(OrderStatus::Delivered));
    assert_eq!(order.subtotal(), Some(eur(3699)));
    assert_eq!(order.total(), Some(eur(3699)));
    assert_eq!(order.payment_id(), Some(payment_id()));
    assert_eq!(order.lines().len(), 2);
    order.apply(refunded(500));
    assert_eq!(order.status(), Some(OrderStatus::Refunded));
    assert_eq!(order.refunded(), Some(eur(500)));
}

#[test]
fn order_events_are_externally_tagged_with_snake_case_fields() {
    let json = serde_json::to_value(payment_authorised()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"OrderPaymentAuthorised": {
            "order_id": order_id(),
            "payment_id": payment_id(),
        }})
    );
    assert_eq!(payment_authorised().event_type(), "OrderPaymentAuthorised");
    let back: OrderEvent = serde_json::from_value(serde_json::to_value(placed()).unwrap()).unwrap();
    assert_eq!(back, placed());
}

fn address() -> ShippingAddress {
    ShippingAddress {
        name: " Ada Lovelace ".into(),
        line1: "12 St James's Square".into(),
        line2: String::new(),
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country_code: "gb".into(),
    }
}

fn place_to(address: ShippingAddress) -> OrderCommand {
    OrderCommand::PlaceOrder {
        order_id: order_id(),
        customer_id: customer_id(),
        lines: lines(),
        currency: Currency::EUR,
        payment_method: card(),
        placed_at: placed_at(),
        shipping_address: Some(address),
    }
}

#[test]
fn placing_an_order_records_its_shipping_address_trimmed_with_an_upper_case_country() {
    let expected = ShippingAddress {
        name: "Ada Lovelace".into(),
        country_code: "GB".into(),
        ..address()
    };
    OrderTest::with(())
        .given_no_previous_events()
        .when(place_to(address()))
        .then_expect_events(vec![OrderEvent::OrderPlaced {
            order_id: order_id(),
            customer_id: customer_id(),
            lines: lines(),
            currency: Currency::EUR,
            subtotal: eur(3699),
            total: eur(3699),
            payment_method: Some(card()),
            placed_at: placed_at(),
            shipping_address: Some(expected),
        }]);
}

#[test]
fn an_address_without_a_city_or_with_a_made_up_country_is_rejected() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(place_to(ShippingAddress {
            city: "  ".into(),
            ..address()
        }))
        .then_expect_error(OrderError::IncompleteAddress { field: "city" });
    OrderTest::with(())
        .given_no_previous_events()
        .when(place_to(ShippingAddress {
            country_code: "Britain".into(),
            ..address()
        }))
        .then_expect_error(OrderError::IncompleteAddress {
            field: "country_code",
        });
}

#[test]
fn an_order_placed_before_addresses_were_recorded_still_loads() {
    let stored = serde_json::json!({"OrderPlaced": {
        "order_id": order_id(), "customer_id": customer_id(), "lines": [],
        "currency": "EUR", "subtotal": eur(0), "total": eur(0),
        "placed_at": placed_at()
    }});
    let event: OrderEvent = serde_json::from_value(stored).unwrap();
    let mut order = Order::default();
    order.apply(event);
    assert_eq!(order.shipping_address(), None);
    assert_eq!(order.id(), Some(order_id()));
}
