//! The auditor's tools: time travel against what the command bus reported at each step,
//! and `shopstream audit` through the real binary (output, exit codes, access log).

use std::process::{Command, Output, Stdio};

use chrono::Utc;
use domain::order::{Order, OrderCommand, OrderLine};
use domain::payment::PaymentMethod;
use domain::{Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, PaymentId, Sku};
use infra_nats::audit::{self, AuditError, Bound};
use infra_nats::{
    provision, subjects, CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore,
    StreamSettings,
};
use serde_json::Value;
use testkit::cli::CliUser;
use testkit::{NatsServer, TestDatabase};
use uuid::Uuid;

async fn connect(server: &NatsServer) -> async_nats::Client {
    let client = infra_nats::connect(&server.url()).await.unwrap();
    provision(
        &async_nats::jetstream::new(client.clone()),
        &StreamSettings::default(),
    )
    .await
    .unwrap();
    client
}

async fn order_store(client: &async_nats::Client) -> JetStreamEventStore<Order> {
    JetStreamEventStore::new(client.clone(), EventStoreConfig::default())
        .await
        .unwrap()
}

fn metadata() -> CommandMetadata {
    CommandMetadata::new(Actor::System("audit-test".to_owned()))
}

fn place(order_id: OrderId) -> OrderCommand {
    OrderCommand::PlaceOrder {
        order_id,
        customer_id: CustomerId(Uuid::from_u128(42)),
        lines: vec![OrderLine {
            sku: Sku::parse("TEE-M").unwrap(),
            quantity: 2,
            unit_price: Money::new(1_500, Currency::EUR),
        }],
        currency: Currency::EUR,
        payment_method: PaymentMethod::Card {
            token: "tok_ok".to_owned(),
        },
        shipping_address: None,
        placed_at: Utc::now(),
    }
}

/// Places an order and moves it through its life; returns its id and, after each
/// command, (version, position, state as the store loaded it right then).
async fn order_lifecycle(client: &async_nats::Client) -> (OrderId, Vec<(usize, u64, Value)>) {
    let bus = CommandBus::new(order_store(client).await, (), ConflictPolicy::default());
    // Another order first, so that the audited one does not start at position 1.
    let other = OrderId(Uuid::new_v4());
    bus.execute(&other.to_string(), place(other), &metadata())
        .await
        .unwrap();
    let order_id = OrderId(Uuid::new_v4());
    let id = order_id.to_string();
    let commands = [
        place(order_id),
        OrderCommand::MarkStockReserved,
        OrderCommand::MarkPaymentAuthorised {
            payment_id: PaymentId(Uuid::new_v4()),
        },
        OrderCommand::ConfirmOrder,
        OrderCommand::ShipOrder {
            carrier: "DHL".to_owned(),
            tracking: "123".to_owned(),
        },
    ];
    let mut steps = Vec::new();
    for command in commands {
        let outcome = bus.execute(&id, command, &metadata()).await.unwrap();
        let loaded = order_store(client).await.load_fresh(&id).await.unwrap();
        assert_eq!(loaded.version(), outcome.version);
        steps.push((
            outcome.version,
            outcome.position,
            serde_json::to_value(loaded.state()).unwrap(),
        ));
    }
    (order_id, steps)
}

#[tokio::test]
async fn the_state_at_each_version_and_position_is_what_the_bus_saw_then() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let (order_id, steps) = order_lifecycle(&client).await;
    let id = order_id.to_string();
    let history = order_store(&client).await.history(&id).await.unwrap();
    for ((version, position, state), commit) in steps.iter().zip(&history) {
        let by_version = audit::state_at(&client, "order", &id, Bound::Version(*version))
            .await
            .unwrap();
        assert_eq!(&by_version.state, state, "version {version}");
        assert_eq!(by_version.position, *position);
        let by_position = audit::state_at(&client, "order", &id, Bound::Position(*position))
            .await
            .unwrap();
        assert_eq!(&by_position.state, state, "position {position}");
        let at = audit::state_at(&client, "order", &id, Bound::At(commit.envelope.timestamp))
            .await
            .unwrap();
        assert_eq!(at.version, *version);
    }
    assert_eq!(steps[0].2["placed"]["status"], "Placed");
    assert_eq!(steps[4].2["placed"]["status"], "Shipped");
}

#[tokio::test]
async fn bounds_outside_the_history_are_refused() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let (order_id, steps) = order_lifecycle(&client).await;
    let id = order_id.to_string();
    let first_position = steps[0].1;
    for bound in [
        Bound::Version(0),
        Bound::Position(first_position - 1),
        Bound::At(Utc::now() - chrono::Duration::days(1)),
    ] {
        let result = audit::state_at(&client, "order", &id, bound).await;
        assert!(
            matches!(result, Err(AuditError::BeforeFirstEvent(_))),
            "{bound}: {result:?}"
        );
    }
    let past = audit::state_at(&client, "order", &id, Bound::Version(6)).await;
    assert!(
        matches!(past, Err(AuditError::VersionPastEnd { asked: 6, last: 5 })),
        "{past:?}"
    );
}

#[tokio::test]
async fn history_pages_through_every_event_with_its_metadata() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let (order_id, steps) = order_lifecycle(&client).await;
    let id = order_id.to_string();
    let first = audit::history(&client, "order", &id, 0, 3).await.unwrap();
    assert_eq!(first.events.len(), 3);
    assert_eq!(first.next_after_version, Some(3));
    let rest = audit::history(&client, "order", &id, 3, 3).await.unwrap();
    assert_eq!(rest.next_after_version, None);
    let versions: Vec<usize> = first
        .events
        .iter()
        .chain(&rest.events)
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    let placed = &first.events[0];
    assert_eq!(placed.event_type, "OrderPlaced");
    assert_eq!(placed.position, steps[0].1);
    assert_eq!(placed.actor, "system:audit-test");
    assert!(placed.commit_hash.is_some());
}

// ---------------------------------------------------------------------------------------
// Through the binary

/// An auditor signed in through the binary.
fn auditor(db: &TestDatabase) -> CliUser {
    testkit::cli::sign_in(env!("CARGO_BIN_EXE_shopstream"), &db.url, "auditor")
}

fn shopstream(nats: &NatsServer, db: &TestDatabase, user: &CliUser, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(args)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("SHOPSTREAM_TOKEN", &user.token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running shopstream")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn audit_history_prints_the_events_and_records_who_looked() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let client = connect(&nats).await;
    let (order_id, _) = order_lifecycle(&client).await;
    let id = order_id.to_string();

    let auditor = auditor(&db);

    let output = shopstream(
        &nats,
        &db,
        &auditor,
        &["audit", "history", "order", &id, "--limit", "2", "-j"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let page: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after_version"], 2);

    let (actor, action, target_id): (String, String, String) = sqlx::query_as(
        "SELECT actor, action, target_id FROM audit.access_log ORDER BY access_id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (actor.as_str(), action.as_str(), target_id.as_str()),
        (auditor.actor().as_str(), "history", id.as_str())
    );

    let access = shopstream(&nats, &db, &auditor, &["audit", "access", "-j"]);
    assert!(access.status.success(), "{}", stderr(&access));
    let rows: Value = serde_json::from_str(&stdout(&access)).unwrap();
    assert_eq!(rows[0]["action"], "access");
    assert_eq!(rows[0]["actor"], auditor.actor());
    assert_eq!(rows[1]["action"], "history");
}

#[tokio::test]
async fn audit_state_prints_the_state_and_refuses_bounds_outside_the_history() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let client = connect(&nats).await;
    let (order_id, _) = order_lifecycle(&client).await;
    let id = order_id.to_string();
    let auditor = auditor(&db);

    let output = shopstream(
        &nats,
        &db,
        &auditor,
        &["audit", "state", "order", &id, "--version", "1"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("\"Placed\""),
        "{}",
        stdout(&output)
    );

    let past = shopstream(
        &nats,
        &db,
        &auditor,
        &["audit", "state", "order", &id, "--version", "9"],
    );
    assert_eq!(past.status.code(), Some(1));
    assert!(
        stderr(&past).contains("last version 5"),
        "{}",
        stderr(&past)
    );

    let unknown = shopstream(&nats, &db, &auditor, &["audit", "history", "basket", &id]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("unknown aggregate type"),
        "{}",
        stderr(&unknown)
    );

    let missing = shopstream(&nats, &db, &auditor, &["audit", "history", "order", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("has no events"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn audit_verify_exits_2_once_a_forged_commit_is_on_the_log() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let client = connect(&nats).await;
    let (order_id, _) = order_lifecycle(&client).await;
    let id = order_id.to_string();
    let auditor = auditor(&db);

    let clean = shopstream(
        &nats,
        &db,
        &auditor,
        &["audit", "verify", "--type", "order"],
    );
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    assert!(
        stdout(&clean).contains("no damage found"),
        "{}",
        stdout(&clean)
    );

    let history = order_store(&client).await.history(&id).await.unwrap();
    let mut forged = history[0].envelope.clone();
    forged.events[0].payload["OrderPlaced"]["customer_id"] =
        Value::String(Uuid::from_u128(666).to_string());
    let js = async_nats::jetstream::new(client);
    let position = js
        .publish(
            subjects::aggregate_subject("order", &id),
            serde_json::to_vec(&forged).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    let damaged = shopstream(&nats, &db, &auditor, &["audit", "verify", "-j"]);
    assert_eq!(damaged.status.code(), Some(2), "{}", stderr(&damaged));
    let report: Value = serde_json::from_str(&stdout(&damaged)).unwrap();
    let kinds: Vec<(&str, u64)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["position"].as_u64().unwrap()))
        .collect();
    assert_eq!(kinds, [("altered", position), ("reordered", position)]);
}
