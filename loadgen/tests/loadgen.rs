//! `shopstream-loadgen` against the real roles (serve, project, saga as `shopstream`
//! processes), and `shopstream-loadgen check` finding every invariant intact after it,
//! or naming the one that is broken.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::Utc;
use domain::order::{OrderCommand, OrderLine};
use domain::payment::PaymentMethod;
use domain::{Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, Sku};
use infra_nats::{EventStoreConfig, StreamSettings};
use serde_json::{json, Value};
use testkit::{eventually, NatsServer, TestDatabase};
use uuid::Uuid;

/// The roles' binary: another package's, so built here (see `workspace_binary`).
static BIN: LazyLock<PathBuf> =
    LazyLock::new(|| testkit::cli::workspace_binary("shopstream", "shopstream"));
const LOADGEN: &str = env!("CARGO_BIN_EXE_shopstream-loadgen");

/// Role processes, killed when the test ends (also when it fails).
struct Roles(Vec<Child>);

impl Drop for Roles {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    // The port is free once the listener is dropped; `serve` binds it right after.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn role(name: &str, nats: &NatsServer, db: &TestDatabase, http: SocketAddr) -> Child {
    Command::new(&*BIN)
        .arg(name)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("HTTP_ADDR", http.to_string())
        // The load comes from one address and a few accounts: no rate limits.
        .env("RATE_LIMIT_IP_PER_SECOND", "0")
        .env("RATE_LIMIT_USER_PER_SECOND", "0")
        // A busy test machine may hold the projectors back for a while: the payloads'
        // bounded wait for the read models should not be what fails.
        .env("READ_YOUR_WRITES_TIMEOUT_MS", "30000")
        // Two API replicas accept each other's tokens.
        .env("JWT_SECRET", "loadgen-test-secret-loadgen-test-secret")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting shopstream {name}: {e}"))
}

fn check(nats: &NatsServer, db: &TestDatabase, record: &Path, settle: &str) -> Output {
    Command::new(LOADGEN)
        .args(["check", "--settle-timeout", settle, "--record"])
        .arg(record)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running shopstream-loadgen check")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn migrate(db: &TestDatabase) {
    let output = Command::new(&*BIN)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}

fn write_record(path: &Path, entries: &[Value]) {
    let lines: Vec<String> = entries.iter().map(Value::to_string).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_through_the_api_leaves_every_invariant_intact() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let admin = testkit::cli::sign_in(&*BIN, &db.url, "admin");
    let (api, other_api) = (free_addr(), free_addr());
    let _roles = Roles(vec![
        role("serve", &nats, &db, api),
        role("serve", &nats, &db, other_api),
        role("project", &nats, &db, api),
        role("saga", &nats, &db, api),
    ]);
    for http in [api, other_api] {
        eventually("the API to answer", Duration::from_secs(60), || async {
            let (status, _) = testkit::http_get(http, "/livez").await.ok()?;
            (status == 200).then_some(())
        })
        .await;
    }

    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let run = Command::new(LOADGEN)
        .args([
            "--url",
            &format!("http://{api}/graphql,http://{other_api}/graphql"),
            "--rate",
            "25",
            "--duration",
            "4s",
            "--setup",
            "--products",
            "5",
            "--stock",
            "200",
            "--customers",
            "4",
            "--seed",
            "7",
            "--timeout",
            "60s",
            "--mix",
            "browse=3,search=2,detail=2,cart_add=3,cart_update=1,checkout=5,order_status=2,cancel=2,restock=1",
            "--json",
            "--record",
        ])
        .arg(&record)
        .env("LOADGEN_ADMIN_EMAIL", &admin.email)
        .env("LOADGEN_ADMIN_PASSWORD", testkit::cli::PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();

    // 100 requests were offered and all answered, without an error.
    let total = summary["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["operation"] == "total")
        .unwrap();
    assert_eq!(total["requests"], 100, "{summary:#}");
    assert_eq!(total["errors"], 0, "{summary:#}");
    let orders = summary["acknowledged"]["orders"].as_u64().unwrap();
    assert!(orders > 0, "{summary:#}");
    // The record holds exactly what was acknowledged: the setup's receipts (one per SKU
    // at least), the orders and the cancellations.
    let recorded: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let count = |kind: &str| recorded.iter().filter(|e| e["kind"] == kind).count() as u64;
    assert_eq!(count("order"), orders);
    assert_eq!(
        count("cancel"),
        summary["acknowledged"]["cancellations"].as_u64().unwrap()
    );
    assert_eq!(
        count("receive"),
        summary["acknowledged"]["receipts"].as_u64().unwrap()
    );
    assert!(count("receive") >= 5, "{summary:#}");
    // Both replicas served the load's orders.
    for http in [api, other_api] {
        let (_, metrics) = testkit::http_get(http, "/metrics").await.unwrap();
        assert!(
            metrics.contains(r#"field="orderPlace""#),
            "{http} placed no order: {metrics}"
        );
    }

    let checked = check(&nats, &db, &record, "120s");
    assert!(
        checked.status.success(),
        "{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    let report = text(&checked.stdout);
    assert!(report.contains("every invariant holds"), "{report}");
    assert!(
        report.contains(&format!("checked {orders} acknowledged orders")),
        "{report}"
    );
}

#[tokio::test]
async fn an_acknowledged_order_missing_from_the_log_is_reported_lost() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    migrate(&db);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let ghost = Uuid::new_v4();
    write_record(
        &record,
        &[json!({ "kind": "order", "order_id": ghost, "position": 42,
                  "lines": [{ "sku": "GHOST-1", "quantity": 1 }], "payment_token": "tok_visa",
                  "customer": "ghost@loadgen.test", "at": Utc::now() })],
    );

    let checked = check(&nats, &db, &record, "1s");

    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked.stderr));
    let report = text(&checked.stdout);
    assert!(
        report.contains(&format!(
            "VIOLATION acknowledged order lost: order {ghost} was acknowledged at position 42"
        )),
        "{report}"
    );
}

#[tokio::test]
async fn an_acknowledged_receipt_the_log_does_not_hold_is_reported_lost() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    migrate(&db);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    write_record(
        &record,
        &[
            json!({ "kind": "receive", "sku": "GHOST-1", "quantity": 5, "reference": "setup",
                  "position": 7, "at": Utc::now() }),
        ],
    );

    let checked = check(&nats, &db, &record, "1s");

    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked.stderr));
    let report = text(&checked.stdout);
    assert!(
        report.contains(
            "VIOLATION acknowledged receipt lost: GHOST-1: 5 units were acknowledged as received, the log shows 0"
        ),
        "{report}"
    );
}

#[tokio::test]
async fn an_order_whose_saga_never_ran_is_reported_not_terminal() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    migrate(&db);
    // An order placed in the log with no saga role running: it stays placed.
    let client = infra_nats::connect(&nats.url()).await.unwrap();
    infra_nats::provision(
        &async_nats::jetstream::new(client.clone()),
        &StreamSettings::default(),
    )
    .await
    .unwrap();
    let buses = saga::SagaBuses::new(client, EventStoreConfig::default())
        .await
        .unwrap();
    let order_id = OrderId(Uuid::new_v4());
    let placed = buses
        .orders
        .execute(
            &order_id.to_string(),
            OrderCommand::PlaceOrder {
                order_id,
                customer_id: CustomerId(Uuid::new_v4()),
                lines: vec![OrderLine {
                    sku: Sku::parse("MUG-1").unwrap(),
                    quantity: 1,
                    unit_price: Money::new(1250, Currency::EUR),
                }],
                currency: Currency::EUR,
                placed_at: Utc::now(),
                shipping_address: None,
                payment_method: PaymentMethod::Card {
                    token: "tok_visa".to_owned(),
                },
            },
            &CommandMetadata {
                command_id: Uuid::new_v4(),
                correlation_id: Uuid::new_v4(),
                causation_id: Uuid::new_v4(),
                actor: Actor::System("test".to_owned()),
            },
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    write_record(
        &record,
        &[
            json!({ "kind": "order", "order_id": order_id.as_uuid(), "position": placed.position,
                  "lines": [{ "sku": "MUG-1", "quantity": 1 }], "payment_token": "tok_visa",
                  "customer": "c@loadgen.test", "at": Utc::now() }),
        ],
    );

    let checked = check(&nats, &db, &record, "1s");

    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked.stderr));
    let report = text(&checked.stdout);
    assert!(
        report.contains(&format!(
            "VIOLATION order not terminal: order {} is still placed (saga not started)",
            order_id.as_uuid()
        )),
        "{report}"
    );
    assert!(!report.contains("acknowledged order lost"), "{report}");
}

#[tokio::test]
async fn two_notifications_of_one_kind_for_one_order_are_reported() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    migrate(&db);
    let order = Uuid::new_v4();
    for position in [10_i64, 11] {
        sqlx::query(
            "INSERT INTO outbox.notifications
                (id, position, event_index, kind, customer_id, order_id, payload, occurred_at)
             VALUES ($1, $2, 0, 'order_confirmed', $3, $4, '{}', now())",
        )
        .bind(Uuid::new_v4())
        .bind(position)
        .bind(Uuid::new_v4())
        .bind(order)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    write_record(&record, &[]);

    let checked = check(&nats, &db, &record, "1s");

    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked.stderr));
    let report = text(&checked.stdout);
    assert!(
        report.contains(&format!(
            "VIOLATION duplicate notification: order {order}: 2 `order_confirmed` notifications in the outbox"
        )),
        "{report}"
    );
}
