//! An order's read-model view as of a position: at every position an order's life
//! passed through, the view rebuilt from the log equals what the live orders read model
//! showed right then (real nats-server, real PostgreSQL, the live projector following);
//! bad positions and ids are refused, and nothing is left behind.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use domain::order::{Canceller, Order, OrderCommand, OrderLine};
use domain::payment::{Payment, PaymentCommand, PaymentMethod};
use domain::{
    Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, PaymentId, RefundId, Sku,
};
use infra_nats::{
    provision, CommandBus, CommitOutcome, ConflictPolicy, EventStoreConfig, JetStreamEventStore,
    StreamSettings,
};
use projections::orders::{self, order_as_of, AsOfError, OrderDetail, OrdersProjection};
use projections::runtime::{Projector, ProjectorConfig};
use sqlx::PgPool;
use testkit::{eventually, NatsServer, TestDatabase};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn metadata() -> CommandMetadata {
    CommandMetadata::new(Actor::System("as-of-test".to_owned()))
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

fn place(order_id: OrderId, quantity: u32) -> OrderCommand {
    OrderCommand::PlaceOrder {
        order_id,
        customer_id: CustomerId(Uuid::from_u128(7)),
        lines: vec![
            OrderLine {
                sku: Sku::parse("MUG-01").unwrap(),
                quantity,
                unit_price: eur(850),
            },
            OrderLine {
                sku: Sku::parse("TS-M").unwrap(),
                quantity: 1,
                unit_price: eur(1999),
            },
        ],
        currency: Currency::EUR,
        payment_method: PaymentMethod::Card {
            token: "tok_ok".to_owned(),
        },
        shipping_address: None,
        placed_at: Utc::now(),
    }
}

struct Shop {
    orders: CommandBus<Order>,
    payments: CommandBus<Payment>,
}

impl Shop {
    async fn order(&self, id: OrderId, command: OrderCommand) -> CommitOutcome {
        self.orders
            .execute(&id.to_string(), command, &metadata())
            .await
            .unwrap()
    }

    async fn payment(&self, id: PaymentId, command: PaymentCommand) -> CommitOutcome {
        self.payments
            .execute(&id.to_string(), command, &metadata())
            .await
            .unwrap()
    }
}

/// The orders read model's view of `id` once the live projector has reached `position`.
async fn live_view_at(pool: &PgPool, id: OrderId, position: u64) -> OrderDetail {
    eventually(
        "the orders projector reaches the position",
        WAIT,
        || async {
            let at: Option<i64> = sqlx::query_scalar(
                "SELECT position FROM projector_positions WHERE projector = 'orders'",
            )
            .fetch_optional(pool)
            .await
            .unwrap();
            at.filter(|at| *at as u64 >= position)
        },
    )
    .await;
    orders::order(pool, id).await.unwrap().expect("projected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_at_every_position_is_what_the_live_read_model_showed_then() {
    let server = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    projections::migrate(&db.pool).await.unwrap();
    let client = infra_nats::connect(&server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    provision(&js, &StreamSettings::default()).await.unwrap();
    let shop = Shop {
        orders: CommandBus::new(
            JetStreamEventStore::new(client.clone(), EventStoreConfig::default())
                .await
                .unwrap(),
            (),
            ConflictPolicy::default(),
        ),
        payments: CommandBus::new(
            JetStreamEventStore::new(client.clone(), EventStoreConfig::default())
                .await
                .unwrap(),
            (),
            ConflictPolicy::default(),
        ),
    };
    let projector = Projector::new(
        Arc::new(OrdersProjection),
        db.pool.clone(),
        js.clone(),
        ProjectorConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(projector.run(async {
        let _ = stopped.await;
    }));

    let audited = OrderId(Uuid::new_v4());
    let other = OrderId(Uuid::new_v4());
    let payment = PaymentId(Uuid::new_v4());
    let other_payment = PaymentId(Uuid::new_v4());
    // The other order's commits interleave with the audited one's, and are never in its view.
    let before_placed = shop.order(other, place(other, 1)).await.position;
    // (position, what the live read model showed once it got there)
    let mut seen: Vec<(u64, OrderDetail)> = Vec::new();
    let total = eur(2 * 850 + 1999);
    let mut steps: Vec<(bool, CommitOutcome)> = Vec::new();
    // Each step is read from the live read model before the next is sent.
    macro_rules! step {
        ($touches:expr, $command:expr) => {{
            let outcome = $command;
            seen.push((
                outcome.position,
                live_view_at(&db.pool, audited, outcome.position).await,
            ));
            steps.push(($touches, outcome));
        }};
    }
    step!(true, shop.order(audited, place(audited, 2)).await);
    step!(
        true,
        shop.order(audited, OrderCommand::MarkStockReserved).await
    );
    step!(
        false,
        shop.order(other, OrderCommand::MarkStockReserved).await
    );
    step!(
        true,
        shop.payment(
            payment,
            PaymentCommand::AuthorisePayment {
                payment_id: payment,
                order_id: audited,
                amount: total,
                method: PaymentMethod::Card {
                    token: "tok_ok".to_owned(),
                },
                provider_reference: "auth-1".to_owned(),
            },
        )
        .await
    );
    step!(
        false,
        shop.payment(
            other_payment,
            PaymentCommand::DeclinePayment {
                payment_id: other_payment,
                order_id: other,
                amount: eur(2849),
                reason: "declined".to_owned(),
            },
        )
        .await
    );
    step!(
        true,
        shop.order(
            audited,
            OrderCommand::ConfirmPaidOrder {
                payment_id: payment,
            },
        )
        .await
    );
    step!(
        true,
        shop.payment(payment, PaymentCommand::CapturePayment { amount: total })
            .await
    );
    step!(
        true,
        shop.order(
            audited,
            OrderCommand::CancelOrder {
                reason: "changed my mind".to_owned(),
                by: Canceller::Customer,
            },
        )
        .await
    );
    step!(
        true,
        shop.payment(
            payment,
            PaymentCommand::RefundPayment {
                refund_id: RefundId(Uuid::new_v4()),
                amount: total,
                reason: "changed my mind".to_owned(),
            },
        )
        .await
    );
    step!(
        true,
        shop.order(
            audited,
            OrderCommand::MarkRefunded {
                amount: total,
                reason: "changed my mind".to_owned(),
            },
        )
        .await
    );
    // The view changed along the way (the test would prove nothing if it had not).
    assert_ne!(seen.first().unwrap().1, seen.last().unwrap().1);

    for ((touches_audited, _), (position, live)) in steps.iter().zip(&seen) {
        let view = order_as_of(&db.pool, &js, audited, *position)
            .await
            .unwrap_or_else(|e| panic!("as of {position}: {e}"));
        assert_eq!(&view.order, live, "as of position {position}");
        assert_eq!(view.position, *position);
        assert!(view.last_applied <= *position);
        if *touches_audited {
            assert_eq!(view.last_applied, *position);
        }
    }
    // Between the audited order's commits the view stands still.
    let (_, other_reserved) = &steps[2];
    let (_, placed_and_reserved) = &steps[1];
    let view = order_as_of(&db.pool, &js, audited, other_reserved.position)
        .await
        .unwrap();
    assert_eq!(view.last_applied, placed_and_reserved.position);

    // Bad positions and ids are refused by name.
    let last = infra_nats::stream_last_position(&js).await.unwrap();
    assert!(matches!(
        order_as_of(&db.pool, &js, audited, last + 1).await,
        Err(AsOfError::PositionPastEnd { asked, last: end }) if asked == last + 1 && end == last
    ));
    assert!(matches!(
        order_as_of(&db.pool, &js, audited, before_placed).await,
        Err(AsOfError::NotYetPlaced { placed_at, .. }) if placed_at == steps[0].1.position
    ));
    let unknown = OrderId(Uuid::new_v4());
    assert!(matches!(
        order_as_of(&db.pool, &js, unknown, last).await,
        Err(AsOfError::NotFound(id)) if id == unknown
    ));

    // Nothing was left behind: no scratch schema, and the live model is untouched.
    let scratch: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'orders\\_\\_as\\_of%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(scratch, 0);
    let live_now = orders::order(&db.pool, audited).await.unwrap().unwrap();
    assert_eq!(&live_now, &seen.last().unwrap().1);

    let _ = stop.send(());
    tokio::time::timeout(WAIT, running)
        .await
        .expect("the projector stops")
        .expect("the projector does not panic");
}
