//! `shopstream replay` through the real binary against a running shop: a replay repairs
//! a damaged read model, a second one changes nothing, neither sends a notification nor
//! calls the payment provider; the saga's replay mode records nothing and reports what
//! the live trigger missed; an interrupted replay resumes where it stopped; bad input
//! changes nothing.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::{address, order_until, Shop};

const PLACE: &str = "mutation($input: OrderPlaceInput!) {
    orderPlace(input: $input) { order { id } userErrors { code } } }";

/// An operator's session token for the shop's CLI.
fn operator(shop: &Shop) -> String {
    sign_in(shop, "operator")
}

fn sign_in(shop: &Shop, role: &str) -> String {
    testkit::cli::sign_in(
        env!("CARGO_BIN_EXE_shopstream"),
        &shop.settings().database_url,
        role,
    )
    .token
}

fn shopstream(shop: &Shop, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(args)
        .env("SHOPSTREAM_TOKEN", token)
        .env("NATS_URL", &shop.settings().nats_url)
        .env("DATABASE_URL", &shop.settings().database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every row of every table of `schema`, as sorted JSON per table.
async fn dump(pool: &PgPool, schema: &str) -> Vec<(String, String)> {
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut dump = Vec::new();
    for (table,) in tables {
        let (rows,): (String,) = sqlx::query_as(&format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]')::text
               FROM \"{schema}\".\"{table}\" t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        dump.push((table, rows));
    }
    dump
}

/// Everything a replay must not change besides the read model it repairs: the log's
/// end, the payment provider's ledger, the notifications sent or queued, every other
/// read model.
async fn untouched(shop: &Shop) -> Value {
    let db = shop.db();
    let js = async_nats::jetstream::new(
        async_nats::connect(&shop.settings().nats_url)
            .await
            .unwrap(),
    );
    let (_, last) = infra_nats::stream_range(&js).await.unwrap();
    let mut state = json!({ "log_end": last });
    for schema in [
        "payment_simulator",
        "outbox",
        "notifications",
        "catalog",
        "inventory",
        "payments",
        "sales",
        "sagas",
    ] {
        state[schema] = json!(dump(&db, schema).await);
    }
    state
}

/// Compares two [`untouched`] states, naming what differs.
fn assert_untouched(before: &Value, after: &Value) {
    for (key, value) in before.as_object().unwrap() {
        assert_eq!(
            Some(value),
            after.get(key),
            "`{key}` changed:\nbefore {value}\nafter  {}",
            after[key]
        );
    }
}

/// Waits until every projector has applied everything of its aggregate types.
async fn settled(shop: &Shop) {
    let js = async_nats::jetstream::new(
        async_nats::connect(&shop.settings().nats_url)
            .await
            .unwrap(),
    );
    let db = shop.db();
    testkit::eventually(
        "every projector to catch up",
        Duration::from_secs(60),
        || async {
            for projection in projections::registry::all() {
                let status = projections::status::projector_status(&db, &js, projection.as_ref())
                    .await
                    .ok()?;
                if status.lag_events > 0 || status.position == 0 {
                    return None;
                }
            }
            // And the dispatcher has sent what the notifier queued (it marks rows sent).
            let (unsent,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM outbox.notifications WHERE sent_at IS NULL")
                    .fetch_one(&db)
                    .await
                    .ok()?;
            (unsent == 0).then_some(())
        },
    )
    .await;
}

async fn place(shop: &Shop, customer: &str, sku: &str, token: &str) -> String {
    let placed = shop
        .ok(
            Some(customer),
            PLACE,
            json!({ "input": { "lines": [{ "sku": sku, "quantity": 1 }], "paymentToken": token,
                               "shippingAddress": address() } }),
        )
        .await;
    assert_eq!(placed["orderPlace"]["userErrors"], json!([]), "{placed}");
    placed["orderPlace"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn uuid_of(global_id: &str) -> uuid::Uuid {
    global_id.rsplit('/').next().unwrap().parse().unwrap()
}

async fn replays(db: &PgPool) -> Vec<(String, String, i64, i64, Value)> {
    sqlx::query_as(
        "SELECT target, status, cursor, delivered, outcome FROM public.replays ORDER BY started_at",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// A shop with one confirmed, one declined (compensated) and one cancelled order.
async fn shop_with_history() -> (Shop, String) {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    let customer = shop.customer().await;
    shop.product(&admin, &[("MUG-R", "9.50")], 10).await;
    let confirmed = place(&shop, &customer, "MUG-R", "tok_visa").await;
    let declined = place(&shop, &customer, "MUG-R", "tok_declined").await;
    let cancelled = place(&shop, &customer, "MUG-R", "tok_visa").await;
    order_until(&shop, &customer, &confirmed, |o| o["status"] == "CONFIRMED").await;
    order_until(&shop, &customer, &declined, |o| o["status"] == "CANCELLED").await;
    order_until(&shop, &customer, &cancelled, |o| o["status"] == "CONFIRMED").await;
    let cancel = shop
        .ok(
            Some(&customer),
            "mutation($id: ID!) { orderCancel(input: { id: $id, reason: \"changed my mind\" }) {
                userErrors { code } } }",
            json!({ "id": cancelled }),
        )
        .await;
    assert_eq!(cancel["orderCancel"]["userErrors"], json!([]), "{cancel}");
    order_until(&shop, &customer, &cancelled, |o| o["status"] == "REFUNDED").await;
    settled(&shop).await;
    (shop, confirmed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_repairs_a_read_model_and_a_second_replay_changes_nothing() {
    let (shop, confirmed) = shop_with_history().await;
    let op = operator(&shop);
    let db = shop.db();
    let healthy = dump(&db, "orders").await;
    let before = untouched(&shop).await;

    // Damage: the confirmed order vanishes from the orders read model.
    let order_id = uuid_of(&confirmed);
    for table in ["order_payments", "status_timeline", "order_lines", "orders"] {
        sqlx::query(&format!("DELETE FROM orders.{table} WHERE order_id = $1"))
            .bind(order_id)
            .execute(&db)
            .await
            .unwrap();
    }
    assert_ne!(dump(&db, "orders").await, healthy);

    let first = shopstream(
        &shop,
        &op,
        &["replay", "--target", "orders", "--reason", "repair", "-f"],
    );
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("finished"),
        "{}",
        text(&first)
    );
    assert_eq!(
        dump(&db, "orders").await,
        healthy,
        "the replay restores the order"
    );

    let second = shopstream(
        &shop,
        &op,
        &["replay", "--target", "orders", "--reason", "again", "-f"],
    );
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(
        dump(&db, "orders").await,
        healthy,
        "a second replay changes nothing"
    );

    // The notifier and the saga in replay mode: no notification, no payment call, no
    // command (the log's end does not move).
    let notifier = shopstream(
        &shop,
        &op,
        &["replay", "--target", "notifier", "--reason", "check", "-f"],
    );
    assert!(notifier.status.success(), "{}", text(&notifier));
    for _ in 0..2 {
        let saga = shopstream(
            &shop,
            &op,
            &[
                "replay", "--target", "saga", "--reason", "check", "-f", "--json",
            ],
        );
        assert!(saga.status.success(), "{}", text(&saga));
        let job: Value = serde_json::from_slice(&saga.stdout).unwrap();
        // Three placements started their sagas; one customer cancellation was noted.
        assert_eq!(
            job["outcome"],
            json!({ "handled": 4 }),
            "every order event is already handled: {job}"
        );
        assert_eq!(job["findings"], json!([]));
    }
    assert_untouched(&before, &untouched(&shop).await);

    let jobs = replays(&db).await;
    assert_eq!(jobs.len(), 5, "{jobs:?}");
    assert!(
        jobs.iter().all(|(_, status, ..)| status == "finished"),
        "{jobs:?}"
    );
    // Both orders replays handed the same commits to the projector, once each.
    assert_eq!(jobs[0].3, jobs[1].3);
    assert!(jobs[0].3 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_replay_reports_an_order_the_live_trigger_never_reached_and_does_nothing() {
    let shop = Shop::start_api(crate::support::api_settings()).await;
    shop.start_projectors();
    let op = operator(&shop);
    let admin = shop.admin().await;
    let customer = shop.customer().await;
    shop.product(&admin, &[("LAMP-R", "30.00")], 5).await;
    // No saga role runs: the order is placed and nothing drives it.
    let order = place(&shop, &customer, "LAMP-R", "tok_visa").await;
    let before = untouched(&shop).await;

    let missed = shopstream(
        &shop,
        &op,
        &[
            "replay", "--target", "saga", "--reason", "audit", "-f", "--json",
        ],
    );
    assert!(missed.status.success(), "{}", text(&missed));
    let job: Value = serde_json::from_slice(&missed.stdout).unwrap();
    assert_eq!(job["outcome"], json!({ "would_act": 1 }), "{job}");
    assert_eq!(job["findings"][0]["order_id"], uuid_of(&order).to_string());
    assert_eq!(job["findings"][0]["reaction"], "start");
    // Judged only: no saga started, no command, no payment call.
    assert_untouched(&before, &untouched(&shop).await);

    shop.start_saga();
    order_until(&shop, &customer, &order, |o| o["status"] == "CONFIRMED").await;
    let handled = shopstream(
        &shop,
        &op,
        &[
            "replay",
            "--target",
            "saga",
            "--aggregate",
            &format!("order:{}", uuid_of(&order)),
            "--reason",
            "audit",
            "-f",
            "--json",
        ],
    );
    assert!(handled.status.success(), "{}", text(&handled));
    let job: Value = serde_json::from_slice(&handled.stdout).unwrap();
    assert_eq!(job["outcome"], json!({ "handled": 1 }), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_resumes_where_it_stopped_and_delivers_each_commit_once() {
    let (shop, _) = shop_with_history().await;
    let op = operator(&shop);
    let db = shop.db();
    let healthy = dump(&db, "orders").await;
    sqlx::query(
        "TRUNCATE orders.order_payments, orders.status_timeline, orders.order_lines, orders.orders",
    )
    .execute(&db)
    .await
    .unwrap();

    // Slow enough to be interrupted mid-way: 1 commit per chunk, 4 per second.
    let args = [
        "replay", "--target", "orders", "--reason", "repair", "-f", "--chunk", "1", "--rate", "4",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(args)
        .env("NATS_URL", &shop.settings().nats_url)
        .env("DATABASE_URL", &shop.settings().database_url)
        .env("SHOPSTREAM_TOKEN", &op)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    testkit::eventually(
        "the replay to apply a few commits",
        Duration::from_secs(30),
        || async {
            let jobs = replays(&db).await;
            jobs.first().filter(|job| job.3 >= 3).map(|_| ())
        },
    )
    .await;
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let interrupted = child.wait_with_output().unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(130),
        "{}",
        text(&interrupted)
    );
    let jobs = replays(&db).await;
    assert_eq!(jobs[0].1, "running", "{jobs:?}");
    let stopped_at = jobs[0].2;

    let resumed = shopstream(&shop, &op, &args.map(|a| if a == "4" { "0" } else { a }));
    // Another rate is the same selection: it resumes.
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        String::from_utf8_lossy(&resumed.stdout)
            .contains(&format!("interrupted at position {stopped_at}")),
        "{}",
        text(&resumed)
    );
    assert_eq!(dump(&db, "orders").await, healthy);

    // Exactly once: the resumed job delivered as many commits as a fresh full replay.
    let jobs = replays(&db).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].1, "finished");
    let full = shopstream(
        &shop,
        &op,
        &["replay", "--target", "orders", "--reason", "count", "-f"],
    );
    assert!(full.status.success(), "{}", text(&full));
    let jobs = replays(&db).await;
    assert_eq!(jobs[0].3, jobs[1].3, "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_and_bad_input_change_nothing() {
    let (shop, confirmed) = shop_with_history().await;
    let op = operator(&shop);
    let db = shop.db();
    let orders = dump(&db, "orders").await;
    let before = untouched(&shop).await;

    let dry = shopstream(
        &shop,
        &op,
        &[
            "replay",
            "--target",
            "orders",
            "--aggregate",
            &format!("order:{}", uuid_of(&confirmed)),
            "--dry-run",
            "--json",
        ],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        report["summary"]["aggregates"],
        json!({ "order": 1 }),
        "{report}"
    );
    // Placed, reserved and authorised, confirmed and paid: three commits of that order.
    assert_eq!(report["summary"]["commits"], 3, "{report}");
    assert_eq!(report["consumers"], json!(["orders"]));
    let text_dry = shopstream(&shop, &op, &["replay", "--target", "sales", "--dry-run"]);
    assert!(text_dry.status.success(), "{}", text(&text_dry));
    assert!(String::from_utf8_lossy(&text_dry.stdout).contains("dry run: nothing changed"));

    let refusals: [(&[&str], &str); 8] = [
        (
            &["replay", "--target", "nope", "--reason", "x", "-f"],
            "no projection named `nope`",
        ),
        (
            &[
                "replay",
                "--target",
                "orders",
                "--to-position",
                "999999",
                "--reason",
                "x",
                "-f",
            ],
            "past the end of the log",
        ),
        (
            &[
                "replay",
                "--target",
                "orders",
                "--from-position",
                "9",
                "--to-position",
                "3",
                "--reason",
                "x",
                "-f",
            ],
            "the range is empty",
        ),
        (
            &[
                "replay",
                "--target",
                "catalog",
                "--aggregate",
                "order",
                "--reason",
                "x",
                "-f",
            ],
            "consumes only product",
        ),
        (
            &[
                "replay",
                "--target",
                "orders",
                "--aggregate",
                "widget",
                "--reason",
                "x",
                "-f",
            ],
            "no aggregate type `widget`",
        ),
        (
            &["replay", "--target", "orders", "-f"],
            "a reason is required",
        ),
        (
            &[
                "replay",
                "--target",
                "orders",
                "--since",
                "2999-01-01T00:00:00Z",
                "--reason",
                "x",
                "-f",
            ],
            "nothing was stored at or after",
        ),
        // Without -f and without anyone to say yes.
        (
            &["replay", "--target", "orders", "--reason", "x"],
            "not confirmed",
        ),
    ];
    for (args, expected) in refusals {
        let output = shopstream(&shop, &op, args);
        assert!(!output.status.success(), "{args:?} {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{args:?}: {}",
            text(&output)
        );
    }
    // A customer or an auditor may not replay: refused (exit 77) and recorded.
    for role in ["customer", "auditor"] {
        let token = sign_in(&shop, role);
        let refused = shopstream(
            &shop,
            &token,
            &["replay", "--target", "orders", "--reason", "x", "-f"],
        );
        assert_eq!(refused.status.code(), Some(77), "{}", text(&refused));
    }
    let (refusals,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit.access_log WHERE action = 'refused:replay'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(refusals, 2);
    assert!(replays(&db).await.is_empty());
    assert_eq!(dump(&db, "orders").await, orders);
    assert_untouched(&before, &untouched(&shop).await);
}
