//! The payments read model against a real PostgreSQL: payment histories scripted
//! through the domain's own decisions, checked against values the test works out.

use chrono::{DateTime, Utc};
use domain::ids::{OrderId, PaymentId, RefundId};
use domain::money::Money;
use domain::payment::{Payment, PaymentCommand, PaymentEvent, PaymentMethod};
use projections::payments::{
    self, OperationKind, OrderPaymentTotals, PaymentOperation, PaymentStatus, PaymentsProjection,
};
use projections::runtime::apply_directly;
use projections::{fixtures, ApplyError};
use uuid::Uuid;

// Scripting histories

// The shared scripting kit: `Shop`, ids, money, placing orders, dumps.
mod support;
use support::*;

fn refund_id(n: u128) -> RefundId {
    RefundId(Uuid::from_u128(0x0d00 + n))
}

fn authorise(shop: &mut Shop, payment: PaymentId, order: OrderId, cents: i64, at: DateTime<Utc>) {
    shop.payment(
        payment,
        PaymentCommand::AuthorisePayment {
            payment_id: payment,
            order_id: order,
            amount: eur(cents),
            method: PaymentMethod::Card {
                token: "tok_visa".into(),
            },
            provider_reference: format!("auth-{payment}"),
        },
        at,
    );
}

fn refund(shop: &mut Shop, payment: PaymentId, n: u128, cents: i64, at: DateTime<Utc>) {
    shop.payment(
        payment,
        PaymentCommand::RefundPayment {
            refund_id: refund_id(n),
            amount: eur(cents),
            reason: format!("refund {n}"),
        },
        at,
    );
}

/// Order 1 is paid on the second attempt (the first is declined), captured in full and
/// refunded twice in part; order 2's payment is authorised and voided; order 3's is
/// captured and refunded in full. Order events interleave, as they would in the stream.
fn payment_history() -> Shop {
    let mut shop = Shop::default();
    shop.order(
        order_id(1),
        place(
            order_id(1),
            customer(1),
            vec![line("MUG-01", 2, 850), line("TS-M", 1, 1999)],
            day(1, 9),
        ),
        day(1, 9),
    );
    shop.payment(
        payment_id(1),
        PaymentCommand::DeclinePayment {
            payment_id: payment_id(1),
            order_id: order_id(1),
            amount: eur(3699),
            reason: "insufficient funds".into(),
        },
        day(1, 10),
    );
    authorise(&mut shop, payment_id(2), order_id(1), 3699, day(1, 11));
    authorise(&mut shop, payment_id(3), order_id(2), 1200, day(1, 12));
    shop.payment(
        payment_id(2),
        PaymentCommand::CapturePayment { amount: eur(3699) },
        day(2, 9),
    );
    shop.payment(payment_id(3), PaymentCommand::VoidPayment, day(2, 10));
    refund(&mut shop, payment_id(2), 1, 1000, day(3, 9));
    authorise(&mut shop, payment_id(4), order_id(3), 500, day(3, 10));
    shop.payment(
        payment_id(4),
        PaymentCommand::CapturePayment { amount: eur(500) },
        day(3, 11),
    );
    refund(&mut shop, payment_id(2), 2, 500, day(4, 9));
    refund(&mut shop, payment_id(4), 3, 500, day(4, 10));
    shop
}

#[tokio::test]
async fn a_payment_shows_its_totals_and_every_operation_in_order() {
    let db = migrated().await;
    let shop = payment_history();
    apply_directly(&db.pool, &PaymentsProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let view = payments::payment(&db.pool, payment_id(2))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(view.order_id, order_id(1));
    assert_eq!(view.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(view.amount, eur(3699));
    assert_eq!(view.authorised, eur(3699));
    assert_eq!(view.captured, eur(3699));
    assert_eq!(view.refunded, eur(1000 + 500));
    assert_eq!(view.method.as_deref(), Some("card"));
    assert_eq!(
        view.provider_reference,
        Some(format!("auth-{}", payment_id(2)))
    );
    assert_eq!(view.created_at, day(1, 11));
    assert_eq!(view.updated_at, day(4, 9));
    let operation = |kind, amount: Option<i64>, at, sequence| PaymentOperation {
        kind,
        amount: amount.map(eur),
        at,
        reason: None,
        provider_reference: None,
        refund_id: None,
        sequence,
    };
    assert_eq!(
        view.operations,
        vec![
            PaymentOperation {
                provider_reference: Some(format!("auth-{}", payment_id(2))),
                ..operation(OperationKind::Authorisation, Some(3699), day(1, 11), 1)
            },
            operation(OperationKind::Capture, Some(3699), day(2, 9), 2),
            PaymentOperation {
                reason: Some("refund 1".into()),
                refund_id: Some(refund_id(1)),
                ..operation(OperationKind::Refund, Some(1000), day(3, 9), 3)
            },
            PaymentOperation {
                reason: Some("refund 2".into()),
                refund_id: Some(refund_id(2)),
                ..operation(OperationKind::Refund, Some(500), day(4, 9), 4)
            },
        ]
    );

    let voided = payments::payment(&db.pool, payment_id(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(voided.status, PaymentStatus::Voided);
    assert_eq!(voided.captured, eur(0));
    assert_eq!(
        voided
            .operations
            .iter()
            .map(|o| (o.kind, o.amount))
            .collect::<Vec<_>>(),
        vec![
            (OperationKind::Authorisation, Some(eur(1200))),
            (OperationKind::Void, None)
        ]
    );

    let refunded = payments::payment(&db.pool, payment_id(4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    assert_eq!(refunded.refunded, eur(500));

    assert_eq!(
        payments::payment(&db.pool, payment_id(9)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn an_orders_payments_include_the_declined_attempt_and_add_up() {
    let db = migrated().await;
    let shop = payment_history();
    apply_directly(&db.pool, &PaymentsProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let views = payments::payments_for_order(&db.pool, order_id(1))
        .await
        .unwrap();
    let summary: Vec<(PaymentId, PaymentStatus, Money, Option<&str>)> = views
        .iter()
        .map(|v| (v.id, v.status, v.authorised, v.decline_reason.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                payment_id(1),
                PaymentStatus::Declined,
                eur(0),
                Some("insufficient funds")
            ),
            (
                payment_id(2),
                PaymentStatus::PartiallyRefunded,
                eur(3699),
                None
            ),
        ]
    );
    assert_eq!(views[0].operations.len(), 1);
    assert_eq!(views[0].operations[0].kind, OperationKind::Decline);
    assert_eq!(views[0].operations[0].amount, Some(eur(3699)));

    assert_eq!(
        payments::order_payment_totals(&db.pool, order_id(1))
            .await
            .unwrap(),
        vec![OrderPaymentTotals {
            order_id: order_id(1),
            payments: 2,
            // The declined attempt authorised nothing.
            authorised: eur(3699),
            captured: eur(3699),
            refunded: eur(1000 + 500),
        }]
    );
    let voided = payments::order_payment_totals(&db.pool, order_id(2))
        .await
        .unwrap();
    assert_eq!(
        voided[0].authorised,
        eur(0),
        "a voided authorisation holds nothing"
    );
    assert!(payments::payments_for_order(&db.pool, order_id(8))
        .await
        .unwrap()
        .is_empty());
    assert!(payments::order_payment_totals(&db.pool, order_id(8))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_payments_of_many_orders_are_read_at_once_with_their_operations() {
    let db = migrated().await;
    let shop = payment_history();
    apply_directly(&db.pool, &PaymentsProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let without_payment = order_id(8);
    let ids = [order_id(3), without_payment, order_id(1), order_id(2)];

    let by_order = payments::payments_for_orders(&db.pool, &ids).await.unwrap();

    assert_eq!(by_order.len(), 3);
    for id in [order_id(1), order_id(2), order_id(3)] {
        let one_by_one = payments::payments_for_order(&db.pool, id).await.unwrap();
        assert_eq!(by_order.get(&id), Some(&one_by_one), "{id}");
    }
    // By hand: order 1's declined attempt, then the payment refunded twice.
    let order_1: Vec<(PaymentId, usize)> = by_order[&order_id(1)]
        .iter()
        .map(|p| (p.id, p.operations.len()))
        .collect();
    assert_eq!(order_1, vec![(payment_id(1), 1), (payment_id(2), 4)]);
    let order_3 = &by_order[&order_id(3)];
    let kinds: Vec<OperationKind> = order_3[0].operations.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        vec![
            OperationKind::Authorisation,
            OperationKind::Capture,
            OperationKind::Refund
        ]
    );
    assert!(payments::payments_for_orders(&db.pool, &[])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn one_batch_one_by_one_in_chunks_and_replayed_give_the_same_rows() {
    let shop = payment_history();
    let [expected, single, chunked] =
        apply_three_ways(&PaymentsProjection, &shop.log, 4, 2..9).await;
    assert!(expected
        .iter()
        .any(|(t, rows)| t == "operations" && rows.contains("refund 2")));
    assert_eq!(single, expected);
    assert_eq!(chunked, expected);
}

#[tokio::test]
async fn a_capture_of_a_payment_never_authorised_is_inconsistent() {
    let db = migrated().await;
    let capture = fixtures::commit::<Payment>(
        1,
        &payment_id(5).to_string(),
        2,
        &[PaymentEvent::PaymentCaptured {
            payment_id: payment_id(5),
            amount: eur(100),
        }],
        day(3, 9),
    );
    let result = apply_directly(&db.pool, &PaymentsProjection, &deliveries(&[capture])).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );

    // As the first event of its stream, a capture is no less out of place.
    let first = fixtures::commit::<Payment>(
        1,
        &payment_id(5).to_string(),
        1,
        &[PaymentEvent::PaymentVoided {
            payment_id: payment_id(5),
        }],
        day(3, 9),
    );
    let result = apply_directly(&db.pool, &PaymentsProjection, &deliveries(&[first])).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_event_of_the_wrong_shape_is_a_decode_error() {
    let db = migrated().await;
    let shop = payment_history();
    let mut broken = shop.log[1].clone();
    broken.envelope.events[0].payload = serde_json::json!({
        "PaymentDeclined": { "payment_id": payment_id(1), "amount": 3699 }
    });
    let result = apply_directly(&db.pool, &PaymentsProjection, &deliveries(&[broken])).await;
    assert!(matches!(result, Err(ApplyError::Decode(_))), "{result:?}");
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM payments.payments")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}
