//! The saga under infrastructure failures: nats-server SIGKILLed and restarted while
//! orders are in flight. Whatever each order's fate, none is left with money or stock
//! stranded.

mod support;

use std::time::Duration;

use domain::order::OrderStatus;
use domain::saga::Phase;
use domain::OrderId;
use futures::StreamExt;
use infra_nats::StoreError;
use saga::provider::SimulatorConfig;
use saga::DriveError;
use support::{fast_saga, Harness};

const ORDERS: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_mid_load_leaves_every_order_at_rest_and_nothing_stranded() {
    let simulator = SimulatorConfig {
        latency: Duration::from_millis(20),
        ..SimulatorConfig::default()
    };
    let mut shop = Harness::start(2, simulator, fast_saga()).await;
    shop.receive("MUG", 1_000).await;
    shop.receive("TEE", 1_000).await;
    let first: Vec<_> = futures::stream::iter(0..ORDERS / 2)
        .map(|n| {
            let shop = &shop;
            async move {
                let lines: &[(&str, u32, i64)] = if n % 2 == 0 {
                    &[("MUG", 1, 850)]
                } else {
                    &[("MUG", 1, 850), ("TEE", 2, 1999)]
                };
                shop.place(lines, "tok_visa").await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // Sagas are mid-way (the provider takes 20 ms a call): the server dies and returns.
    shop.nats.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shop.nats.restart();
    testkit::eventually(
        "the client to reconnect",
        Duration::from_secs(30),
        || async {
            (shop.client.connection_state() == async_nats::connection::State::Connected)
                .then_some(())
        },
    )
    .await;
    let second: Vec<_> = futures::stream::iter(0..ORDERS / 2)
        .map(|_| shop.place(&[("TEE", 1, 1999)], "tok_visa"))
        .buffer_unordered(16)
        .collect()
        .await;

    let mut completed = 0;
    let mut confirmed_total = 0i64;
    let mut committed_mugs = 0u64;
    let mut committed_tees = 0u64;
    for order in first.iter().chain(&second) {
        let phase = shop.rested(*order).await;
        let status = shop.order_status(*order).await.unwrap();
        match phase {
            Phase::Completed => {
                completed += 1;
                assert_eq!(status, OrderStatus::Confirmed);
                let inventory = shop.inventory("MUG").await;
                committed_mugs += u64::from(inventory.committed_quantity(*order).unwrap_or(0));
                let inventory = shop.inventory("TEE").await;
                let tees = inventory.committed_quantity(*order).unwrap_or(0);
                committed_tees += u64::from(tees);
                confirmed_total += if tees == 2 {
                    850 + 2 * 1999
                } else if tees == 1 {
                    1999
                } else {
                    850
                };
            }
            Phase::Compensated { .. } => assert_eq!(status, OrderStatus::Cancelled),
            other => panic!("order {order} rested in {other:?}"),
        }
    }
    eprintln!("{completed} of {ORDERS} orders confirmed, the rest compensated");
    assert!(
        completed >= ORDERS / 2,
        "the second half was placed after the restart"
    );
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!(ledger.authorised_held_minor, 0, "{ledger:?}");
    assert_eq!(
        ledger.captured_minor - ledger.refunded_minor,
        confirmed_total,
        "{ledger:?}"
    );
    let mug = shop.inventory("MUG").await;
    let tee = shop.inventory("TEE").await;
    assert_eq!((mug.reserved(), tee.reserved()), (0, 0));
    assert_eq!(mug.on_hand(), 1_000 - committed_mugs);
    assert_eq!(tee.on_hand(), 1_000 - committed_tees);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_saga_consumer_is_opened_again_and_orders_still_complete() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 10).await;
    let before = shop.place(&[("MUG", 1, 850)], "tok_visa").await;
    assert_eq!(shop.rested(before).await, Phase::Completed);

    // An operator deletes the consumer by mistake.
    let js = async_nats::jetstream::new(shop.client.clone());
    let stream = js.get_stream("EVENTS").await.unwrap();
    stream
        .delete_consumer(&shop.trigger.consumer)
        .await
        .unwrap();

    let after = shop.place(&[("MUG", 2, 850)], "tok_visa").await;
    assert_eq!(shop.rested(after).await, Phase::Completed);
    // The recreated consumer starts from the log's beginning: the first order's trigger
    // is seen again and changes nothing.
    assert_eq!(shop.saga_commits(before).await, 4);
    let mug = shop.inventory("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (7, 0));
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!(ledger.captured_minor, 850 * 3);
    shop.stop().await;
}

/// An operator sees why a saga could not be driven: the driver's error keeps the event
/// store's failure as its cause rather than a copy of its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_log_out_of_reach_is_the_cause_of_the_drive_error() {
    let mut shop = Harness::start(0, SimulatorConfig::default(), fast_saga()).await;
    let driver = shop.driver().await;
    shop.nats.kill();

    let error = driver
        .load(OrderId::from_uuid(uuid::Uuid::new_v4()))
        .await
        .expect_err("nats-server is down");

    let cause =
        std::error::Error::source(&error).and_then(|cause| cause.downcast_ref::<StoreError>());
    assert!(
        matches!(error, DriveError::Store(_)) && matches!(cause, Some(StoreError::Nats(_))),
        "{error:?}"
    );
    shop.nats.restart();
    shop.stop().await;
}
