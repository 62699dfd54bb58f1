//! A thousand orders with payment failures injected at random: every injected failure is
//! compensated exactly once, every other order confirmed, and the provider's ledger
//! balances to the confirmed orders.

mod support;

use std::time::Duration;

use domain::saga::Phase;
use futures::StreamExt;
use saga::provider::SimulatorConfig;
use support::{fast_saga, Harness};

const ORDERS: usize = 1000;
const SKUS: usize = 20;

async fn run_with_failure_rate(rate: f64, seed: u64) {
    let simulator = SimulatorConfig {
        failure_rate: rate,
        seed,
        ..SimulatorConfig::default()
    };
    let mut saga = fast_saga();
    saga.reserve_timeout = Duration::from_secs(30);
    saga.authorise_timeout = Duration::from_secs(30);
    saga.complete_timeout = Duration::from_secs(30);
    let mut shop = Harness::start(1, simulator, saga).await;
    shop.start_replica().await;
    for i in 0..SKUS {
        shop.receive(&format!("SKU-{i}"), 10_000).await;
    }
    let orders: Vec<_> = futures::stream::iter(0..ORDERS)
        .map(|n| {
            let shop = &shop;
            async move {
                let sku = format!("SKU-{}", n % SKUS);
                let quantity = 1 + (n % 3) as u32;
                let order = shop
                    .place(&[(sku.as_str(), quantity, 1000)], "tok_visa")
                    .await;
                (order, sku, quantity)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    let mut confirmed = 0usize;
    let mut compensated = 0usize;
    let mut confirmed_total = 0i64;
    let mut committed = [0u64; SKUS];
    for (order, sku, quantity) in &orders {
        match shop.rested(*order).await {
            Phase::Completed => {
                confirmed += 1;
                confirmed_total += 1000 * i64::from(*quantity);
                let index: usize = sku.trim_start_matches("SKU-").parse().unwrap();
                committed[index] += u64::from(*quantity);
            }
            Phase::Compensated { reason } => {
                assert!(reason.contains("injected failure"), "{reason}");
                compensated += 1;
            }
            other => panic!("order {order} rested in {other:?}"),
        }
    }
    let ledger = shop.provider.ledger().await.unwrap();
    assert!(ledger.injected_failures > 0, "{ledger:?}");
    assert_eq!(compensated as u64, ledger.injected_failures, "{ledger:?}");
    assert_eq!(confirmed + compensated, ORDERS);
    assert_eq!(ledger.authorised_held_minor, 0, "{ledger:?}");
    assert_eq!(
        ledger.captured_minor - ledger.refunded_minor,
        confirmed_total,
        "{ledger:?}"
    );
    for (i, committed) in committed.iter().enumerate() {
        let inventory = shop.inventory(&format!("SKU-{i}")).await;
        assert_eq!(inventory.reserved(), 0, "SKU-{i}");
        assert_eq!(inventory.on_hand(), 10_000 - committed, "SKU-{i}");
    }
    eprintln!(
        "rate {rate}: {confirmed} confirmed, {compensated} compensated = {} injected",
        ledger.injected_failures
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_percent_injected_failures_are_compensated_exactly() {
    run_with_failure_rate(0.03, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_percent_injected_failures_are_compensated_exactly() {
    run_with_failure_rate(0.5, 50).await;
}
