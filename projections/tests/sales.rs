//! The sales analytics read model against a real PostgreSQL: order histories over four
//! days scripted through the domain's own decisions, checked against figures the test
//! works out line by line.

use chrono::{DateTime, NaiveDate, Utc};
use domain::ids::OrderId;
use domain::order::{Canceller, Order, OrderCommand, OrderEvent, OrderStatus};
use projections::runtime::apply_directly;
use projections::sales::{
    self, CancellationRate, DailySales, SalesProjection, StatusCount, TopSeller,
};
use projections::{fixtures, ApplyError};

// Scripting histories

// The shared scripting kit: `Shop`, ids, money, placing orders, dumps.
mod support;
use support::*;

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 3, day).unwrap()
}

fn cancel(shop: &mut Shop, id: OrderId, at: DateTime<Utc>) {
    shop.order(
        id,
        OrderCommand::CancelOrder {
            reason: "no longer wanted".into(),
            by: Canceller::Customer,
        },
        at,
    );
}

fn refund(shop: &mut Shop, id: OrderId, cents: i64, at: DateTime<Utc>) {
    shop.order(
        id,
        OrderCommand::MarkRefunded {
            amount: eur(cents),
            reason: "refund".into(),
        },
        at,
    );
}

/// Five orders over four days (each day's figures are worked out in the tests):
/// - 1: placed and confirmed on day 1 (2 x MUG-01 at 8.50, 1 x TS-M at 19.99), shipped
///   on day 2;
/// - 2: placed and confirmed on day 1 (3 x PEN-BLUE at 4.00), cancelled on day 2 and
///   refunded 12.00 the same day;
/// - 3: placed on day 2 (5 x MUG-01), confirmed, shipped and delivered on day 3, 8.50
///   refunded on day 4;
/// - 4: placed and cancelled on day 2, never confirmed (1 x LAMP at 99.00);
/// - 5: placed and confirmed on day 3 (2 x TS-M).
fn sales_history() -> Shop {
    let mut shop = Shop::default();
    let mugs_and_shirt = vec![line("MUG-01", 2, 850), line("TS-M", 1, 1999)];
    shop.paid_order(
        order_id(1),
        customer(1),
        mugs_and_shirt,
        payment_id(1),
        day(1, 9),
    );
    shop.paid_order(
        order_id(2),
        customer(2),
        vec![line("PEN-BLUE", 3, 400)],
        payment_id(2),
        day(1, 10),
    );
    shop.order(order_id(1), OrderCommand::ConfirmOrder, day(1, 11));
    shop.order(order_id(2), OrderCommand::ConfirmOrder, day(1, 12));
    shop.order(
        order_id(1),
        OrderCommand::ShipOrder {
            carrier: "DHL".into(),
            tracking: "JD1".into(),
        },
        day(2, 8),
    );
    cancel(&mut shop, order_id(2), day(2, 9));
    refund(&mut shop, order_id(2), 1200, day(2, 10));
    shop.paid_order(
        order_id(3),
        customer(1),
        vec![line("MUG-01", 5, 850)],
        payment_id(3),
        day(2, 11),
    );
    shop.order(
        order_id(4),
        place(
            order_id(4),
            customer(3),
            vec![line("LAMP", 1, 9900)],
            day(2, 12),
        ),
        day(2, 12),
    );
    cancel(&mut shop, order_id(4), day(2, 13));
    shop.order(order_id(3), OrderCommand::ConfirmOrder, day(3, 8));
    shop.paid_order(
        order_id(5),
        customer(2),
        vec![line("TS-M", 2, 1999)],
        payment_id(5),
        day(3, 9),
    );
    shop.order(order_id(5), OrderCommand::ConfirmOrder, day(3, 10));
    shop.order(
        order_id(3),
        OrderCommand::ShipOrder {
            carrier: "UPS".into(),
            tracking: "1Z3".into(),
        },
        day(3, 11),
    );
    shop.order(order_id(3), OrderCommand::MarkDelivered, day(3, 12));
    refund(&mut shop, order_id(3), 850, day(4, 9));
    shop
}

fn daily_sales(
    day: u32,
    (placed, confirmed, cancelled): (i64, i64, i64),
    units: i64,
    gross: i64,
    refunded: i64,
) -> DailySales {
    DailySales {
        day: date(day),
        orders_placed: placed,
        orders_confirmed: confirmed,
        orders_cancelled: cancelled,
        units_sold: units,
        gross_revenue: eur(gross),
        refunded: eur(refunded),
        net_revenue: eur(gross - refunded),
    }
}

#[tokio::test]
async fn each_day_counts_placements_confirmed_sales_cancellations_and_refunds() {
    let db = migrated().await;
    let shop = sales_history();
    apply_directly(&db.pool, &SalesProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let days = sales::daily_sales(&db.pool, date(1), date(4))
        .await
        .unwrap();

    assert_eq!(
        days,
        vec![
            // Orders 1 and 2 placed and confirmed.
            daily_sales(1, (2, 2, 0), 2 + 1 + 3, 2 * 850 + 1999 + 3 * 400, 0),
            // Orders 3 and 4 placed; 2 and 4 cancelled; 2 refunded.
            daily_sales(2, (2, 0, 2), 0, 0, 1200),
            // Order 5 placed; 3 and 5 confirmed.
            daily_sales(3, (1, 2, 0), 5 + 2, 5 * 850 + 2 * 1999, 0),
            // Part of order 3 refunded.
            daily_sales(4, (0, 0, 0), 0, 0, 850),
        ]
    );
    assert_eq!(
        sales::daily_sales(&db.pool, date(2), date(3))
            .await
            .unwrap(),
        days[1..3].to_vec()
    );
}

#[tokio::test]
async fn top_sellers_rank_skus_by_units_then_revenue_over_the_period() {
    let db = migrated().await;
    let shop = sales_history();
    apply_directly(&db.pool, &SalesProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let seller = |sku: &str, units, revenue, orders| TopSeller {
        sku: sku.into(),
        units_sold: units,
        revenue: eur(revenue),
        orders,
    };

    assert_eq!(
        sales::top_sellers(&db.pool, date(1), date(4), 10)
            .await
            .unwrap(),
        vec![
            seller("MUG-01", 2 + 5, 2 * 850 + 5 * 850, 2),
            // TS-M and PEN-BLUE both sold 3 units: more revenue ranks first.
            seller("TS-M", 1 + 2, 1999 + 2 * 1999, 2),
            seller("PEN-BLUE", 3, 3 * 400, 1),
        ]
    );
    assert_eq!(
        sales::top_sellers(&db.pool, date(3), date(3), 1)
            .await
            .unwrap(),
        vec![seller("MUG-01", 5, 5 * 850, 1)]
    );
    assert!(sales::top_sellers(&db.pool, date(2), date(2), 5)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn status_counts_follow_every_transition() {
    let db = migrated().await;
    let shop = sales_history();
    let all = deliveries(&shop.log);
    // Up to the first cancellation: 1 and 2 confirmed and 1 shipped.
    let cancellation = shop
        .log
        .iter()
        .position(|c| c.envelope.events[0].event_type == "OrderCancelled")
        .unwrap();
    apply_directly(&db.pool, &SalesProjection, &all[..cancellation])
        .await
        .unwrap();
    let count = |status, orders| StatusCount { status, orders };
    assert_eq!(
        sales::status_counts(&db.pool).await.unwrap(),
        vec![
            count(OrderStatus::Confirmed, 1),
            count(OrderStatus::Shipped, 1)
        ]
    );

    apply_directly(&db.pool, &SalesProjection, &all[cancellation..])
        .await
        .unwrap();
    assert_eq!(
        sales::status_counts(&db.pool).await.unwrap(),
        vec![
            count(OrderStatus::Confirmed, 1), // 5
            count(OrderStatus::Shipped, 1),   // 1
            count(OrderStatus::Cancelled, 1), // 4
            count(OrderStatus::Refunded, 2),  // 2 and 3
        ]
    );
}

#[tokio::test]
async fn the_cancellation_rate_is_the_share_of_the_orders_placed_in_the_period() {
    let db = migrated().await;
    let shop = sales_history();
    apply_directly(&db.pool, &SalesProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    // Orders 1 to 4 were placed on days 1 and 2; 2 and 4 were cancelled.
    assert_eq!(
        sales::cancellation_rate(&db.pool, date(1), date(2))
            .await
            .unwrap(),
        CancellationRate {
            placed: 4,
            cancelled: 2,
            rate: Some(0.5)
        }
    );
    // Order 2 was placed on day 1 and cancelled on day 2: it counts for day 1.
    assert_eq!(
        sales::cancellation_rate(&db.pool, date(1), date(1))
            .await
            .unwrap(),
        CancellationRate {
            placed: 2,
            cancelled: 1,
            rate: Some(0.5)
        }
    );
    assert_eq!(
        sales::cancellation_rate(&db.pool, date(3), date(4))
            .await
            .unwrap(),
        CancellationRate {
            placed: 1,
            cancelled: 0,
            rate: Some(0.0)
        }
    );
    assert_eq!(
        sales::cancellation_rate(&db.pool, date(10), date(20))
            .await
            .unwrap(),
        CancellationRate {
            placed: 0,
            cancelled: 0,
            rate: None
        }
    );
}

#[tokio::test]
async fn one_batch_one_by_one_in_chunks_and_replayed_give_the_same_rows() {
    let shop = sales_history();
    // The counters add up deltas: a replay of the whole log must not add them again.
    let [expected, single, chunked] =
        apply_three_ways(&SalesProjection, &shop.log, 5, 0..shop.log.len()).await;
    assert!(expected
        .iter()
        .any(|(t, rows)| t == "daily_skus" && rows.contains("PEN-BLUE")));
    assert_eq!(single, expected);
    assert_eq!(chunked, expected);
}

#[tokio::test]
async fn an_event_for_an_order_never_placed_is_inconsistent() {
    let db = migrated().await;
    let stranger = order_id(42);
    let refunded = fixtures::commit::<Order>(
        1,
        &stranger.to_string(),
        5,
        &[OrderEvent::OrderRefunded {
            order_id: stranger,
            amount: eur(100),
            reason: "?".into(),
        }],
        day(3, 9),
    );
    let result = apply_directly(&db.pool, &SalesProjection, &deliveries(&[refunded])).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_event_of_the_wrong_shape_is_a_decode_error() {
    let db = migrated().await;
    let shop = sales_history();
    let mut broken = shop.log[0].clone();
    broken.envelope.events[0].payload = serde_json::json!({ "OrderShredded": {} });
    let result = apply_directly(&db.pool, &SalesProjection, &deliveries(&[broken])).await;
    assert!(matches!(result, Err(ApplyError::Decode(_))), "{result:?}");
    assert!(sales::daily_sales(&db.pool, date(1), date(31))
        .await
        .unwrap()
        .is_empty());
}
