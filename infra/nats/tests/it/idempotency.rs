use async_nats::jetstream::context::PublishErrorKind;
use async_nats::HeaderMap;
use chrono::Utc;
use infra_nats::{stream_last_position, subjects, CommitEnvelope, EventStoreConfig};
use testkit::NatsServer;

use crate::tally::{add, Tally, TallyEvent};
use crate::{bus, metadata, provisioned};

#[tokio::test]
async fn a_retried_command_id_appends_once_and_returns_the_original_outcome() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    let meta = metadata();
    let first = bus.execute("a", add(7, 2), &meta).await.unwrap();
    let retry = bus.execute("a", add(7, 2), &meta).await.unwrap();
    assert!(!first.duplicate);
    assert!(retry.duplicate);
    assert_eq!(
        (retry.position, retry.version, retry.events),
        (first.position, first.version, first.events)
    );
    assert_eq!(bus.store().history("a").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_retry_after_other_commands_still_appends_once() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    let meta = metadata();
    let first = bus.execute("a", add(7, 1), &meta).await.unwrap();
    bus.execute("a", add(1, 1), &metadata()).await.unwrap();
    // Another replica, with nothing cached, receives the retry.
    let other_replica = crate::bus::<Tally>(&client, EventStoreConfig::default()).await;
    let retry = other_replica.execute("a", add(7, 1), &meta).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.position, first.position);
    assert_eq!(
        other_replica
            .store()
            .load_fresh("a")
            .await
            .unwrap()
            .state()
            .total,
        8
    );
}

#[tokio::test]
async fn a_retry_after_a_lost_ack_is_answered_from_the_log_not_appended_again() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    // The bus has the aggregate cached as empty (position 0).
    bus.store().load_fresh("a").await.unwrap();

    // A commit for command `meta` reaches the stream, but its ack never came back
    // (the process died): write it as the store would have.
    let meta = metadata();
    let event = TallyEvent::Added {
        amount: 7,
        label: "add-7".into(),
    };
    let envelope =
        CommitEnvelope::new::<Tally>("a", 1, &[event], &meta.to_map(), Utc::now()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        subjects::headers::MSG_ID,
        meta.command_id.to_string().as_str(),
    );
    headers.insert(subjects::headers::EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
    let js = async_nats::jetstream::new(client.clone());
    js.publish_with_headers(
        subjects::aggregate_subject("tally", "a"),
        headers,
        serde_json::to_vec(&envelope).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    // The client retries with the same command id. The server answers the stale
    // expectation with 10071 before looking at the Msg-Id; the bus then finds the
    // command in the log.
    let retry = bus.execute("a", add(7, 1), &meta).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.position, 1);
    assert_eq!(stream_last_position(&js).await.unwrap(), 1);
}

#[tokio::test]
async fn the_server_checks_the_expected_sequence_before_the_msg_id() {
    // Why the bus reads the log after a conflict: a resent commit that repeats both the
    // Msg-Id and the now-stale expectation is refused as a conflict (10071), not
    // acknowledged as a duplicate. Without an expectation the Msg-Id window answers.
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let js = async_nats::jetstream::new(client.clone());
    let subject = subjects::aggregate_subject("tally", "a");
    let publish = |expected: Option<&str>| {
        let mut headers = HeaderMap::new();
        headers.insert(subjects::headers::MSG_ID, "cmd-1");
        if let Some(expected) = expected {
            headers.insert(subjects::headers::EXPECTED_LAST_SUBJECT_SEQUENCE, expected);
        }
        js.publish_with_headers(subject.clone(), headers, "{}".into())
    };
    let first = publish(Some("0")).await.unwrap().await.unwrap();
    assert!(!first.duplicate);
    let resent = publish(Some("0")).await.unwrap().await.unwrap_err();
    assert_eq!(resent.kind(), PublishErrorKind::WrongLastSequence);
    let unconditional = publish(None).await.unwrap().await.unwrap();
    assert!(unconditional.duplicate);
    assert_eq!(unconditional.sequence, first.sequence);
    assert_eq!(stream_last_position(&js).await.unwrap(), 1);
}

#[tokio::test]
async fn command_ids_survive_snapshots_and_cold_replicas() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let config = EventStoreConfig {
        snapshot_every: 2,
        ..Default::default()
    };
    let bus = bus::<Tally>(&client, config.clone()).await;
    let meta = metadata();
    let first = bus.execute("a", add(7, 1), &meta).await.unwrap();
    for _ in 0..9 {
        bus.execute("a", add(1, 1), &metadata()).await.unwrap();
    }
    let cold = crate::bus::<Tally>(&client, config).await;
    let (snapshot_version, _) = cold.store().snapshot_position("a").await.unwrap().unwrap();
    assert!(
        snapshot_version >= 2,
        "the cold replica loads from a snapshot"
    );
    let retry = cold.execute("a", add(7, 1), &meta).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.position, first.position);
    assert_eq!(
        cold.store().load_fresh("a").await.unwrap().state().total,
        16
    );
}

#[tokio::test]
async fn concurrent_submissions_of_one_command_id_have_one_effect() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let meta = metadata();
    // A client that double-submits in parallel, to several replicas at once.
    let submissions = (0..10).map(|_| {
        let client = client.clone();
        let meta = meta.clone();
        tokio::spawn(async move {
            let replica = crate::bus::<Tally>(&client, EventStoreConfig::default()).await;
            replica.execute("a", add(5, 1), &meta).await
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(submissions)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| !o.duplicate).count(), 1);
    assert!(outcomes.iter().all(|o| o.position == outcomes[0].position));
    let js = async_nats::jetstream::new(client);
    assert_eq!(stream_last_position(&js).await.unwrap(), 1);
}

/// A decision that appends nothing is not checked by the server: taken on a cached state
/// another replica has moved past, it would stand. The bus takes it again on fresh state.
#[tokio::test]
async fn a_no_op_or_rejection_decided_on_a_stale_cache_is_decided_again_on_fresh_state() {
    use domain::inventory::{Inventory, InventoryCommand, InventoryError};
    use domain::{OrderId, Sku};
    use infra_nats::CommandError;

    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let replica_a = bus::<Inventory>(&client, EventStoreConfig::default()).await;
    let replica_b = bus::<Inventory>(&client, EventStoreConfig::default()).await;
    let order = OrderId(uuid::Uuid::from_u128(7));
    let receive = InventoryCommand::ReceiveStock {
        sku: Sku::parse("MUG").unwrap(),
        quantity: 5,
        reference: "po-1".to_owned(),
    };
    // Replica A caches the SKU with nothing reserved; replica B then reserves.
    replica_a
        .execute("MUG", receive, &metadata())
        .await
        .unwrap();
    let reserve = InventoryCommand::ReserveStock {
        order_id: order,
        quantity: 2,
    };
    replica_b
        .execute("MUG", reserve, &metadata())
        .await
        .unwrap();

    // On A's cached state the release would be a no-op and leave 2 units held.
    let release = InventoryCommand::ReleaseReservation {
        order_id: order,
        reason: "cancelled".to_owned(),
    };
    let released = replica_a
        .execute("MUG", release, &metadata())
        .await
        .unwrap();
    assert_eq!(released.events, 1, "the release happened");

    // B commits nothing; A's cache still says nothing was committed. The rejection of a
    // commit must come from fresh state, and so must its acceptance.
    let reserve_other = InventoryCommand::ReserveStock {
        order_id: OrderId(uuid::Uuid::from_u128(8)),
        quantity: 1,
    };
    replica_b
        .execute("MUG", reserve_other, &metadata())
        .await
        .unwrap();
    let commit = InventoryCommand::CommitReservation {
        order_id: OrderId(uuid::Uuid::from_u128(8)),
    };
    let committed = replica_a.execute("MUG", commit, &metadata()).await.unwrap();
    assert_eq!(committed.events, 1);
    let commit_unknown = InventoryCommand::CommitReservation {
        order_id: OrderId(uuid::Uuid::from_u128(9)),
    };
    let refused = replica_a.execute("MUG", commit_unknown, &metadata()).await;
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(InventoryError::NoReservation { .. }))
    ));
}

/// A command retried on a replica whose cache predates the first attempt: the stale state
/// rejects it, and the fresh look finds that it was already committed.
#[tokio::test]
async fn a_retry_rejected_on_a_stale_cache_is_answered_with_the_original_outcome() {
    use domain::inventory::{Inventory, InventoryCommand};
    use domain::{OrderId, Sku};

    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let replica_a = bus::<Inventory>(&client, EventStoreConfig::default()).await;
    let replica_b = bus::<Inventory>(&client, EventStoreConfig::default()).await;
    let receive = |quantity| InventoryCommand::ReceiveStock {
        sku: Sku::parse("MUG").unwrap(),
        quantity,
        reference: "po".to_owned(),
    };
    // B caches the SKU with 1 unit; A then receives 5 more and reserves 4 for an order.
    replica_b
        .execute("MUG", receive(1), &metadata())
        .await
        .unwrap();
    replica_a
        .execute("MUG", receive(5), &metadata())
        .await
        .unwrap();
    let reserve = InventoryCommand::ReserveStock {
        order_id: OrderId(uuid::Uuid::from_u128(7)),
        quantity: 4,
    };
    let command = metadata();
    let first = replica_a
        .execute("MUG", reserve.clone(), &command)
        .await
        .unwrap();

    // The same command id sent again through B: its cache says only 1 unit exists.
    let retried = replica_b.execute("MUG", reserve, &command).await.unwrap();
    assert!(retried.duplicate);
    assert_eq!(retried.position, first.position);
}
