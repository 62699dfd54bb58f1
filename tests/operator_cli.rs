//! The operator commands through the real binary: output, exit codes, and refusals that
//! change nothing.

use std::process::{Command, Output, Stdio};

use testkit::cli::CliUser;
use testkit::{NatsServer, TestDatabase};

/// An account of `role` signed in through the binary.
fn signed_in(db: &TestDatabase, role: &str) -> CliUser {
    testkit::cli::sign_in(env!("CARGO_BIN_EXE_shopstream"), &db.url, role)
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
async fn projections_status_lists_every_projector_as_json() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let operator = signed_in(&db, "operator");
    let output = shopstream(&nats, &db, &operator, &["projections", "status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let statuses: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let names: Vec<&str> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "catalog",
            "inventory",
            "orders",
            "payments",
            "sagas",
            "sales",
            "notifier"
        ]
    );
    assert!(statuses
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["lag_events"] == 0));
}

#[tokio::test]
async fn a_rebuild_needs_a_known_projection_and_a_confirmation() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let operator = signed_in(&db, "operator");

    let unknown = shopstream(
        &nats,
        &db,
        &operator,
        &["projections", "rebuild", "nope", "-f"],
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no projection named `nope`")
            && stderr(&unknown).contains("inventory"),
        "{}",
        stderr(&unknown)
    );

    // No answer on stdin: refused, nothing changed.
    let unconfirmed = shopstream(
        &nats,
        &db,
        &operator,
        &["projections", "rebuild", "inventory"],
    );
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("not confirmed"),
        "{}",
        stderr(&unconfirmed)
    );

    let forced = shopstream(
        &nats,
        &db,
        &operator,
        &["projections", "rebuild", "inventory", "-f"],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        stdout(&forced).contains("rebuilt `inventory`"),
        "{}",
        stdout(&forced)
    );
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'inventory%' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(schemas, ["inventory"]);
}

#[tokio::test]
async fn dead_letter_commands_refuse_unknown_ids_and_list_as_json() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let operator = signed_in(&db, "operator");
    let listed = shopstream(&nats, &db, &operator, &["dlq", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout(&listed).trim(), "[]");

    let grouped = shopstream(&nats, &db, &operator, &["dlq", "list", "--group", "--json"]);
    assert!(grouped.status.success(), "{}", stderr(&grouped));
    assert_eq!(stdout(&grouped).trim(), "[]");

    let id = uuid::Uuid::now_v7().to_string();
    let retry = shopstream(
        &nats,
        &db,
        &operator,
        &["dlq", "retry", &id, "--reason", "test"],
    );
    assert!(!retry.status.success());
    assert!(
        stderr(&retry).contains(&format!("no dead letter with id {id}")),
        "{}",
        stderr(&retry)
    );

    let no_reason = shopstream(&nats, &db, &operator, &["dlq", "skip", &id]);
    assert!(!no_reason.status.success());
    assert!(
        stderr(&no_reason).contains("--reason"),
        "{}",
        stderr(&no_reason)
    );

    let actions: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_actions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(actions, 0, "a refused action records nothing");
}

#[tokio::test]
async fn accounts_create_makes_a_first_admin_who_can_sign_in_and_refuses_a_second_with_the_email() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let create = |password: &str, role: &str| {
        Command::new(env!("CARGO_BIN_EXE_shopstream"))
            .args([
                "accounts",
                "create",
                "--email",
                "Boss@Shop.example",
                "--role",
                role,
            ])
            .env("NATS_URL", nats.url())
            .env("DATABASE_URL", &db.url)
            .env("SHOPSTREAM_PASSWORD", password)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("running shopstream")
    };
    let output = create("a long enough password", "admin");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("created admin account boss@shop.example"));
    let role: String =
        sqlx::query_scalar("SELECT role FROM accounts.accounts WHERE email = 'boss@shop.example'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(role, "admin");

    let again = create("another long password", "admin");
    assert!(!again.status.success());
    let short = create("short", "customer");
    assert!(!short.status.success());
    let bad_role = create("a long enough password", "superuser");
    assert!(!bad_role.status.success());
    assert!(
        stderr(&bad_role).contains("--role"),
        "{}",
        stderr(&bad_role)
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts.accounts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn schema_prints_the_checked_in_sdl() {
    let output = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg("schema")
        .output()
        .expect("running shopstream");
    assert!(output.status.success());
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert_eq!(stdout(&output), checked_in);
}

/// The event store, the migrated database and the inventory projection of one test.
struct Shop {
    nats: NatsServer,
    db: TestDatabase,
    jetstream: async_nats::jetstream::Context,
    operator: CliUser,
}

/// A SKU whose stock rows the `refuse_poison` trigger refuses while it exists (as it
/// does every SKU starting with `POISON-`).
const POISON: &str = "POISON-1";

impl Shop {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let db = TestDatabase::create().await.unwrap();
        projections::migrate(&db.pool).await.unwrap();
        let client = infra_nats::connect(&nats.url()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        infra_nats::provision(&jetstream, &infra_nats::StreamSettings::default())
            .await
            .unwrap();
        let operator = signed_in(&db, "operator");
        Self {
            nats,
            db,
            jetstream,
            operator,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        shopstream(&self.nats, &self.db, &self.operator, args)
    }

    /// Appends one commit receiving `quantity` units of `sku` at aggregate version
    /// `version`; returns its position.
    async fn receive(&self, sku: &str, version: usize, quantity: u32) -> u64 {
        let event = domain::inventory::InventoryEvent::StockReceived {
            sku: domain::ids::Sku::parse(sku).unwrap(),
            quantity,
            reference: format!("delivery {version}"),
        };
        let commit = projections::fixtures::commit::<domain::inventory::Inventory>(
            0,
            sku,
            version,
            &[event],
            chrono::Utc::now(),
        );
        self.jetstream
            .publish(
                infra_nats::subjects::aggregate_subject("inventory", sku),
                serde_json::to_vec(&commit.envelope).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    }

    /// Makes the inventory read model refuse every stock row of [`POISON`].
    async fn poison(&self) {
        sqlx::raw_sql(
            "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.sku LIKE 'POISON-%' THEN RAISE EXCEPTION 'poisoned sku %', NEW.sku; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON inventory.stock_levels
               FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();",
        )
        .execute(&self.db.pool)
        .await
        .unwrap();
    }

    /// Removes the cause of the failures.
    async fn fix(&self) {
        sqlx::raw_sql("DROP TRIGGER refuse_poison ON inventory.stock_levels")
            .execute(&self.db.pool)
            .await
            .unwrap();
    }

    /// Runs the inventory projector until it has handled position `last`, then stops it.
    async fn project_inventory_up_to(&self, last: u64) {
        let projector = projections::runtime::Projector::new(
            projections::registry::by_name("inventory").unwrap(),
            self.db.pool.clone(),
            self.jetstream.clone(),
            // Quick retries: a poisoned commit is parked after three attempts in well
            // under a second.
            projections::runtime::ProjectorConfig {
                retry: projections::runtime::RetryPolicy {
                    max_attempts: 3,
                    initial_backoff: std::time::Duration::from_millis(20),
                    max_backoff: std::time::Duration::from_millis(200),
                },
                standby_poll: std::time::Duration::from_millis(100),
                ..projections::runtime::ProjectorConfig::default()
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(projector.run(async {
            let _ = stopped.await;
        }));
        testkit::eventually(
            "the inventory projector to reach the last position",
            std::time::Duration::from_secs(90),
            || async {
                let position: Option<i64> = sqlx::query_scalar(
                    "SELECT position FROM projector_positions WHERE projector = 'inventory'",
                )
                .fetch_optional(&self.db.pool)
                .await
                .unwrap();
                (position.unwrap_or(0) >= last as i64).then_some(())
            },
        )
        .await;
        let _ = stop.send(());
        task.await.unwrap();
    }

    async fn parked(&self) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT position FROM dead_letters WHERE status = 'parked' ORDER BY position",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    async fn actions(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM dead_letter_actions")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Three commits of [`POISON`] parked (the first failed, two behind it) and one of
    /// another SKU applied; returns the poison commits' positions.
    async fn with_a_parked_sequence() -> (Self, Vec<i64>) {
        let shop = Self::start().await;
        shop.poison().await;
        let mut poisoned = Vec::new();
        for (version, quantity) in [(1, 1), (2, 2), (3, 4)] {
            poisoned.push(shop.receive(POISON, version, quantity).await as i64);
        }
        let last = shop.receive("FINE-1", 1, 5).await;
        shop.project_inventory_up_to(last).await;
        assert_eq!(shop.parked().await, poisoned);
        (shop, poisoned)
    }
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(output), stderr(output)))
}

#[tokio::test]
async fn a_bulk_retry_without_confirmation_or_as_a_dry_run_changes_nothing() {
    let (shop, poisoned) = Shop::with_a_parked_sequence().await;
    shop.fix().await;

    // No answer on stdin: refused.
    let unconfirmed = shop.run(&["dlq", "retry", "--all", "--reason", "fixed"]);
    assert!(!unconfirmed.status.success());
    assert!(
        stdout(&unconfirmed).contains("would retry 1 parked sequences holding 3 commits"),
        "{}",
        stdout(&unconfirmed)
    );
    assert!(
        stderr(&unconfirmed).contains("not confirmed"),
        "{}",
        stderr(&unconfirmed)
    );

    let dry = shop.run(&["dlq", "retry", "--all", "--dry-run", "--reason", "fixed"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("inventory (1)") && stdout(&dry).contains("dry run"),
        "{}",
        stdout(&dry)
    );

    let unknown = shop.run(&["dlq", "retry", "--group", "nope", "-f", "--reason", "x"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no parked sequence whose head failed with fingerprint `nope`"),
        "{}",
        stderr(&unknown)
    );

    assert_eq!(shop.parked().await, poisoned);
    assert_eq!(shop.actions().await, 0);
    let stock: Option<i64> =
        sqlx::query_scalar("SELECT on_hand FROM inventory.stock_levels WHERE sku = $1")
            .bind(POISON)
            .fetch_optional(&shop.db.pool)
            .await
            .unwrap();
    assert_eq!(stock, None);
}

#[tokio::test]
async fn a_forced_bulk_retry_keeps_failing_sequences_parked_then_applies_them_in_order_once_after_the_fix(
) {
    let (shop, poisoned) = Shop::with_a_parked_sequence().await;
    let groups = json(&shop.run(&["dlq", "list", "--group", "--json"]));
    assert_eq!(groups[0]["sequences"], 1);
    assert_eq!(groups[0]["commits"], 3);
    assert_eq!(groups[0]["consumers"], serde_json::json!(["inventory"]));
    let fingerprint = groups[0]["error_fingerprint"].as_str().unwrap().to_owned();

    // The cause is still there: counted, still parked.
    let failing = shop.run(&["dlq", "retry", "--all", "-f", "--reason", "too early"]);
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        stdout(&failing).contains("1 sequences: 0 resolved, 1 still parked"),
        "{}",
        stdout(&failing)
    );
    assert_eq!(shop.parked().await, poisoned);

    shop.fix().await;
    let group = fingerprint.as_str();
    let retried = shop.run(&[
        "dlq",
        "retry",
        "--group",
        group,
        "-f",
        "--chunk",
        "1",
        "--rate",
        "50",
        "--reason",
        "fixed the trigger",
    ]);
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert!(
        stdout(&retried).contains("1 sequences: 1 resolved, 0 still parked; 3 commits applied"),
        "{}",
        stdout(&retried)
    );
    assert!(shop.parked().await.is_empty());
    let (on_hand, last_sequence): (i64, i64) =
        sqlx::query_as("SELECT on_hand, last_sequence FROM inventory.stock_levels WHERE sku = $1")
            .bind(POISON)
            .fetch_one(&shop.db.pool)
            .await
            .unwrap();
    assert_eq!((on_hand, last_sequence), (1 + 2 + 4, 3));
    let movements: Vec<i64> = sqlx::query_scalar(
        "SELECT position FROM inventory.movements WHERE sku = $1 ORDER BY position",
    )
    .bind(POISON)
    .fetch_all(&shop.db.pool)
    .await
    .unwrap();
    assert_eq!(
        movements, poisoned,
        "each parked commit applied exactly once"
    );
    let actors: Vec<String> = sqlx::query_scalar("SELECT DISTINCT actor FROM dead_letter_actions")
        .fetch_all(&shop.db.pool)
        .await
        .unwrap();
    assert_eq!(
        actors,
        [shop.operator.actor()],
        "the signed-in operator acted"
    );

    // Running it again finds nothing left to do and applies nothing twice.
    let again = shop.run(&["dlq", "retry", "--all", "-f", "--reason", "again"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing parked"),
        "{}",
        stdout(&again)
    );
    let history = json(&shop.run(&["dlq", "history", "--json"]));
    let actions: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("retry", "fixed the trigger"), ("retry", "too early")]
    );
}

#[tokio::test]
async fn dlq_show_decodes_the_commit_and_lists_what_waits_behind_it_and_refuses_unknown_ids() {
    let (shop, poisoned) = Shop::with_a_parked_sequence().await;
    let listed = json(&shop.run(&[
        "dlq",
        "list",
        "--aggregate",
        "inventory:POISON-1",
        "--error",
        "poisoned sku",
        "--json",
    ]));
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the head has the error"
    );
    let id = listed[0]["id"].as_str().unwrap().to_owned();

    let shown = json(&shop.run(&["dlq", "show", &id, "-j"]));
    assert_eq!(shown["position"], poisoned[0]);
    assert!(shown["error"]
        .as_str()
        .unwrap()
        .contains("poisoned sku POISON-1"));
    assert_eq!(shown["attempts"], 3);
    assert!(
        shown["commit"].to_string().contains("StockReceived"),
        "{shown}"
    );
    let behind: Vec<i64> = shown["behind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["position"].as_i64().unwrap())
        .collect();
    assert_eq!(behind, poisoned[1..]);

    let unknown = uuid::Uuid::now_v7().to_string();
    let missing = shop.run(&["dlq", "show", &unknown]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains(&format!("no dead letter with id {unknown}")),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn verify_reports_a_corrupted_row_and_nothing_on_an_untouched_read_model() {
    let shop = Shop::start().await;
    shop.receive("A-1", 1, 3).await;
    shop.receive("B-1", 1, 5).await;
    let last = shop.receive("A-1", 2, 4).await;
    shop.project_inventory_up_to(last).await;

    let clean = shop.run(&["projections", "verify", "inventory", "-j"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let report = json(&clean);
    assert_eq!(report["position"], last);
    assert_eq!(report["differences"], serde_json::json!([]));

    sqlx::query("UPDATE inventory.stock_levels SET on_hand = 99 WHERE sku = 'B-1'")
        .execute(&shop.db.pool)
        .await
        .unwrap();
    let corrupted = shop.run(&["projections", "verify", "inventory", "-j"]);
    assert_eq!(corrupted.status.code(), Some(2), "{}", stderr(&corrupted));
    let report = json(&corrupted);
    let differences = report["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{report}");
    assert_eq!(differences[0]["table"], "stock_levels");
    assert_eq!(differences[0]["key"], serde_json::json!({ "sku": "B-1" }));
    assert_eq!(differences[0]["live"]["on_hand"], 99);
    assert_eq!(differences[0]["recomputed"]["on_hand"], 5);

    let text = shop.run(&["projections", "verify", "inventory"]);
    assert_eq!(text.status.code(), Some(2));
    assert!(stdout(&text).contains("1 rows differ"), "{}", stdout(&text));

    let unknown = shop.run(&["projections", "verify", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no projection named `nope`"),
        "{}",
        stderr(&unknown)
    );
    let leftovers: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE '%verify%'")
            .fetch_all(&shop.db.pool)
            .await
            .unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let on_hand: i64 =
        sqlx::query_scalar("SELECT on_hand FROM inventory.stock_levels WHERE sku = 'B-1'")
            .fetch_one(&shop.db.pool)
            .await
            .unwrap();
    assert_eq!(on_hand, 99, "verify only reads the live tables");
}

#[tokio::test]
async fn streams_info_shows_the_stream_and_each_consumers_lag() {
    let shop = Shop::start().await;
    shop.receive("A-1", 1, 3).await;
    shop.receive("A-1", 2, 3).await;
    let last = shop.receive("B-1", 1, 3).await;
    let stream = shop
        .jetstream
        .get_stream(infra_nats::subjects::EVENTS_STREAM)
        .await
        .unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("lagging".into()),
            filter_subject: "events.inventory.*".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let output = shop.run(&["streams", "info", "-j"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let info = json(&output);
    assert_eq!(info["name"], "EVENTS");
    assert_eq!(info["messages"], 3);
    assert_eq!(info["first_position"], 1);
    assert_eq!(info["last_position"], last);
    assert!(info["bytes"].as_u64().unwrap() > 0);
    assert!(info["last_at"].is_string());
    let consumers = info["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 1, "{info}");
    assert_eq!(consumers[0]["name"], "lagging");
    assert_eq!(consumers[0]["pending"], 3);
    assert_eq!(consumers[0]["ack_pending"], 0);
    assert_eq!(consumers[0]["last_delivered_position"], 0);

    let text = shop.run(&["streams", "info"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("lagging"), "{}", stdout(&text));
}

#[tokio::test]
async fn an_interrupted_bulk_retry_leaves_each_sequence_done_or_parked_and_a_rerun_finishes() {
    let shop = Shop::start().await;
    shop.poison().await;
    let skus = ["POISON-1", "POISON-2", "POISON-3", "POISON-4", "POISON-5"];
    let mut last = 0;
    for sku in skus {
        shop.receive(sku, 1, 1).await;
        last = shop.receive(sku, 2, 2).await;
    }
    shop.project_inventory_up_to(last).await;
    assert_eq!(shop.parked().await.len(), 10);
    shop.fix().await;

    // Two sequences a second: interrupted after the first action.
    let child = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args([
            "dlq", "retry", "--all", "-f", "--rate", "2", "--reason", "fixed",
        ])
        .env("NATS_URL", shop.nats.url())
        .env("DATABASE_URL", &shop.db.url)
        .env("SHOPSTREAM_TOKEN", &shop.operator.token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    testkit::eventually(
        "the first sequence retried",
        std::time::Duration::from_secs(20),
        || async { (shop.actions().await >= 1).then_some(()) },
    )
    .await;
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let interrupted = child.wait_with_output().unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(1),
        "{}",
        stderr(&interrupted)
    );
    assert!(
        stderr(&interrupted).contains("interrupted"),
        "{}",
        stderr(&interrupted)
    );

    // Every sequence is all applied or all parked, never half.
    let state = || async {
        let mut done = 0;
        for sku in skus {
            let parked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM dead_letters WHERE status = 'parked' AND aggregate_id = $1",
            )
            .bind(sku)
            .fetch_one(&shop.db.pool)
            .await
            .unwrap();
            let on_hand: Option<i64> =
                sqlx::query_scalar("SELECT on_hand FROM inventory.stock_levels WHERE sku = $1")
                    .bind(sku)
                    .fetch_optional(&shop.db.pool)
                    .await
                    .unwrap();
            match (parked, on_hand) {
                (0, Some(3)) => done += 1,
                (2, None) => {}
                other => panic!("{sku} is half done: {other:?}"),
            }
        }
        done
    };
    let done = state().await;
    assert!((1..skus.len()).contains(&done), "{done} sequences done");

    let rerun = shop.run(&["dlq", "retry", "--all", "-f", "--reason", "fixed"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(
        stdout(&rerun).contains(&format!("{} sequences: {0} resolved", skus.len() - done)),
        "{}",
        stdout(&rerun)
    );
    assert_eq!(state().await, skus.len());
}

#[tokio::test]
async fn a_customer_or_an_auditor_running_dlq_retry_is_refused_recorded_and_changes_nothing() {
    let (shop, poisoned) = Shop::with_a_parked_sequence().await;
    shop.fix().await;
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM dead_letters ORDER BY position LIMIT 1")
            .fetch_one(&shop.db.pool)
            .await
            .unwrap();
    let id = id.to_string();

    for role in ["customer", "auditor"] {
        let user = signed_in(&shop.db, role);
        for args in [
            vec!["dlq", "retry", id.as_str(), "--reason", "fixed"],
            vec!["dlq", "retry", "--all", "-f", "--reason", "fixed"],
        ] {
            let refused = shopstream(&shop.nats, &shop.db, &user, &args);
            assert_eq!(refused.status.code(), Some(77), "{}", stderr(&refused));
            let message = stderr(&refused);
            assert!(
                message.contains("`shopstream dlq retry`")
                    && message.contains("needs role operator or admin")
                    && message.contains(&format!("caller: role {role}")),
                "{message}"
            );
            assert_eq!(message.trim().lines().count(), 1, "{message}");
            assert!(stdout(&refused).is_empty(), "{}", stdout(&refused));
        }
        let recorded: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT actor, arguments FROM audit.access_log
             WHERE action = 'refused:dlq retry' AND actor = $1 ORDER BY access_id",
        )
        .bind(user.actor())
        .fetch_all(&shop.db.pool)
        .await
        .unwrap();
        assert_eq!(recorded.len(), 2, "{recorded:?}");
        assert_eq!(recorded[0].1["id"], id.as_str());
        assert_eq!(recorded[0].1["reason"], "fixed");
        assert_eq!(recorded[1].1["all"], true);
        assert!(recorded
            .iter()
            .all(|(_, arguments)| !arguments.to_string().contains(&user.token)));
    }

    // Nothing but the two refusals per caller was written.
    assert_eq!(shop.parked().await, poisoned);
    assert_eq!(shop.actions().await, 0);
    let stock: Option<i64> =
        sqlx::query_scalar("SELECT on_hand FROM inventory.stock_levels WHERE sku = $1")
            .bind(POISON)
            .fetch_optional(&shop.db.pool)
            .await
            .unwrap();
    assert_eq!(stock, None);
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM audit.access_log")
        .fetch_one(&shop.db.pool)
        .await
        .unwrap();
    assert_eq!(logged, 4);

    // The same retry by the operator goes through: only the role stood in the way.
    let retried = shop.run(&["dlq", "retry", &id, "--reason", "fixed"]);
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert!(shop.parked().await.is_empty());
}
