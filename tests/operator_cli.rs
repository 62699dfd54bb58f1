//! The operator commands through the real binary: output, exit codes, and refusals that
//! change nothing.

use std::process::{Command, Output, Stdio};

use testkit::{NatsServer, TestDatabase};

fn shopstream(nats: &NatsServer, db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(args)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
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
    let output = shopstream(&nats, &db, &["projections", "status", "--json"]);
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

    let unknown = shopstream(&nats, &db, &["projections", "rebuild", "nope", "-f"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no projection named `nope`")
            && stderr(&unknown).contains("inventory"),
        "{}",
        stderr(&unknown)
    );

    // No answer on stdin: refused, nothing changed.
    let unconfirmed = shopstream(&nats, &db, &["projections", "rebuild", "inventory"]);
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("not confirmed"),
        "{}",
        stderr(&unconfirmed)
    );

    let forced = shopstream(&nats, &db, &["projections", "rebuild", "inventory", "-f"]);
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
    let listed = shopstream(&nats, &db, &["dlq", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout(&listed).trim(), "[]");

    let grouped = shopstream(&nats, &db, &["dlq", "list", "--group", "--json"]);
    assert!(grouped.status.success(), "{}", stderr(&grouped));
    assert_eq!(stdout(&grouped).trim(), "[]");

    let id = uuid::Uuid::now_v7().to_string();
    let retry = shopstream(&nats, &db, &["dlq", "retry", &id, "--reason", "test"]);
    assert!(!retry.status.success());
    assert!(
        stderr(&retry).contains(&format!("no dead letter with id {id}")),
        "{}",
        stderr(&retry)
    );

    let no_reason = shopstream(&nats, &db, &["dlq", "skip", &id]);
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
