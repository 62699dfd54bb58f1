//! Graceful shutdown of the long-lived roles (issue 7): on SIGTERM a role stops taking
//! work, finishes what is in flight, drains NATS and exits 0; and whatever holds it up,
//! it exits within `SHUTDOWN_TIMEOUT_MS` of the signal.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::{eventually, http_get, NatsServer, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

fn spawn_role(
    role: &str,
    nats: &NatsServer,
    db: &TestDatabase,
    addr_setting: (&str, SocketAddr),
    extra: &[(&str, &str)],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg(role)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env(addr_setting.0, addr_setting.1.to_string())
        .env("RUST_LOG", "info")
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting shopstream {role}: {e}"))
}

async fn wait_for(addr: SocketAddr, path: &str) {
    eventually(
        &format!("{path} on {addr}"),
        Duration::from_secs(60),
        || async {
            match http_get(addr, path).await {
                Ok((200, _)) => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

/// Waits at most `bound` for the process to exit; its status, how long it took and
/// what it logged.
async fn exits_within(
    mut child: Child,
    bound: Duration,
) -> (std::process::ExitStatus, Duration, String) {
    let started = Instant::now();
    let status = tokio::time::timeout(bound, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the role did not exit within {bound:?} of SIGTERM"))
        .unwrap();
    let took = started.elapsed();
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut log).await;
    }
    (status, took, log)
}

#[tokio::test]
async fn serve_finishes_the_request_in_flight_refuses_new_ones_and_exits_0_on_sigterm() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let addr = free_addr();
    let child = spawn_role("serve", &nats, &db, ("HTTP_ADDR", addr), &[]);
    wait_for(addr, "/readyz").await;

    // A request whose body is half sent: the server is reading it when the signal comes.
    let body = r#"{"query":"{ __typename }"}"#;
    let (head, tail) = body.split_at(body.len() / 2);
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    in_flight
        .write_all(
            format!(
                "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{head}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Not observable from outside: a moment for the server to read the headers and
    // dispatch the request before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(child.id().unwrap(), "TERM");

    // New connections are refused once the listener is closed.
    eventually("the listener to close", Duration::from_secs(10), || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;

    // The request in flight still gets its answer.
    in_flight.write_all(tail.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        in_flight.read_to_string(&mut response),
    )
    .await
    .expect("the answer to the request in flight")
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the request in flight was answered: {response}"
    );
    assert!(
        response.contains(r#""__typename":"Query""#),
        "with its result: {response}"
    );

    let (status, _, log) = exits_within(child, Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "serve exits 0 after SIGTERM ({status}):\n{log}"
    );
    assert!(
        log.contains("stopped"),
        "serve logs that it stopped:\n{log}"
    );
}

#[tokio::test]
async fn project_and_saga_exit_0_promptly_on_sigterm() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let migrate = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    for role in ["project", "saga"] {
        let health = free_addr();
        let child = spawn_role(role, &nats, &db, ("HEALTH_ADDR", health), &[]);
        wait_for(health, "/livez").await;
        // Wait until the role is at work, so that stopping has work to undo: the
        // projectors' sampler has reported, or the saga's consumer exists.
        eventually(
            &format!("{role} to be at work"),
            Duration::from_secs(30),
            || async {
                let working = match role {
                    "project" => http_get(health, "/metrics")
                        .await
                        .is_ok_and(|(_, body)| body.contains("shopstream_consumer_lag_events")),
                    _ => js
                        .get_stream("EVENTS")
                        .await
                        .ok()?
                        .consumer_info("saga")
                        .await
                        .is_ok(),
                };
                working.then_some(())
            },
        )
        .await;
        signal(child.id().unwrap(), "TERM");
        let (status, took, log) = exits_within(child, Duration::from_secs(20)).await;
        assert!(
            status.success(),
            "{role} exits 0 after SIGTERM ({status}, after {took:?}):\n{log}"
        );
    }
}

#[tokio::test]
async fn a_role_held_up_past_shutdown_timeout_still_exits_within_it() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let addr = free_addr();
    let child = spawn_role(
        "serve",
        &nats,
        &db,
        ("HTTP_ADDR", addr),
        &[("SHUTDOWN_TIMEOUT_MS", "1500")],
    );
    wait_for(addr, "/readyz").await;
    // A client that sends half its request and then nothing: the graceful shutdown
    // would wait for it for ever.
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            format!(
                "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{\"query\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(child.id().unwrap(), "TERM");
    let (status, took, log) = exits_within(child, Duration::from_secs(15)).await;
    assert!(
        took < Duration::from_millis(1500 + 3_000),
        "serve exited {took:?} after SIGTERM, past the 1.5 s bound:\n{log}"
    );
    assert!(
        took >= Duration::from_millis(1_000),
        "serve waited for the request in flight before giving up ({took:?}):\n{log}"
    );
    assert!(
        !status.success(),
        "a role cut short by the bound exits non-zero ({status}):\n{log}"
    );
    assert!(log.contains("SHUTDOWN_TIMEOUT_MS"), "and says why:\n{log}");
    drop(stuck);
}
