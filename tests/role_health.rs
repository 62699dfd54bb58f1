//! `HEALTH_ADDR` on the roles without an API: `shopstream project` and `shopstream saga`
//! serve `/livez` and `/metrics` there (what the compose file's healthchecks call), and a
//! taken address stops start-up with a message naming the setting.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::{eventually, http_get, NatsServer, TestDatabase};

/// A role process, killed when the test ends however it ends.
struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

fn spawn_role(role: &str, nats: &NatsServer, db: &TestDatabase, health: SocketAddr) -> Role {
    let child = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg(role)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("HEALTH_ADDR", health.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting shopstream {role}: {e}"));
    Role(child)
}

async fn assert_serves_health(role: &str) {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let addr = free_addr();
    let _role = spawn_role(role, &nats, &db, addr);
    let (status, body) = eventually(
        &format!("{role}'s /livez"),
        Duration::from_secs(30),
        || async { http_get(addr, "/livez").await.ok() },
    )
    .await;
    assert_eq!((status, body.trim()), (200, "ok"), "{role} /livez");
    let (status, body) = http_get(addr, "/metrics").await.unwrap();
    assert_eq!(status, 200, "{role} /metrics: {body}");
}

#[tokio::test]
async fn the_projector_role_serves_livez_and_metrics_on_health_addr() {
    assert_serves_health("project").await;
}

#[tokio::test]
async fn the_saga_role_serves_livez_and_metrics_on_health_addr() {
    assert_serves_health("saga").await;
}

#[tokio::test]
async fn a_health_addr_in_use_stops_start_up_naming_the_setting() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = taken.local_addr().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_shopstream"))
            .arg("project")
            // Never reached: the endpoint is bound before the role connects.
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("HEALTH_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("shopstream project exits")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("HEALTH_ADDR {addr}")), "{stderr}");
}
