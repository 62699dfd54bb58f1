//! The orders read model against a real PostgreSQL: histories scripted through the
//! domain's own decisions, applied as the projector would, checked against values the
//! test works out itself.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Duration, Utc};
use domain::ids::{CustomerId, OrderId, RefundId};
use domain::order::{Canceller, Order, OrderCommand, OrderStatus};
use domain::payment::{Payment, PaymentCommand};
use infra_nats::RecordedCommit;
use projections::orders::{
    self, OrderFilter, OrderLineView, OrderSummary, OrdersProjection, PaymentState, StatusChange,
};
use projections::page::{encode_cursor, Page, PageRequest, QueryError};
use projections::runtime::apply_directly;
use projections::{fixtures, ApplyError};
use sqlx::PgPool;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Scripting histories

// The shared scripting kit: `Shop`, ids, money, placing orders, dumps.
mod support;
use support::*;

/// Three orders of two customers over two days: one delivered, one cancelled after a
/// captured payment and refunded, one whose payment was declined and was cancelled.
fn three_orders() -> Shop {
    let mut shop = Shop::default();
    // Delivered: 2 x 8.50 + 1 x 19.99 = 36.99.
    shop.paid_order(
        order_id(1),
        customer(1),
        vec![line("MUG-01", 2, 850), line("TS-M", 1, 1999)],
        payment_id(1),
        day(1, 9),
    );
    // Cancelled and refunded: 3 x 4.00 = 12.00.
    shop.paid_order(
        order_id(2),
        customer(2),
        vec![line("PEN-BLUE", 3, 400)],
        payment_id(2),
        day(1, 10),
    );
    shop.order(order_id(1), OrderCommand::ConfirmOrder, day(1, 11));
    shop.payment(
        payment_id(1),
        PaymentCommand::CapturePayment { amount: eur(3699) },
        day(1, 12),
    );
    shop.order(
        order_id(1),
        OrderCommand::ShipOrder {
            carrier: "DHL".into(),
            tracking: "JD0001".into(),
        },
        day(1, 13),
    );
    shop.payment(
        payment_id(2),
        PaymentCommand::CapturePayment { amount: eur(1200) },
        day(1, 14),
    );
    shop.order(
        order_id(2),
        OrderCommand::CancelOrder {
            reason: "changed my mind".into(),
            by: Canceller::Customer,
        },
        day(1, 15),
    );
    shop.payment(
        payment_id(2),
        PaymentCommand::RefundPayment {
            refund_id: RefundId(Uuid::from_u128(0xd01)),
            amount: eur(1200),
            reason: "order cancelled".into(),
        },
        day(1, 16),
    );
    shop.order(
        order_id(2),
        OrderCommand::MarkRefunded {
            amount: eur(1200),
            reason: "order cancelled".into(),
        },
        day(1, 17),
    );
    shop.order(order_id(1), OrderCommand::MarkDelivered, day(2, 9));
    // Declined, then cancelled by the system: 1 x 99.00.
    shop.order(
        order_id(3),
        place(
            order_id(3),
            customer(1),
            vec![line("LAMP", 1, 9900)],
            day(2, 10),
        ),
        day(2, 10),
    );
    shop.order(order_id(3), OrderCommand::MarkStockReserved, day(2, 11));
    shop.payment(
        payment_id(3),
        PaymentCommand::DeclinePayment {
            payment_id: payment_id(3),
            order_id: order_id(3),
            amount: eur(9900),
            reason: "insufficient funds".into(),
        },
        day(2, 12),
    );
    shop.order(
        order_id(3),
        OrderCommand::CancelOrder {
            reason: "payment declined".into(),
            by: Canceller::System,
        },
        day(2, 13),
    );
    shop
}

// ---------------------------------------------------------------------------------------
// The model

#[tokio::test]
async fn a_delivered_order_has_its_lines_shipping_payment_and_every_transition() {
    let db = migrated().await;
    let shop = three_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let detail = orders::order(&db.pool, order_id(1)).await.unwrap().unwrap();

    assert_eq!(detail.summary.customer_id, customer(1));
    assert_eq!(detail.summary.status, OrderStatus::Delivered);
    assert_eq!(detail.summary.payment_state, PaymentState::Captured);
    assert_eq!(detail.summary.total, eur(2 * 850 + 1999));
    assert_eq!(detail.subtotal, eur(2 * 850 + 1999));
    assert_eq!(detail.summary.item_count, 3);
    assert_eq!(detail.summary.line_count, 2);
    assert_eq!(detail.summary.placed_at, day(1, 9));
    assert_eq!(detail.summary.updated_at, day(2, 9));
    assert_eq!(detail.payment_id, Some(payment_id(1)));
    assert_eq!(
        detail.lines,
        vec![
            OrderLineView {
                sku: "MUG-01".into(),
                quantity: 2,
                unit_price: eur(850),
                line_total: eur(1700),
            },
            OrderLineView {
                sku: "TS-M".into(),
                quantity: 1,
                unit_price: eur(1999),
                line_total: eur(1999),
            },
        ]
    );
    let shipping = detail.shipping.unwrap();
    assert_eq!(
        (shipping.carrier.as_str(), shipping.tracking.as_str()),
        ("DHL", "JD0001")
    );
    assert_eq!(shipping.shipped_at, day(1, 13));
    assert_eq!(shipping.delivered_at, Some(day(2, 9)));
    assert_eq!(detail.cancellation, None);
    assert_eq!(detail.refund, None);

    // Positions of order 1's commits in the script: 1, 2, 4 (order event after the
    // payment's authorisation at 3), then 9, 11 and 16.
    let change = |status, at, position| StatusChange {
        status,
        at,
        reason: None,
        position,
    };
    assert_eq!(
        detail.timeline,
        vec![
            change(OrderStatus::Placed, day(1, 9), 1),
            change(
                OrderStatus::StockReserved,
                day(1, 9) + Duration::minutes(1),
                2
            ),
            change(
                OrderStatus::PaymentAuthorised,
                day(1, 9) + Duration::minutes(3),
                4
            ),
            change(OrderStatus::Confirmed, day(1, 11), 9),
            change(OrderStatus::Shipped, day(1, 13), 11),
            change(OrderStatus::Delivered, day(2, 9), 16),
        ]
    );
}

#[tokio::test]
async fn a_cancelled_and_refunded_order_keeps_the_reasons_and_the_refund() {
    let db = migrated().await;
    let shop = three_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let refunded = orders::order(&db.pool, order_id(2)).await.unwrap().unwrap();
    assert_eq!(refunded.summary.status, OrderStatus::Refunded);
    assert_eq!(refunded.summary.payment_state, PaymentState::Refunded);
    let cancellation = refunded.cancellation.unwrap();
    assert_eq!(
        (cancellation.reason.as_str(), cancellation.by.as_str()),
        ("changed my mind", "customer")
    );
    assert_eq!(cancellation.cancelled_at, day(1, 15));
    let refund = refunded.refund.unwrap();
    assert_eq!(refund.amount, eur(1200));
    assert_eq!(refund.reason, "order cancelled");
    assert_eq!(refund.refunded_at, day(1, 17));
    let reasons: Vec<(OrderStatus, Option<&str>)> = refunded
        .timeline
        .iter()
        .map(|c| (c.status, c.reason.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (OrderStatus::Placed, None),
            (OrderStatus::StockReserved, None),
            (OrderStatus::PaymentAuthorised, None),
            (OrderStatus::Cancelled, Some("changed my mind")),
            (OrderStatus::Refunded, Some("order cancelled")),
        ]
    );

    let declined = orders::order(&db.pool, order_id(3)).await.unwrap().unwrap();
    assert_eq!(declined.summary.status, OrderStatus::Cancelled);
    assert_eq!(declined.summary.payment_state, PaymentState::Declined);
    assert_eq!(declined.payment_id, Some(payment_id(3)));
    assert_eq!(declined.cancellation.unwrap().by, "system");

    assert_eq!(
        orders::order(&db.pool, order_id(99)).await.unwrap(),
        None,
        "an order never placed is not found"
    );
}

#[tokio::test]
async fn one_batch_one_by_one_in_chunks_and_replayed_give_the_same_rows() {
    let shop = three_orders();
    // An operator replays part of the log: already applied, it changes nothing.
    let [expected, single, chunked] =
        apply_three_ways(&OrdersProjection, &shop.log, 3, 4..12).await;
    let order_rows = &expected.iter().find(|(t, _)| t == "orders").unwrap().1;
    assert!(order_rows.contains("JD0001"), "the dump holds the rows");
    assert_eq!(single, expected);
    assert_eq!(chunked, expected);
}

#[tokio::test]
async fn the_last_event_of_an_order_in_a_batch_wins() {
    let db = migrated().await;
    let mut shop = Shop::default();
    let at = day(3, 9);
    // Placed, reserved, paid, confirmed and cancelled, all in one batch.
    shop.paid_order(
        order_id(7),
        customer(7),
        vec![line("CUP", 1, 500)],
        payment_id(7),
        at,
    );
    shop.order(
        order_id(7),
        OrderCommand::ConfirmOrder,
        at + Duration::hours(1),
    );
    shop.order(
        order_id(7),
        OrderCommand::CancelOrder {
            reason: "duplicate".into(),
            by: Canceller::Admin,
        },
        at + Duration::hours(2),
    );
    shop.payment(
        payment_id(7),
        PaymentCommand::VoidPayment,
        at + Duration::hours(3),
    );
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let detail = orders::order(&db.pool, order_id(7)).await.unwrap().unwrap();
    assert_eq!(detail.summary.status, OrderStatus::Cancelled);
    assert_eq!(detail.summary.payment_state, PaymentState::Voided);
    assert_eq!(detail.summary.updated_at, at + Duration::hours(3));
    assert_eq!(detail.timeline.len(), 5);
    assert_eq!(detail.cancellation.unwrap().by, "admin");
}

// ---------------------------------------------------------------------------------------
// Queries

/// An order as scripted: when it was placed, its id, its customer, whether cancelled.
type Placed = (DateTime<Utc>, OrderId, CustomerId, bool);

/// Seven orders of customer 1, two of them placed at the same second, and three of
/// customer 2; every second order of customer 1 is cancelled.
fn many_orders() -> (Shop, Vec<Placed>) {
    let mut shop = Shop::default();
    let mut placed = Vec::new();
    let times = [
        day(5, 9),
        day(5, 11),
        day(5, 11),
        day(6, 8),
        day(6, 20),
        day(7, 1),
        day(8, 23),
    ];
    for (n, at) in times.into_iter().enumerate() {
        let id = order_id(100 + n as u128);
        shop.order(
            id,
            place(id, customer(1), vec![line("SOCK", 2, 300)], at),
            at,
        );
        let cancelled = n % 2 == 1;
        if cancelled {
            shop.order(
                id,
                OrderCommand::CancelOrder {
                    reason: "not needed".into(),
                    by: Canceller::Customer,
                },
                at + Duration::minutes(5),
            );
        }
        placed.push((at, id, customer(1), cancelled));
    }
    for (n, at) in [day(5, 10), day(6, 9), day(7, 12)].into_iter().enumerate() {
        let id = order_id(200 + n as u128);
        shop.order(
            id,
            place(id, customer(2), vec![line("HAT", 1, 1500)], at),
            at,
        );
        placed.push((at, id, customer(2), false));
    }
    (shop, placed)
}

/// A page request that owns its cursor, so that a boxed query can hold it.
#[derive(Debug, Clone)]
enum Ask {
    Forward(usize, Option<String>),
    Backward(usize, Option<String>),
}

impl Ask {
    fn request(&self) -> PageRequest<'_> {
        match self {
            Ask::Forward(first, after) => PageRequest::Forward {
                first: *first,
                after: after.as_deref(),
            },
            Ask::Backward(last, before) => PageRequest::Backward {
                last: *last,
                before: before.as_deref(),
            },
        }
    }
}

type PageFuture = Pin<Box<dyn Future<Output = Result<Page<OrderSummary>, QueryError>>>>;

/// Walks a list from its start with `first/after`, or from its end with `last/before`
/// when `backward`, `size` at a time, checking on each page that every edge has its
/// order's cursor and that the flag on the cursor's side is whether a cursor was given.
/// Returns the ids in list order, and the size of each page with whether more pages
/// lie ahead, in the order the pages were read.
async fn walk(
    backward: bool,
    size: usize,
    mut next: impl FnMut(Ask) -> PageFuture,
) -> (Vec<OrderId>, Vec<(usize, bool)>) {
    let mut ids = Vec::new();
    let mut shapes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let ask = if backward {
            Ask::Backward(size, cursor.clone())
        } else {
            Ask::Forward(size, cursor.clone())
        };
        let page = next(ask).await.unwrap();
        for edge in &page.edges {
            assert_eq!(
                edge.cursor,
                edge.node.cursor(),
                "each edge has its order's cursor"
            );
        }
        assert_eq!(
            page.start_cursor(),
            page.edges.first().map(|e| e.cursor.as_str())
        );
        assert_eq!(
            page.end_cursor(),
            page.edges.last().map(|e| e.cursor.as_str())
        );
        let (behind, ahead, next_cursor) = if backward {
            (
                page.has_next_page,
                page.has_previous_page,
                page.start_cursor(),
            )
        } else {
            (
                page.has_previous_page,
                page.has_next_page,
                page.end_cursor(),
            )
        };
        assert_eq!(
            behind,
            cursor.is_some(),
            "the flag behind a page is whether it has a cursor"
        );
        shapes.push((page.edges.len(), ahead));
        cursor = next_cursor.map(str::to_owned);
        let page_ids: Vec<OrderId> = page.nodes().map(|o| o.id).collect();
        if backward {
            ids.splice(0..0, page_ids);
        } else {
            ids.extend(page_ids);
        }
        if !ahead {
            return (ids, shapes);
        }
    }
}

/// The ids of `orders` newest first, by placement time then id, as the API promises.
fn newest_first(mut orders: Vec<(DateTime<Utc>, OrderId)>) -> Vec<OrderId> {
    orders.sort_by(|a, b| b.cmp(a));
    orders.into_iter().map(|(_, id)| id).collect()
}

/// Customer 1's orders from `many_orders`, as `customer_orders` lists them.
fn customer_1_orders(placed: &[Placed]) -> Vec<OrderId> {
    newest_first(
        placed
            .iter()
            .filter(|(_, _, c, _)| *c == customer(1))
            .map(|(at, id, _, _)| (*at, *id))
            .collect(),
    )
}

/// Pages of customer 1's orders, as `walk` asks for them.
fn customer_1_pages(pool: &PgPool) -> impl FnMut(Ask) -> PageFuture {
    let pool = pool.clone();
    move |ask| {
        let pool = pool.clone();
        Box::pin(async move { orders::customer_orders(&pool, customer(1), ask.request()).await })
    }
}

/// The filter of `filtered_orders_are_counted_and_walked_within_the_filter`, and the
/// orders of `many_orders` it matches, newest first.
fn placed_between_day_5_and_8(placed: &[Placed]) -> (OrderFilter, Vec<OrderId>) {
    let filter = OrderFilter {
        status: Some(OrderStatus::Placed),
        customer_id: None,
        placed_after: Some(day(5, 10)),
        placed_before: Some(day(8, 0)),
    };
    let expected = newest_first(
        placed
            .iter()
            .filter(|(at, _, _, cancelled)| !cancelled && *at >= day(5, 10) && *at < day(8, 0))
            .map(|(at, id, _, _)| (*at, *id))
            .collect(),
    );
    assert_eq!(expected.len(), 5, "the scenario has five matching orders");
    (filter, expected)
}

fn filtered_pages(pool: &PgPool, filter: &OrderFilter) -> impl FnMut(Ask) -> PageFuture {
    let pool = pool.clone();
    let filter = filter.clone();
    move |ask| {
        let pool = pool.clone();
        let filter = filter.clone();
        Box::pin(async move { orders::orders(&pool, &filter, ask.request()).await })
    }
}

#[tokio::test]
async fn a_customers_orders_are_walked_newest_first_three_at_a_time() {
    let db = migrated().await;
    let (shop, placed) = many_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let (ids, shapes) = walk(false, 3, customer_1_pages(&db.pool)).await;

    assert_eq!(ids, customer_1_orders(&placed));
    assert_eq!(shapes, vec![(3, true), (3, true), (1, false)]);
}

#[tokio::test]
async fn a_customers_orders_walked_backward_from_the_end_are_the_same_in_the_same_order() {
    let db = migrated().await;
    let (shop, placed) = many_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();

    let (ids, shapes) = walk(true, 3, customer_1_pages(&db.pool)).await;

    // Seven orders read from the end, three at a time: the oldest one is a page alone.
    assert_eq!(ids, customer_1_orders(&placed));
    assert_eq!(shapes, vec![(3, true), (3, true), (1, false)]);
}

#[tokio::test]
async fn filtered_orders_are_counted_and_walked_within_the_filter() {
    let db = migrated().await;
    let (shop, placed) = many_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let (filter, expected) = placed_between_day_5_and_8(&placed);

    let (ids, shapes) = walk(false, 2, filtered_pages(&db.pool, &filter)).await;
    assert_eq!(ids, expected);
    assert_eq!(shapes, vec![(2, true), (2, true), (1, false)]);

    let everything = orders::orders(&db.pool, &OrderFilter::default(), PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(everything.total_count, Some(placed.len() as i64));
    assert_eq!(everything.edges.len(), placed.len());
    assert!(!everything.has_next_page);

    let cancelled = OrderFilter {
        status: Some(OrderStatus::Cancelled),
        ..OrderFilter::default()
    };
    let page = orders::orders(&db.pool, &cancelled, PageRequest::first(1))
        .await
        .unwrap();
    let cancelled_count = placed.iter().filter(|(_, _, _, c)| *c).count() as i64;
    assert_eq!(page.total_count, Some(cancelled_count));
    assert_eq!(page.edges.len(), 1);
    assert!(page.has_next_page);
}

#[tokio::test]
async fn filtered_orders_walked_backward_are_the_same_and_counted_the_same() {
    let db = migrated().await;
    let (shop, placed) = many_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let (filter, expected) = placed_between_day_5_and_8(&placed);

    let (ids, shapes) = walk(true, 2, filtered_pages(&db.pool, &filter)).await;
    let last_two = PageRequest::Backward {
        last: 2,
        before: None,
    };
    let last_two = orders::orders(&db.pool, &filter, last_two).await.unwrap();

    assert_eq!(ids, expected);
    assert_eq!(shapes, vec![(2, true), (2, true), (1, false)]);
    assert_eq!(last_two.total_count, Some(5));
    assert_eq!(
        last_two
            .into_nodes()
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>(),
        expected[3..]
    );
}

#[tokio::test]
async fn every_orders_cursor_continues_on_either_side_of_it() {
    let db = migrated().await;
    let (shop, _) = many_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let all = orders::orders(&db.pool, &OrderFilter::default(), PageRequest::first(100))
        .await
        .unwrap();
    let ids: Vec<OrderId> = all.nodes().map(|o| o.id).collect();
    assert_eq!(ids.len(), 10);

    for (i, edge) in all.edges.iter().enumerate() {
        let after = PageRequest::Forward {
            first: 1,
            after: Some(&edge.cursor),
        };
        let next = orders::orders(&db.pool, &OrderFilter::default(), after)
            .await
            .unwrap();
        let next_ids: Vec<OrderId> = next.nodes().map(|o| o.id).collect();
        assert_eq!(
            next_ids,
            ids.get(i + 1).copied().into_iter().collect::<Vec<_>>(),
            "after {i}"
        );
        assert!(next.has_previous_page);
        assert_eq!(next.has_next_page, i + 2 < ids.len(), "after {i}");

        let before = PageRequest::Backward {
            last: 1,
            before: Some(&edge.cursor),
        };
        let previous = orders::orders(&db.pool, &OrderFilter::default(), before)
            .await
            .unwrap();
        let previous_ids: Vec<OrderId> = previous.nodes().map(|o| o.id).collect();
        let expected: Vec<OrderId> = i.checked_sub(1).map(|j| ids[j]).into_iter().collect();
        assert_eq!(previous_ids, expected, "before {i}");
        assert!(previous.has_next_page);
        assert_eq!(previous.has_previous_page, i > 1, "before {i}");
    }
}

#[tokio::test]
async fn a_forward_cursor_used_as_before_ends_the_page_just_before_its_order() {
    let db = migrated().await;
    let (shop, placed) = many_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let expected = customer_1_orders(&placed);
    let first_page = orders::customer_orders(&db.pool, customer(1), PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(first_page.total_count, Some(expected.len() as i64));
    let second = PageRequest::Forward {
        first: 3,
        after: first_page.end_cursor(),
    };
    let second_page = orders::customer_orders(&db.pool, customer(1), second)
        .await
        .unwrap();

    let back = PageRequest::Backward {
        last: 3,
        before: second_page.start_cursor(),
    };
    let back_to_first = orders::customer_orders(&db.pool, customer(1), back)
        .await
        .unwrap();
    let two_back = PageRequest::Backward {
        last: 2,
        before: second_page.start_cursor(),
    };
    let two_back = orders::customer_orders(&db.pool, customer(1), two_back)
        .await
        .unwrap();

    assert_eq!(back_to_first.edges, first_page.edges);
    assert!(!back_to_first.has_previous_page && back_to_first.has_next_page);
    let two_ids: Vec<OrderId> = two_back.nodes().map(|o| o.id).collect();
    assert_eq!(two_ids, expected[1..3]);
    assert!(two_back.has_previous_page && two_back.has_next_page);
}

#[tokio::test]
async fn a_page_of_no_orders_still_tells_whether_orders_exist() {
    let db = migrated().await;
    let (shop, _) = many_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let none_before_the_end = PageRequest::Backward {
        last: 0,
        before: None,
    };

    let empty = orders::orders(&db.pool, &OrderFilter::default(), none_before_the_end)
        .await
        .unwrap();
    let nobody = orders::customer_orders(&db.pool, customer(9), PageRequest::first(0))
        .await
        .unwrap();

    assert!(empty.edges.is_empty());
    assert!(empty.has_previous_page && !empty.has_next_page);
    assert_eq!(empty.total_count, Some(10));
    assert!(nobody.edges.is_empty() && !nobody.has_next_page && !nobody.has_previous_page);
    assert_eq!(nobody.total_count, Some(0));
}

#[tokio::test]
async fn a_cursor_the_model_did_not_make_is_refused() {
    let db = migrated().await;
    // The last is well formed, but of another list's key: the movements' (position,
    // index).
    let garbage = [
        "not-a-cursor".to_owned(),
        "zz".to_owned(),
        encode_cursor(&(3_i64, 0_i32)),
    ];
    for cursor in &garbage {
        let after = PageRequest::Forward {
            first: 3,
            after: Some(cursor),
        };
        let before = PageRequest::Backward {
            last: 3,
            before: Some(cursor),
        };
        for request in [after, before] {
            let result = orders::customer_orders(&db.pool, customer(1), request).await;
            assert!(
                matches!(result, Err(QueryError::InvalidCursor)),
                "{request:?}: {result:?}"
            );
            let result = orders::orders(&db.pool, &OrderFilter::default(), request).await;
            assert!(
                matches!(result, Err(QueryError::InvalidCursor)),
                "{request:?}: {result:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_page_of_more_than_100_orders_is_refused_either_way() {
    let db = migrated().await;
    let backward = PageRequest::Backward {
        last: 101,
        before: None,
    };
    for request in [PageRequest::first(101), backward] {
        let result = orders::orders(&db.pool, &OrderFilter::default(), request).await;
        assert!(
            matches!(result, Err(QueryError::PageTooLarge(101))),
            "{result:?}"
        );
        let result = orders::customer_orders(&db.pool, customer(1), request).await;
        assert!(
            matches!(result, Err(QueryError::PageTooLarge(101))),
            "{result:?}"
        );
    }
    let largest = PageRequest::Backward {
        last: 100,
        before: None,
    };
    assert!(orders::orders(&db.pool, &OrderFilter::default(), largest)
        .await
        .is_ok());
}

// ---------------------------------------------------------------------------------------
// Batch loaders

#[tokio::test]
async fn lines_timelines_and_summaries_of_many_orders_are_read_at_once() {
    let db = migrated().await;
    let shop = three_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let never_placed = order_id(99);
    let ids = [order_id(3), never_placed, order_id(1), order_id(2)];

    let summaries = orders::orders_by_ids(&db.pool, &ids).await.unwrap();
    let lines = orders::lines_for_orders(&db.pool, &ids).await.unwrap();
    let timelines = orders::timelines_for_orders(&db.pool, &ids).await.unwrap();

    for id in [order_id(1), order_id(2), order_id(3)] {
        let detail = orders::order(&db.pool, id).await.unwrap().unwrap();
        assert_eq!(summaries.get(&id), Some(&detail.summary), "{id}");
        assert_eq!(lines.get(&id), Some(&detail.lines), "{id}");
        assert_eq!(timelines.get(&id), Some(&detail.timeline), "{id}");
    }
    assert_eq!((summaries.len(), lines.len(), timelines.len()), (3, 3, 3));
    // By hand: order 1's two lines in the order placed, order 2's five transitions.
    let skus: Vec<&str> = lines[&order_id(1)].iter().map(|l| l.sku.as_str()).collect();
    assert_eq!(skus, vec!["MUG-01", "TS-M"]);
    let statuses: Vec<OrderStatus> = timelines[&order_id(2)].iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![
            OrderStatus::Placed,
            OrderStatus::StockReserved,
            OrderStatus::PaymentAuthorised,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ]
    );
    assert_eq!(summaries[&order_id(3)].status, OrderStatus::Cancelled);
}

#[tokio::test]
async fn no_orders_asked_for_or_none_known_give_empty_maps() {
    let db = migrated().await;
    let shop = three_orders();
    apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log))
        .await
        .unwrap();
    let unknown = [order_id(98), order_id(99)];

    for ids in [&[][..], &unknown[..]] {
        assert!(orders::orders_by_ids(&db.pool, ids)
            .await
            .unwrap()
            .is_empty());
        assert!(orders::lines_for_orders(&db.pool, ids)
            .await
            .unwrap()
            .is_empty());
        assert!(orders::timelines_for_orders(&db.pool, ids)
            .await
            .unwrap()
            .is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Failures

async fn order_count(pool: &PgPool) -> i64 {
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders.orders")
        .fetch_one(pool)
        .await
        .unwrap();
    count
}

#[tokio::test]
async fn an_event_for_an_order_never_placed_is_inconsistent_and_the_batch_is_not_applied() {
    let db = migrated().await;
    let mut shop = three_orders();
    // A confirmation of an order the model never saw, at that order's version 2.
    let stranger = order_id(42);
    let confirmed = domain::order::OrderEvent::OrderConfirmed { order_id: stranger };
    shop.log.push(fixtures::commit::<Order>(
        shop.log.len() as u64 + 1,
        &stranger.to_string(),
        2,
        std::slice::from_ref(&confirmed),
        day(3, 9),
    ));

    let result = apply_directly(&db.pool, &OrdersProjection, &deliveries(&shop.log)).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
    assert_eq!(
        order_count(&db.pool).await,
        0,
        "the whole batch rolled back"
    );

    // Even as the first event of its stream, a confirmation is not a placement.
    let first = fixtures::commit::<Order>(1, &stranger.to_string(), 1, &[confirmed], day(3, 9));
    let result = apply_directly(&db.pool, &OrdersProjection, &deliveries(&[first])).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_capture_of_an_unknown_payment_or_a_gap_in_an_order_is_inconsistent() {
    let db = migrated().await;
    let capture = fixtures::commit::<Payment>(
        1,
        &payment_id(5).to_string(),
        1,
        &[domain::payment::PaymentEvent::PaymentCaptured {
            payment_id: payment_id(5),
            amount: eur(100),
        }],
        day(3, 9),
    );
    let result = apply_directly(&db.pool, &OrdersProjection, &deliveries(&[capture])).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );

    // Commit 2 of order 1 (its stock reservation) is missing.
    let shop = three_orders();
    let gap: Vec<RecordedCommit> = [&shop.log[0], &shop.log[3]].into_iter().cloned().collect();
    let result = apply_directly(&db.pool, &OrdersProjection, &deliveries(&gap)).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_event_of_the_wrong_shape_is_a_decode_error() {
    let db = migrated().await;
    let shop = three_orders();
    let mut broken = shop.log[0].clone();
    broken.envelope.events[0].payload = serde_json::json!({
        "OrderPlaced": { "order_id": order_id(1), "lines": "three mugs" }
    });
    let result = apply_directly(&db.pool, &OrdersProjection, &deliveries(&[broken])).await;
    assert!(matches!(result, Err(ApplyError::Decode(_))), "{result:?}");
    assert_eq!(order_count(&db.pool).await, 0);
}
