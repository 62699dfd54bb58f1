use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use domain::metadata::keys;
use futures::StreamExt;
use infra_nats::{read_all, stream_last_position, subjects, EventStoreConfig};
use testkit::NatsServer;

use crate::tally::{add, Tally, TallyCommand, TallyEvent};
use crate::{bus, metadata, provisioned, store, uncached};

#[tokio::test]
async fn fifty_concurrent_appends_with_the_same_expectation_have_exactly_one_winner() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let store = store::<Tally>(&client, uncached()).await;
    let rounds = 20;
    for round in 0..rounds {
        let mut contexts = Vec::new();
        for _ in 0..50 {
            contexts.push(store.load_aggregate("contended").await.unwrap());
        }
        let attempts = contexts
            .into_iter()
            .enumerate()
            .map(|(writer, mut context)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let events = vec![
                        TallyEvent::Added {
                            amount: 1,
                            label: format!("{round}-{writer}")
                        };
                        3
                    ];
                    for event in &events {
                        context.aggregate().apply(event.clone());
                    }
                    store.commit(events, context, metadata().to_map()).await
                })
            });
        let results = futures::future::join_all(attempts).await;
        let winners = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(AggregateError::AggregateConflict))))
            .count();
        assert_eq!((winners, conflicts), (1, 49), "round {round}");
    }
    let loaded = store.load_fresh("contended").await.unwrap();
    assert_eq!(loaded.version(), rounds * 3);
    assert_eq!(loaded.state().total, (rounds * 3) as u64);
}

#[tokio::test]
async fn every_command_returns_the_position_it_committed_at() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    let first = bus.execute("a", add(1, 2), &metadata()).await.unwrap();
    let second = bus.execute("b", add(1, 1), &metadata()).await.unwrap();
    let third = bus.execute("a", add(1, 1), &metadata()).await.unwrap();
    assert_eq!((first.position, second.position, third.position), (1, 2, 3));
    assert_eq!((first.version, third.version), (2, 3));
    assert_eq!(first.events, 2);
    let js = async_nats::jetstream::new(client);
    assert_eq!(stream_last_position(&js).await.unwrap(), 3);
}

#[tokio::test]
async fn a_command_that_emits_nothing_appends_nothing() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    bus.execute("a", add(1, 1), &metadata()).await.unwrap();
    let outcome = bus
        .execute("a", TallyCommand::Nothing, &metadata())
        .await
        .unwrap();
    assert_eq!(
        (outcome.events, outcome.position, outcome.version),
        (0, 1, 1)
    );
    let js = async_nats::jetstream::new(client);
    assert_eq!(stream_last_position(&js).await.unwrap(), 1);
}

#[tokio::test]
async fn a_rejected_command_appends_nothing_and_keeps_the_cache_usable() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    bus.execute("a", add(5, 1), &metadata()).await.unwrap();
    let rejected = bus.execute("a", TallyCommand::Fail, &metadata()).await;
    assert!(matches!(
        rejected,
        Err(infra_nats::CommandError::Rejected(_))
    ));
    let next = bus.execute("a", add(5, 1), &metadata()).await.unwrap();
    assert_eq!((next.position, next.version), (2, 2));
}

#[tokio::test]
async fn stale_cached_state_is_caught_by_the_server_and_retried_on_fresh_state() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let replica_a = bus::<Tally>(&client, EventStoreConfig::default()).await;
    let replica_b = bus::<Tally>(&client, EventStoreConfig::default()).await;
    replica_a
        .execute("shared", add(1, 1), &metadata())
        .await
        .unwrap();
    // replica_b appends behind replica_a's back: replica_a's cache is now stale.
    replica_b
        .execute("shared", add(10, 1), &metadata())
        .await
        .unwrap();
    let outcome = replica_a
        .execute("shared", add(100, 1), &metadata())
        .await
        .unwrap();
    assert_eq!(outcome.version, 3);
    let state = replica_a.store().load_fresh("shared").await.unwrap();
    assert_eq!(state.state().total, 111);
}

#[tokio::test]
async fn conflicts_past_the_retry_budget_are_reported() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let store = store::<Tally>(&client, EventStoreConfig::default()).await;
    let bus = infra_nats::CommandBus::new(store, (), infra_nats::ConflictPolicy { max_retries: 0 });
    let other = crate::bus::<Tally>(&client, EventStoreConfig::default()).await;
    bus.execute("x", add(1, 1), &metadata()).await.unwrap();
    other.execute("x", add(1, 1), &metadata()).await.unwrap();
    let result = bus.execute("x", add(1, 1), &metadata()).await;
    assert!(
        matches!(
            result,
            Err(infra_nats::CommandError::Conflict { attempts: 1 })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn loaded_events_carry_their_metadata_and_global_position() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    bus.execute("other", add(1, 1), &metadata()).await.unwrap();
    let meta = metadata();
    bus.execute("a", add(2, 2), &meta).await.unwrap();
    let events = bus.store().load_events("a").await.unwrap();
    assert_eq!(events.len(), 2);
    let event_ids: std::collections::HashSet<_> = events
        .iter()
        .map(|e| e.metadata[keys::EVENT_ID].clone())
        .collect();
    assert_eq!(event_ids.len(), 2, "every event has its own id");
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.sequence, index + 1);
        assert_eq!(event.metadata[keys::POSITION], "2");
        assert_eq!(
            event.metadata[keys::COMMAND_ID],
            meta.command_id.to_string()
        );
        assert_eq!(
            event.metadata[keys::CORRELATION_ID],
            meta.correlation_id.to_string()
        );
        assert_eq!(
            event.metadata[keys::CAUSATION_ID],
            meta.causation_id.to_string()
        );
        assert_eq!(event.metadata[keys::ACTOR], "system:test");
        assert!(event.metadata[keys::TIMESTAMP]
            .parse::<chrono::DateTime<chrono::Utc>>()
            .is_ok());
    }
}

#[tokio::test]
async fn extra_metadata_travels_with_the_events() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let store = store::<Tally>(&client, EventStoreConfig::default()).await;
    let framework = cqrs_es::CqrsFramework::new(store.clone(), vec![], ());
    let mut map: HashMap<String, String> = metadata().to_map();
    map.insert("traceparent".into(), "00-abc-def-01".into());
    framework
        .execute_with_metadata("t", add(1, 1), map)
        .await
        .unwrap();
    let events = store.load_events("t").await.unwrap();
    assert_eq!(events[0].metadata["traceparent"], "00-abc-def-01");
}

#[tokio::test]
async fn loading_an_aggregate_reads_only_its_own_subject_across_many_batches() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    // More commits than one direct-get batch (256), interleaved with another aggregate.
    for i in 0..300u64 {
        bus.execute("long", add(i, 1), &metadata()).await.unwrap();
        bus.execute("noise", add(1, 1), &metadata()).await.unwrap();
    }
    let history = bus.store().history("long").await.unwrap();
    assert_eq!(history.len(), 300);
    assert!(history.iter().all(|c| c.envelope.aggregate_id == "long"));
    assert!(history.windows(2).all(|w| w[0].position < w[1].position));
    let fresh = crate::store::<Tally>(&client, uncached()).await;
    let loaded = fresh.load_fresh("long").await.unwrap();
    assert_eq!(loaded.state().total, (0..300).sum::<u64>());
    assert_eq!(loaded.version(), 300);
}

/// More commits than one direct-get batch, so that a cold load goes through the snapshot.
const LONG_AGGREGATE: u64 = 300;

#[tokio::test]
async fn snapshot_plus_tail_equals_the_full_fold() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let config = EventStoreConfig {
        snapshot_every: 70,
        ..Default::default()
    };
    let bus = bus::<Tally>(&client, config.clone()).await;
    for i in 0..LONG_AGGREGATE {
        // Two events per command, so a snapshot taken mid-command would show.
        bus.execute("snap", add(i, 2), &metadata()).await.unwrap();
    }
    // A cold store (another replica) loads from the snapshot plus the tail.
    let cold = store::<Tally>(&client, config).await;
    let (snapshot_version, snapshot_position) =
        cold.snapshot_position("snap").await.unwrap().unwrap();
    let total_events = 2 * LONG_AGGREGATE as usize;
    assert!(
        snapshot_version > 0 && snapshot_version < total_events,
        "snapshot at {snapshot_version}"
    );
    assert!(
        snapshot_position < LONG_AGGREGATE,
        "a tail follows the snapshot"
    );
    let from_snapshot = cold.load_fresh("snap").await.unwrap();

    let mut full_fold = Tally::default();
    for event in cold.load_events("snap").await.unwrap() {
        full_fold.apply(event.payload);
    }
    assert_eq!(from_snapshot.state(), &full_fold);
    assert_eq!(from_snapshot.version(), total_events);
    assert_eq!(
        full_fold.events_seen as usize, total_events,
        "no event applied twice"
    );
}

#[tokio::test]
async fn a_cold_load_of_a_long_aggregate_starts_from_its_snapshot() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let config = EventStoreConfig {
        snapshot_every: 0,
        ..Default::default()
    };
    let bus = bus::<Tally>(&client, config).await;
    for _ in 0..LONG_AGGREGATE {
        bus.execute("long", add(1, 1), &metadata()).await.unwrap();
    }
    // A doctored snapshot at position 250: if the load used it, its marker shows.
    let js = async_nats::jetstream::new(client.clone());
    let snapshots = js.get_key_value(subjects::SNAPSHOTS_BUCKET).await.unwrap();
    let doctored = serde_json::json!({
        "version": 250, "position": 250,
        "state": {"total": 1_000_000, "events_seen": 250, "last_label": "from-snapshot"},
        "recent_commits": []
    });
    let key = subjects::snapshot_key("tally", "long");
    snapshots
        .put(&key, serde_json::to_vec(&doctored).unwrap().into())
        .await
        .unwrap();

    let cold = store::<Tally>(&client, EventStoreConfig::default()).await;
    let loaded = cold.load_fresh("long").await.unwrap();
    assert_eq!(loaded.version(), LONG_AGGREGATE as usize);
    assert_eq!(
        loaded.state().total,
        1_000_000 + (LONG_AGGREGATE - 250),
        "snapshot plus 50 tail events"
    );

    // A short aggregate is read in one batch, without consulting snapshots.
    bus.execute("short", add(1, 1), &metadata()).await.unwrap();
    let short_key = subjects::snapshot_key("tally", "short");
    snapshots
        .put(&short_key, serde_json::to_vec(&doctored).unwrap().into())
        .await
        .unwrap();
    assert_eq!(cold.load_fresh("short").await.unwrap().state().total, 1);
}

#[tokio::test]
async fn the_whole_log_can_be_read_from_any_position() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    for i in 0..10u64 {
        let id = if i % 2 == 0 { "even" } else { "odd" };
        bus.execute(id, add(i, 1), &metadata()).await.unwrap();
    }
    let js = async_nats::jetstream::new(client.clone());
    let commits: Vec<_> = read_all(&js, 4, None)
        .await
        .unwrap()
        .take(7)
        .map(|c| c.unwrap())
        .collect()
        .await;
    let positions: Vec<u64> = commits.iter().map(|c| c.position).collect();
    assert_eq!(positions, (4..=10).collect::<Vec<_>>());

    let odd_only: Vec<_> = read_all(&js, 1, Some(subjects::aggregate_subject("tally", "odd")))
        .await
        .unwrap()
        .take(5)
        .map(|c| c.unwrap().position)
        .collect()
        .await;
    assert_eq!(odd_only, vec![2, 4, 6, 8, 10]);

    // The log is followed live: a commit made now arrives on an open reader.
    let mut live = read_all(&js, 11, None).await.unwrap();
    bus.execute("late", add(1, 1), &metadata()).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .unwrap();
    assert_eq!(next.unwrap().unwrap().envelope.aggregate_id, "late");
}

#[tokio::test]
async fn an_unreadable_snapshot_is_ignored_and_the_state_rebuilt_from_the_log() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let config = EventStoreConfig {
        snapshot_every: 2,
        ..Default::default()
    };
    let bus = bus::<Tally>(&client, config.clone()).await;
    for i in 0..5u64 {
        bus.execute("shape", add(i, 1), &metadata()).await.unwrap();
    }
    // The state's shape changed since the snapshot was written.
    let js = async_nats::jetstream::new(client.clone());
    let snapshots = js.get_key_value(subjects::SNAPSHOTS_BUCKET).await.unwrap();
    let key = subjects::snapshot_key("tally", "shape");
    let stale = serde_json::json!({"version": 4, "position": 4, "state": {"old_field": 1}, "recent_commits": []});
    snapshots
        .put(&key, serde_json::to_vec(&stale).unwrap().into())
        .await
        .unwrap();

    let cold = store::<Tally>(&client, config).await;
    let loaded = cold.load_fresh("shape").await.unwrap();
    assert_eq!((loaded.version(), loaded.state().total), (5, 10));
}
