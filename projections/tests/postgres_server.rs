//! The private PostgreSQL server of the test kit: what a crash keeps and what it loses.

use sqlx::{Connection, PgConnection};
use testkit::PostgresServer;

async fn connect(server: &PostgresServer) -> PgConnection {
    PgConnection::connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}\n{}", server.url(), server.log()))
}

async fn labels(server: &PostgresServer) -> Vec<String> {
    let mut connection = connect(server).await;
    sqlx::query_scalar("SELECT label FROM crash_log ORDER BY label")
        .fetch_all(&mut connection)
        .await
        .expect("reading crash_log")
}

async fn create_crash_log(server: &PostgresServer) -> PgConnection {
    let mut connection = connect(server).await;
    sqlx::query("CREATE TABLE crash_log (label text PRIMARY KEY)")
        .execute(&mut connection)
        .await
        .expect("creating crash_log");
    connection
}

#[tokio::test]
async fn rows_committed_before_a_kill_survive_the_restart() {
    let mut server = PostgresServer::start().await;
    let url_before = server.url();
    let mut connection = create_crash_log(&server).await;
    sqlx::query("INSERT INTO crash_log VALUES ('committed-1'), ('committed-2')")
        .execute(&mut connection)
        .await
        .unwrap();

    server.kill();
    server.start_again().await;

    assert_eq!(server.url(), url_before, "same port after the restart");
    assert_eq!(labels(&server).await, ["committed-1", "committed-2"]);
}

#[tokio::test]
async fn an_open_transaction_fails_on_kill_and_its_row_is_gone_after_restart() {
    let mut server = PostgresServer::start().await;
    let mut setup = create_crash_log(&server).await;
    sqlx::query("INSERT INTO crash_log VALUES ('committed')")
        .execute(&mut setup)
        .await
        .unwrap();
    let mut connection = connect(&server).await;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let mut transaction = connection.begin().await.unwrap();
    sqlx::query("INSERT INTO crash_log VALUES ('uncommitted')")
        .execute(&mut *transaction)
        .await
        .unwrap();

    server.kill();
    let backend_state = std::fs::read_to_string(format!("/proc/{backend}/stat")).ok();
    let after_kill = sqlx::query("SELECT count(*) FROM crash_log")
        .execute(&mut *transaction)
        .await;
    let commit = transaction.commit().await;
    server.start_again().await;

    assert!(
        backend_state
            .as_ref()
            .is_none_or(|stat| stat.contains(") Z ")),
        "the backend of the open transaction died with the server: {backend_state:?}"
    );
    assert!(
        after_kill.is_err(),
        "a statement after the kill must fail, got {after_kill:?}"
    );
    assert!(commit.is_err(), "the commit after the kill must fail");
    assert_eq!(labels(&server).await, ["committed"]);
}

#[tokio::test]
async fn an_immediate_stop_keeps_committed_rows_and_drops_open_transactions() {
    let mut server = PostgresServer::start().await;
    let mut setup = create_crash_log(&server).await;
    sqlx::query("INSERT INTO crash_log VALUES ('committed')")
        .execute(&mut setup)
        .await
        .unwrap();
    let mut connection = connect(&server).await;
    let mut transaction = connection.begin().await.unwrap();
    sqlx::query("INSERT INTO crash_log VALUES ('uncommitted')")
        .execute(&mut *transaction)
        .await
        .unwrap();

    server.stop_immediate();
    let refused = PgConnection::connect(&server.url()).await;
    server.start_again().await;

    assert!(refused.is_err(), "a stopped server accepts no connection");
    assert_eq!(labels(&server).await, ["committed"]);
    assert!(
        server.log().contains("database system was interrupted"),
        "the restart after an immediate stop runs crash recovery:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn database_url_names_a_database_on_the_private_server() {
    let server = PostgresServer::start().await;
    let mut admin = connect(&server).await;
    sqlx::query("CREATE DATABASE private_one")
        .execute(&mut admin)
        .await
        .unwrap();

    let mut connection = PgConnection::connect(&server.database_url("private_one"))
        .await
        .unwrap();
    let (database, port): (String, String) =
        sqlx::query_as("SELECT current_database(), current_setting('port')")
            .fetch_one(&mut connection)
            .await
            .unwrap();

    assert_eq!(database, "private_one");
    assert_eq!(port, server.port().to_string());
    assert_ne!(server.port(), 5432, "never the shared server");
}
