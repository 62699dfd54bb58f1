//! Two `shopstream project` processes, one of them killed with SIGKILL at arbitrary
//! points, many times, under a steady load of real commands: afterwards the inventory read model equals the
//! test's own record of acknowledged commands, no effect is doubled, and the stored
//! position is the last applied commit.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::ids::{OrderId, Sku};
use domain::inventory::{Inventory, InventoryCommand};
use domain::metadata::{Actor, CommandMetadata};
use infra_nats::{CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore};
use testkit::{eventually, NatsServer, TestDatabase};
use uuid::Uuid;

/// What the acknowledged commands of one SKU add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expected {
    on_hand: i64,
    reserved: i64,
    movements: i64,
}

fn spawn_projector(nats: &NatsServer, db: &TestDatabase) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg("project")
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting shopstream project")
}

/// Drives one SKU with receipts, reservations, releases and commitments until told to
/// stop, recording every acknowledged command.
async fn drive(bus: Arc<CommandBus<Inventory>>, sku: String, running: Arc<AtomicBool>) -> Expected {
    let mut expected = Expected::default();
    let mut open: Vec<(OrderId, i64)> = Vec::new();
    let mut step = 0u32;
    let metadata = || CommandMetadata::new(Actor::System("test".into()));
    while running.load(Ordering::SeqCst) {
        step += 1;
        let command = match step % 4 {
            0 | 1 => InventoryCommand::ReceiveStock {
                sku: Sku::parse(sku.as_str()).unwrap(),
                quantity: 3,
                reference: format!("po-{step}"),
            },
            2 => InventoryCommand::ReserveStock {
                order_id: OrderId::from_uuid(Uuid::now_v7()),
                quantity: 2,
            },
            _ => match open.first() {
                Some((order_id, _)) if step % 8 == 3 => InventoryCommand::ReleaseReservation {
                    order_id: *order_id,
                    reason: "cancelled".into(),
                },
                Some((order_id, _)) => InventoryCommand::CommitReservation {
                    order_id: *order_id,
                },
                None => continue,
            },
        };
        let outcome = bus.execute(&sku, command.clone(), &metadata()).await;
        let Ok(outcome) = outcome else {
            panic!("command {command:?} on {sku} failed: {outcome:?}");
        };
        assert!(!outcome.duplicate);
        expected.movements += 1;
        match command {
            InventoryCommand::ReceiveStock { quantity, .. } => {
                expected.on_hand += i64::from(quantity);
            }
            InventoryCommand::ReserveStock { order_id, quantity } => {
                expected.reserved += i64::from(quantity);
                open.push((order_id, i64::from(quantity)));
            }
            InventoryCommand::ReleaseReservation { .. } => {
                let (_, quantity) = open.remove(0);
                expected.reserved -= quantity;
            }
            InventoryCommand::CommitReservation { .. } => {
                let (_, quantity) = open.remove(0);
                expected.reserved -= quantity;
                expected.on_hand -= quantity;
            }
            InventoryCommand::AdjustStock { .. }
            | InventoryCommand::ReturnCommittedStock { .. } => unreachable!(),
        }
    }
    expected
}

#[tokio::test]
async fn projector_processes_killed_at_random_points_converge_to_the_acknowledged_commands() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    // Provision the stream before the load starts.
    let client = infra_nats::connect(&nats.url()).await.unwrap();
    infra_nats::provision(
        &async_nats::jetstream::new(client.clone()),
        &infra_nats::StreamSettings::default(),
    )
    .await
    .unwrap();
    let store = JetStreamEventStore::<Inventory>::new(client.clone(), EventStoreConfig::default())
        .await
        .unwrap();
    let bus = Arc::new(CommandBus::new(store, (), ConflictPolicy::default()));

    let running = Arc::new(AtomicBool::new(true));
    let drivers: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(drive(
                Arc::clone(&bus),
                format!("SKU-{i}"),
                Arc::clone(&running),
            ))
        })
        .collect();

    // Two replicas run at once (one active per projector, one standby). Kill one of
    // them at pseudo-random points (a fixed seed, so a failure replays) and start it
    // again, eight times.
    let mut replicas = [spawn_projector(&nats, &db), spawn_projector(&nats, &db)];
    let mut seed: u64 = 0x5eed;
    let mut positions_at_kill = Vec::new();
    for _ in 0..8 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let alive = Duration::from_millis(300 + (seed >> 33) % 900);
        tokio::time::sleep(alive).await;
        let victim = usize::from(seed >> 63 == 1);
        replicas[victim].kill().expect("SIGKILL");
        replicas[victim].wait().unwrap();
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM projector_positions WHERE projector = 'inventory'",
        )
        .fetch_optional(&db.pool)
        .await
        .unwrap();
        positions_at_kill.push(position.unwrap_or(0));
        replicas[victim] = spawn_projector(&nats, &db);
    }
    running.store(false, Ordering::SeqCst);
    let mut expected = BTreeMap::new();
    for (i, driver) in drivers.into_iter().enumerate() {
        expected.insert(format!("SKU-{i}"), driver.await.unwrap());
    }
    // The kills hit a projector at work: it made progress between most of them.
    let progressed = positions_at_kill.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        progressed >= 4,
        "positions at each kill: {positions_at_kill:?}"
    );

    let last = infra_nats::stream_last_position(&async_nats::jetstream::new(client))
        .await
        .unwrap();
    eventually(
        "the inventory read model to catch up",
        Duration::from_secs(60),
        || async {
            let position: Option<i64> = sqlx::query_scalar(
                "SELECT position FROM projector_positions WHERE projector = 'inventory'",
            )
            .fetch_optional(&db.pool)
            .await
            .ok()
            .flatten();
            (position == Some(last as i64)).then_some(())
        },
    )
    .await;
    for mut replica in replicas {
        replica.kill().unwrap();
        replica.wait().unwrap();
    }

    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT sku, on_hand, reserved FROM inventory.stock_levels ORDER BY sku")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let movements: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, count(*) FROM inventory.movements GROUP BY sku ORDER BY sku")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let actual: BTreeMap<String, Expected> = rows
        .into_iter()
        .zip(movements)
        .map(|((sku, on_hand, reserved), (_, movements))| {
            (
                sku,
                Expected {
                    on_hand,
                    reserved,
                    movements,
                },
            )
        })
        .collect();
    assert_eq!(actual, expected);
    let newest_movement: i64 = sqlx::query_scalar("SELECT max(position) FROM inventory.movements")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        newest_movement, last as i64,
        "the position is the last applied commit"
    );
}
