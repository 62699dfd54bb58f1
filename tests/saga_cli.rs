//! `shopstream sagas ...` through the real binary, with `shopstream saga` and
//! `shopstream project` running as processes: list by state, show, and refusals that
//! change nothing.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::Utc;
use domain::inventory::InventoryCommand;
use domain::order::{Canceller, OrderCommand, OrderLine};
use domain::payment::PaymentMethod;
use domain::{Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, Sku};
use infra_nats::{EventStoreConfig, StreamSettings};
use saga::SagaBuses;
use testkit::cli::CliUser;
use testkit::{eventually, NatsServer, TestDatabase};
use uuid::Uuid;

fn command(nats: &NatsServer, db: &TestDatabase, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopstream"));
    command
        .args(args)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// Runs an operator command as `user`.
fn run(nats: &NatsServer, db: &TestDatabase, user: &CliUser, args: &[&str]) -> Output {
    command(nats, db, args)
        .env("SHOPSTREAM_TOKEN", &user.token)
        .output()
        .expect("running shopstream")
}

fn spawn(nats: &NatsServer, db: &TestDatabase, role: &str) -> Child {
    command(nats, db, &[role])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a role")
}

fn metadata() -> CommandMetadata {
    CommandMetadata::new(Actor::System("test".to_owned()))
}

#[tokio::test]
async fn operators_list_show_and_are_refused_without_a_reason_or_confirmation() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let client = infra_nats::connect(&nats.url()).await.unwrap();
    infra_nats::provision(
        &async_nats::jetstream::new(client.clone()),
        &StreamSettings::default(),
    )
    .await
    .unwrap();
    projections::migrate(&db.pool).await.unwrap();
    let operator = testkit::cli::sign_in(env!("CARGO_BIN_EXE_shopstream"), &db.url, "operator");
    let mut roles = [spawn(&nats, &db, "saga"), spawn(&nats, &db, "project")];
    let buses = SagaBuses::new(client, EventStoreConfig::default())
        .await
        .unwrap();
    let receive = InventoryCommand::ReceiveStock {
        sku: Sku::parse("MUG").unwrap(),
        quantity: 5,
        reference: "po-1".to_owned(),
    };
    buses
        .inventory
        .execute("MUG", receive, &metadata())
        .await
        .unwrap();
    // Paid with a card whose refunds fail, then cancelled after confirmation: parked.
    let order = OrderId(Uuid::new_v4());
    let place = OrderCommand::PlaceOrder {
        order_id: order,
        customer_id: CustomerId(Uuid::new_v4()),
        lines: vec![OrderLine {
            sku: Sku::parse("MUG").unwrap(),
            quantity: 1,
            unit_price: Money::new(850, Currency::EUR),
        }],
        currency: Currency::EUR,
        placed_at: Utc::now(),
        shipping_address: None,
        payment_method: PaymentMethod::Card {
            token: "tok_refund_fails".to_owned(),
        },
    };
    buses
        .orders
        .execute(&order.to_string(), place, &metadata())
        .await
        .unwrap();
    let id = order.to_string();
    let listed = |state: &'static str| {
        let (nats, db, operator, id) = (&nats, &db, &operator, id.clone());
        move || {
            let id = id.clone();
            async move {
                let output = run(
                    nats,
                    db,
                    operator,
                    &["sagas", "list", "--state", state, "--json"],
                );
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let sagas: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
                sagas
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|saga| saga["order_id"] == id.as_str())
                    .then_some(())
            }
        }
    };
    eventually(
        "the saga listed as completed",
        Duration::from_secs(60),
        listed("completed"),
    )
    .await;
    let cancel = OrderCommand::CancelOrder {
        reason: "changed my mind".to_owned(),
        by: Canceller::Customer,
    };
    buses
        .orders
        .execute(&id, cancel, &metadata())
        .await
        .unwrap();
    eventually(
        "the saga listed as compensation_failed",
        Duration::from_secs(60),
        listed("compensation_failed"),
    )
    .await;

    let shown = run(&nats, &db, &operator, &["sagas", "show", &id, "--json"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let history = view["history"].as_array().unwrap();
    // The card token is withheld from operators, in the events and the state.
    assert_eq!(history[0]["event"]["SagaStarted"]["card_token"], "withheld");
    assert_eq!(view["saga"]["run"]["card_token"], "withheld");
    assert!(history
        .iter()
        .any(|entry| entry["event"]["CompensationFailed"]["step"] == "refund"));
    let commits_before = history.len();

    // Refusals: no confirmation, a blank reason, an unknown state, an unknown saga.
    let unconfirmed = run(
        &nats,
        &db,
        &operator,
        &["sagas", "compensate", &id, "--reason", "give up"],
    );
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("not confirmed"));
    let blank = run(
        &nats,
        &db,
        &operator,
        &["sagas", "retry", &id, "--reason", " "],
    );
    assert!(!blank.status.success());
    assert!(String::from_utf8_lossy(&blank.stderr).contains("reason"));
    let bogus = run(
        &nats,
        &db,
        &operator,
        &["sagas", "list", "--state", "bogus"],
    );
    assert!(!bogus.status.success());
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("stuck_past_deadline"));
    let unknown = Uuid::new_v4().to_string();
    let missing = run(
        &nats,
        &db,
        &operator,
        &["sagas", "retry", &unknown, "--reason", "why"],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no saga"));
    let customer = testkit::cli::sign_in(env!("CARGO_BIN_EXE_shopstream"), &db.url, "customer");
    let not_an_operator = run(
        &nats,
        &db,
        &customer,
        &["sagas", "retry", &id, "--reason", "why"],
    );
    assert_eq!(not_an_operator.status.code(), Some(77));
    assert!(String::from_utf8_lossy(&not_an_operator.stderr).contains("caller: role customer"));
    let after = run(&nats, &db, &operator, &["sagas", "show", &id, "--json"]);
    let view: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(
        view["history"].as_array().unwrap().len(),
        commits_before,
        "nothing changed"
    );

    for role in &mut roles {
        role.kill().unwrap();
        role.wait().unwrap();
    }
}
