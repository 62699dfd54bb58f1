use infra_nats::{check_server, provision, subjects, ServerCheckError, StreamSettings};
use testkit::{NatsServer, NatsServerOptions};

#[tokio::test]
async fn provisioning_is_idempotent_and_locks_the_log_against_deletion() {
    let server = NatsServer::start();
    let client = infra_nats::connect(&server.url()).await.unwrap();
    check_server(&client).await.unwrap();
    let js = async_nats::jetstream::new(client);
    provision(&js, &StreamSettings::default()).await.unwrap();
    provision(&js, &StreamSettings::default()).await.unwrap();
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert!(config.deny_delete && config.deny_purge);
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(config.subjects, vec![subjects::EVENTS_SUBJECTS.to_owned()]);

    js.publish("events.tally.x", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        stream.delete_message(1).await.is_err(),
        "deleting an event must be refused"
    );
    assert!(
        stream.purge().await.is_err(),
        "purging the log must be refused"
    );
}

#[tokio::test]
async fn a_comma_separated_url_list_connects_to_the_live_server_among_dead_ones() {
    let server = NatsServer::start();
    // Nothing listens on port 1: a node that is down.
    let urls = format!("nats://127.0.0.1:1,{}", server.url());
    let client = infra_nats::connect(&urls).await.unwrap();
    check_server(&client).await.unwrap();
    let js = async_nats::jetstream::new(client);
    provision(&js, &StreamSettings::default()).await.unwrap();
}

#[tokio::test]
async fn a_server_without_jetstream_is_refused_with_a_clear_message() {
    let server = NatsServer::start_with(NatsServerOptions {
        jetstream: false,
        ..Default::default()
    });
    let client = infra_nats::connect(&server.url()).await.unwrap();
    let error = check_server(&client).await.unwrap_err();
    assert!(
        matches!(error, ServerCheckError::NoJetStream { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("-js"), "{error}");
}

#[tokio::test]
async fn a_server_older_than_the_minimum_is_refused_naming_both_versions() {
    // Debian's packaged nats-server (2.9) is the old server this machine kind ships.
    let old = std::path::PathBuf::from(
        std::env::var("OLD_NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned()),
    );
    if !old.exists() {
        eprintln!(
            "skipped: no old nats-server at {} (set OLD_NATS_SERVER_BIN)",
            old.display()
        );
        return;
    }
    let server = NatsServer::start_with(NatsServerOptions {
        binary: Some(old),
        ..Default::default()
    });
    let client = infra_nats::connect(&server.url()).await.unwrap();
    let error = check_server(&client).await.unwrap_err();
    assert!(matches!(error, ServerCheckError::TooOld { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("2.9") && message.contains("2.12.0"),
        "{message}"
    );
}
