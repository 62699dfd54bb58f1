//! The application as `shopstream serve` runs it, against real NATS and PostgreSQL.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use shopstream::{ApiSettings, Application, Connections, Settings};
use testkit::{eventually, http_get, NatsServer, NatsServerOptions, TestDatabase};

struct TestApp {
    addr: SocketAddr,
    nats: NatsServer,
    _db: TestDatabase,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn settings(nats: &NatsServer, db: &TestDatabase) -> Settings {
    Settings::for_test(nats.url(), db.url.clone())
}

async fn spawn_app() -> TestApp {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let app = Application::build(&settings(&nats, &db), &ApiSettings::from_env())
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        nats,
        _db: db,
        _stop: stop,
    }
}

#[tokio::test]
async fn a_started_app_is_live_and_ready() {
    let app = spawn_app().await;
    assert_eq!(http_get(app.addr, "/livez").await.unwrap().0, 200);
    let (status, body) = http_get(app.addr, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ready":true"#), "{body}");
}

#[tokio::test]
async fn projector_status_is_served_as_json() {
    let app = spawn_app().await;
    let (status, body) = http_get(app.addr, "/projections").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = body["projectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
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
    for projector in body["projectors"].as_array().unwrap() {
        for field in [
            "position",
            "stream_position",
            "lag_events",
            "lag_seconds",
            "parked",
        ] {
            assert!(projector[field].is_number(), "{field} in {projector}");
        }
    }
}

#[tokio::test]
async fn readiness_follows_nats_down_and_back_while_liveness_stays() {
    let mut app = spawn_app().await;
    app.nats.kill();
    eventually(
        "not ready without NATS",
        Duration::from_secs(20),
        || async {
            let (status, body) = http_get(app.addr, "/readyz").await.ok()?;
            (status == 503 && body.contains(r#""nats":{"ok":false"#)).then_some(())
        },
    )
    .await;
    assert_eq!(http_get(app.addr, "/livez").await.unwrap().0, 200);
    app.nats.restart();
    eventually("ready again", Duration::from_secs(30), || async {
        (http_get(app.addr, "/readyz").await.ok()?.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn start_up_provisions_the_stream_and_migrates_the_database() {
    let app = spawn_app().await;
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    assert!(js.get_stream("EVENTS").await.is_ok());
    let positions: i64 = sqlx::query_scalar("SELECT count(*) FROM projector_positions")
        .fetch_one(&app._db.pool)
        .await
        .unwrap();
    assert_eq!(positions, 0);
}

#[tokio::test]
async fn a_server_without_jetstream_stops_start_up_with_a_clear_message() {
    let nats = NatsServer::start_with(NatsServerOptions {
        jetstream: false,
        ..Default::default()
    });
    let db = TestDatabase::create().await.unwrap();
    let error = Application::build(&settings(&nats, &db), &ApiSettings::from_env())
        .await
        .err()
        .expect("start-up must fail");
    let message = format!("{error:#}");
    assert!(
        message.contains("JetStream") && message.contains("NATS_URL"),
        "{message}"
    );
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg("serve")
        .env("HTTP_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HTTP_ADDR") && stderr.contains("not-an-address"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    // Each run its own invocation, as `shopstream migrate` twice.
    shopstream::migrate(&Connections::new(settings(&nats, &db)))
        .await
        .unwrap();
    shopstream::migrate(&Connections::new(settings(&nats, &db)))
        .await
        .unwrap();
}

#[tokio::test]
async fn roles_starting_at_once_all_create_or_find_the_database() {
    let db = TestDatabase::create().await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let fresh_name = format!("{name}_fresh");
    let fresh = db.url.replace(&name, &fresh_name);
    let attempts: Vec<_> = (0..6)
        .map(|_| {
            let url = fresh.clone();
            tokio::spawn(async move { projections::ensure_database(&url).await })
        })
        .collect();
    for attempt in attempts {
        attempt.await.unwrap().expect("every role starts");
    }
    sqlx::query(&format!("DROP DATABASE \"{fresh_name}\""))
        .execute(&db.pool)
        .await
        .unwrap();
}
