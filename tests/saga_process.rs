//! Saga processes SIGKILLed at random points during a load: every order still reaches a
//! terminal state, no payment is taken twice, and no reservation is left stranded.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::inventory::InventoryCommand;
use domain::order::{Canceller, OrderCommand, OrderLine, OrderStatus};
use domain::payment::PaymentMethod;
use domain::saga::Phase;
use domain::{Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, Sku};
use infra_nats::{EventStoreConfig, StreamSettings};
use saga::provider::{SimulatedProvider, SimulatorConfig};
use saga::SagaBuses;
use testkit::{eventually, NatsServer, TestDatabase};
use uuid::Uuid;

const SKUS: usize = 12;
const STOCK_PER_SKU: u32 = 25;
const ORDERS: usize = 240;

fn spawn_saga(nats: &NatsServer, db: &TestDatabase) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg("saga")
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("SAGA_ACK_WAIT_MS", "1500")
        .env("SAGA_STEP_TIMEOUT_MS", "30000")
        .env("PAYMENT_LATENCY_MS", "15")
        .env("PAYMENT_FAILURE_RATE", "0.1")
        .env("PAYMENT_SEED", "11")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting shopstream saga")
}

fn metadata() -> CommandMetadata {
    CommandMetadata {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        actor: Actor::System("test".to_owned()),
    }
}

fn sku(i: usize) -> String {
    format!("SKU-{i}")
}

#[tokio::test]
async fn saga_processes_killed_at_random_points_leave_no_money_or_stock_stranded() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    projections::migrate(&db.pool).await.unwrap();
    let client = infra_nats::connect(&nats.url()).await.unwrap();
    infra_nats::provision(
        &async_nats::jetstream::new(client.clone()),
        &StreamSettings::default(),
    )
    .await
    .unwrap();
    // The same ledger the processes write to (the simulator keeps it in PostgreSQL).
    let provider = SimulatedProvider::install(db.pool.clone(), SimulatorConfig::default())
        .await
        .unwrap();
    let buses = Arc::new(
        SagaBuses::new(client.clone(), EventStoreConfig::default())
            .await
            .unwrap(),
    );
    for i in 0..SKUS {
        buses
            .inventory
            .execute(
                &sku(i),
                InventoryCommand::ReceiveStock {
                    sku: Sku::parse(sku(i)).unwrap(),
                    quantity: STOCK_PER_SKU,
                    reference: "opening".to_owned(),
                },
                &metadata(),
            )
            .await
            .unwrap();
    }

    let mut replicas = [spawn_saga(&nats, &db), spawn_saga(&nats, &db)];
    let placed = Arc::new(std::sync::Mutex::new(Vec::<OrderId>::new()));
    // The load: orders of one or two SKUs, a few declined cards, and customers cancelling
    // some orders at once or a little later.
    let load = {
        let buses = buses.clone();
        let placed = placed.clone();
        tokio::spawn(async move {
            let mut seed: u64 = 0xfeed;
            let mut orders = Vec::new();
            for n in 0..ORDERS {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let first = (seed >> 40) as usize % SKUS;
                let mut lines = vec![OrderLine {
                    sku: Sku::parse(sku(first)).unwrap(),
                    quantity: 1 + (seed >> 20) as u32 % 2,
                    unit_price: Money::new(1000 + (seed >> 50) as i64 % 500, Currency::EUR),
                }];
                if seed.is_multiple_of(3) {
                    lines.push(OrderLine {
                        sku: Sku::parse(sku((first + 1) % SKUS)).unwrap(),
                        quantity: 1,
                        unit_price: Money::new(700, Currency::EUR),
                    });
                }
                let token = if n.is_multiple_of(17) {
                    "tok_declined"
                } else {
                    "tok_visa"
                };
                let order_id = OrderId(Uuid::new_v4());
                buses
                    .orders
                    .execute(
                        &order_id.to_string(),
                        OrderCommand::PlaceOrder {
                            order_id,
                            customer_id: CustomerId(Uuid::new_v4()),
                            lines,
                            currency: Currency::EUR,
                            placed_at: Utc::now(),
                            shipping_address: None,
                            payment_method: PaymentMethod::Card {
                                token: token.to_owned(),
                            },
                        },
                        &metadata(),
                    )
                    .await
                    .unwrap();
                orders.push(order_id);
                placed.lock().unwrap().push(order_id);
                if n.is_multiple_of(11) {
                    let cancelled = orders[orders.len().saturating_sub(3)];
                    let _ = buses
                        .orders
                        .execute(
                            &cancelled.to_string(),
                            OrderCommand::CancelOrder {
                                reason: "changed my mind".to_owned(),
                                by: Canceller::Customer,
                            },
                            &metadata(),
                        )
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(12)).await;
            }
            orders
        })
    };

    let mut seed: u64 = 0x5a6a;
    let mut in_flight_at_kills = 0;
    for _ in 0..6 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(200 + (seed >> 33) % 400)).await;
        let victim = usize::from(seed >> 63 == 1);
        let recent: Vec<OrderId> = {
            let placed = placed.lock().unwrap();
            placed.iter().rev().take(20).copied().collect()
        };
        for order in recent {
            let saga = buses
                .sagas
                .store()
                .load_fresh(&order.to_string())
                .await
                .unwrap();
            if saga
                .state()
                .phase()
                .is_some_and(|phase| !phase.is_at_rest())
            {
                in_flight_at_kills += 1;
            }
        }
        replicas[victim].kill().expect("SIGKILL");
        replicas[victim].wait().unwrap();
        replicas[victim] = spawn_saga(&nats, &db);
    }
    let orders = load.await.unwrap();
    // The kills hit sagas mid-way (some of the orders placed last were still running).
    assert!(
        in_flight_at_kills > 0,
        "no saga was running when a replica was killed"
    );

    // Every order's saga rests.
    let mut phases = BTreeMap::new();
    for order in &orders {
        let phase = eventually("every saga to rest", Duration::from_secs(120), || async {
            let saga = buses
                .sagas
                .store()
                .load_fresh(&order.to_string())
                .await
                .ok()?;
            saga.state().phase().filter(|p| p.is_at_rest()).cloned()
        })
        .await;
        phases.insert(*order, phase);
    }
    for mut replica in replicas {
        replica.kill().unwrap();
        replica.wait().unwrap();
    }

    // Completed sagas are exactly the confirmed orders; every other order is cancelled.
    let mut confirmed_total = 0i64;
    let mut committed: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for (order, phase) in &phases {
        let state = buses
            .orders
            .store()
            .load_fresh(&order.to_string())
            .await
            .unwrap();
        let order_state = state.state();
        let status = order_state.status().unwrap();
        *outcomes.entry(phase.as_str()).or_default() += 1;
        match phase {
            Phase::Completed => {
                assert_eq!(status, OrderStatus::Confirmed, "order {order}");
                confirmed_total += order_state.total().unwrap().amount_minor;
                for line in order_state.lines() {
                    *committed.entry(line.sku.to_string()).or_default() += u64::from(line.quantity);
                }
            }
            Phase::Compensated { .. } => assert!(
                matches!(status, OrderStatus::Cancelled | OrderStatus::Refunded),
                "order {order} is {status:?}"
            ),
            other => panic!("order {order} rested in {other:?}"),
        }
    }
    assert!(
        outcomes.get("completed").copied().unwrap_or(0) > ORDERS / 3,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get("compensated").copied().unwrap_or(0) > 10,
        "{outcomes:?}"
    );

    // No double charge, nothing held: the provider's ledger equals the confirmed orders.
    let ledger = provider.ledger().await.unwrap();
    assert_eq!(ledger.authorised_held_minor, 0, "{ledger:?}");
    assert_eq!(
        ledger.captured_minor - ledger.refunded_minor,
        confirmed_total,
        "{ledger:?}"
    );
    // Stock committed for an order that ended cancelled came back.
    for (order, phase) in &phases {
        if !matches!(phase, Phase::Compensated { .. }) {
            continue;
        }
        let state = buses
            .orders
            .store()
            .load_fresh(&order.to_string())
            .await
            .unwrap();
        for line in state.state().lines() {
            let inventory = buses
                .inventory
                .store()
                .load_fresh(line.sku.as_str())
                .await
                .unwrap();
            let inventory = inventory.state();
            if inventory.committed_quantity(*order).is_some() {
                let history = buses
                    .sagas
                    .store()
                    .history(&order.to_string())
                    .await
                    .unwrap();
                let events: Vec<_> = history
                    .iter()
                    .flat_map(|c| {
                        c.envelope
                            .events
                            .iter()
                            .map(|e| (c.position, e.payload.to_string()))
                    })
                    .collect();
                assert!(
                    inventory.is_returned(*order),
                    "order {order} ended {phase:?} with {} committed and not returned; saga: {events:#?}",
                    line.sku
                );
            }
        }
    }
    // No stranded reservation; stock went out only for confirmed orders.
    for i in 0..SKUS {
        let inventory = buses.inventory.store().load_fresh(&sku(i)).await.unwrap();
        let inventory = inventory.state();
        assert_eq!(inventory.reserved(), 0, "{}", sku(i));
        assert_eq!(
            inventory.on_hand(),
            u64::from(STOCK_PER_SKU) - committed.get(&sku(i)).copied().unwrap_or(0),
            "{}",
            sku(i)
        );
    }
}
