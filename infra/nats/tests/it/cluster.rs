//! The event store on a three-node JetStream cluster with the events stream at R3: the
//! stream leader is killed with SIGKILL under load and brought back, and afterwards
//! every acknowledged command is in the log exactly once at the position it was
//! acknowledged with, every aggregate's version and hash chain is intact, and stale
//! appends are still refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use domain::CommandMetadata;
use futures::StreamExt;
use infra_nats::{
    audit, provision, read_all, stream_last_position, subjects, CommandBus, CommandError,
    CommitOutcome, ConflictPolicy, EventStoreConfig, JetStreamEventStore, StreamSettings,
};
use testkit::{eventually, NatsCluster};

use crate::tally::{add, Tally, TallyCommand, TallyEvent};
use crate::{metadata, uncached};

const WRITERS: usize = 4;
/// Fewer aggregates than writers: writers (each a separate bus with its own cache, as
/// separate replicas would be) race each other on the same aggregates.
const AGGREGATES: usize = 3;
const EVENTS_PER_COMMAND: usize = 2;
/// Acknowledged commands to wait for in each phase: before the kill, while one node is
/// down, after it is back.
const PER_PHASE: usize = 150;

/// What a writer saw acknowledged: the command id and the outcome the bus reported.
#[derive(Debug, Clone)]
struct Acknowledged {
    command_id: String,
    aggregate_id: String,
    position: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_under_load_loses_no_acknowledged_command_and_duplicates_none() {
    let started = Instant::now();
    let mut cluster = NatsCluster::start();
    let client = infra_nats::connect(&cluster.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    provision(
        &js,
        &StreamSettings {
            replicas: 3,
            ..StreamSettings::default()
        },
    )
    .await
    .unwrap();
    let info = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let peers = info.cluster.as_ref().map_or(0, |c| c.replicas.len());
    assert_eq!(peers, 2, "a leader and two followers: {:?}", info.cluster);

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<Acknowledged>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (client, stop, acknowledged) = (client.clone(), stop.clone(), acknowledged.clone());
            tokio::spawn(write_until_stopped(writer, client, stop, acknowledged))
        })
        .collect();
    let acked = |n: usize| {
        let acknowledged = acknowledged.clone();
        move || {
            let acknowledged = acknowledged.clone();
            async move { (acknowledged.lock().unwrap().len() >= n).then_some(()) }
        }
    };

    eventually(
        "writes before the kill",
        Duration::from_secs(20),
        acked(PER_PHASE),
    )
    .await;
    let leader = stream_leader(&js).await;
    let victim = cluster
        .index_of(&leader)
        .unwrap_or_else(|| panic!("the stream leader {leader} is one of the cluster's nodes"));
    cluster.kill(victim);
    let at_kill = acknowledged.lock().unwrap().len();
    eventually(
        "writes with the old leader down",
        Duration::from_secs(30),
        acked(at_kill + PER_PHASE),
    )
    .await;
    let new_leader = stream_leader(&js).await;
    assert_ne!(new_leader, leader, "another node leads the stream");
    assert_stale_appends_are_refused(&client, "while-one-node-is-down").await;

    // Restarting blocks until the node is healthy; the writers go on meanwhile.
    tokio::task::block_in_place(|| cluster.restart(victim));
    let at_restart = acknowledged.lock().unwrap().len();
    eventually(
        "writes after the restart",
        Duration::from_secs(20),
        acked(at_restart + PER_PHASE),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut resent = Resent::default();
    for writer in writers {
        let writer = writer.await.unwrap();
        resent.unavailable += writer.unavailable;
        resent.conflict += writer.conflict;
    }
    assert_stale_appends_are_refused(&client, "after-the-restart").await;

    // The log, read once from start to end.
    let last = stream_last_position(&js).await.unwrap();
    let commits: Vec<_> = read_all(&js, 1, None)
        .await
        .unwrap()
        .take(usize::try_from(last).unwrap())
        .map(|commit| commit.unwrap())
        .collect()
        .await;
    assert_eq!(commits.len() as u64, last, "the log has no holes");
    let mut stored: HashMap<&str, Vec<(u64, &str)>> = HashMap::new();
    for commit in &commits {
        stored
            .entry(commit.envelope.command_id.as_str())
            .or_default()
            .push((commit.position, commit.envelope.aggregate_id.as_str()));
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    for ack in acknowledged.iter() {
        assert_eq!(
            stored.get(ack.command_id.as_str()).map(Vec::as_slice),
            Some(&[(ack.position, ack.aggregate_id.as_str())][..]),
            "acknowledged command {ack:?}: once, at the acknowledged position"
        );
    }
    // Every command was resent until acknowledged, and each stale-append check added
    // its seeded commits and one winner: nothing else is in the log.
    assert_eq!(commits.len(), acknowledged.len() + 2 * (SEEDED + 1));

    let report = audit::verify(&js, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (report.commits, report.unchained, report.last_position),
        (last, 0, last)
    );

    // The restarted node caught up: the leader reports both followers current.
    eventually(
        "both followers current",
        Duration::from_secs(20),
        || async {
            let mut stream = js.get_stream(subjects::EVENTS_STREAM).await.ok()?;
            let info = stream.info().await.ok()?;
            let replicas = &info.cluster.as_ref()?.replicas;
            (replicas.len() == 2 && replicas.iter().all(|r| r.current && !r.offline)).then_some(())
        },
    )
    .await;
    eprintln!(
        "cluster test: {} commands acknowledged, resent {resent:?}; stream leader {leader} \
         killed, {new_leader} took over; {:?} in all",
        acknowledged.len(),
        started.elapsed()
    );
}

/// How often a writer resent a command, by the error that made it.
#[derive(Debug, Default)]
struct Resent {
    unavailable: usize,
    conflict: usize,
}

/// Sends commands until `stop`, each resent with the same command id until it is
/// acknowledged.
async fn write_until_stopped(
    writer: usize,
    client: async_nats::Client,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Acknowledged>>>,
) -> Resent {
    // Cached, as in a role: a cache made stale by the other writers is caught by the
    // server's sequence check.
    let store = open_store(&client, EventStoreConfig::default()).await;
    let bus = CommandBus::new(store, (), ConflictPolicy::default());
    let mut resent = Resent::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let aggregate_id = format!("agg-{}", (writer + n) % AGGREGATES);
        let command_metadata = metadata();
        let outcome = execute_until_acknowledged(
            &bus,
            &aggregate_id,
            add(1, EVENTS_PER_COMMAND),
            &command_metadata,
            &mut resent,
        )
        .await;
        assert_eq!(outcome.aggregate_id, aggregate_id);
        acknowledged.lock().unwrap().push(Acknowledged {
            command_id: command_metadata.command_id.to_string(),
            aggregate_id,
            position: outcome.position,
        });
    }
    resent
}

/// Executes `command`, resending it as it was until it is acknowledged (at most 30 s).
///
/// While a node is down or a leader is being elected, a command may fail as unavailable
/// (stored or not) or as a conflict (other writers kept winning, or a read came from a
/// follower a moment behind): sending it again with the same command id is safe, since
/// the bus finds it in the log if it was stored.
async fn execute_until_acknowledged(
    bus: &CommandBus<Tally>,
    aggregate_id: &str,
    command: TallyCommand,
    command_metadata: &CommandMetadata,
    resent: &mut Resent,
) -> CommitOutcome {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match bus
            .execute(aggregate_id, command.clone(), command_metadata)
            .await
        {
            Ok(outcome) => return outcome,
            Err(error @ (CommandError::Unavailable(_) | CommandError::Conflict { .. })) => {
                assert!(
                    Instant::now() < deadline,
                    "command {} not acknowledged within 30 s: {error}",
                    command_metadata.command_id
                );
                match error {
                    CommandError::Unavailable(_) => resent.unavailable += 1,
                    _ => resent.conflict += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
}

/// A store, opened as soon as the buckets answer: right after a node dies, a bucket
/// whose leader it was has none until its followers elect one.
async fn open_store(
    client: &async_nats::Client,
    config: EventStoreConfig,
) -> JetStreamEventStore<Tally> {
    eventually(
        "the store's buckets to answer",
        Duration::from_secs(30),
        || {
            let config = config.clone();
            async move { JetStreamEventStore::new(client.clone(), config).await.ok() }
        },
    )
    .await
}

/// The server name of the `EVENTS` stream's current leader (waits for an election).
async fn stream_leader(js: &jetstream::Context) -> String {
    eventually("a stream leader", Duration::from_secs(20), || async {
        let mut stream = js.get_stream(subjects::EVENTS_STREAM).await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster.as_ref()?.leader.clone()
    })
    .await
}

/// Commits on the stale-append checks' own aggregates before each check.
const SEEDED: usize = 3;

/// Ten appends prepared on the same loaded state of one aggregate (with history, so the
/// expected sequence is not 0): the cluster lets exactly one through and refuses the
/// other nine as conflicts.
async fn assert_stale_appends_are_refused(client: &async_nats::Client, aggregate_id: &str) {
    let store = open_store(client, uncached()).await;
    let seeder = CommandBus::new(store.clone(), (), ConflictPolicy::default());
    for i in 0..SEEDED {
        let command_metadata = metadata();
        execute_until_acknowledged(
            &seeder,
            aggregate_id,
            add(i as u64, 1),
            &command_metadata,
            &mut Resent::default(),
        )
        .await;
    }
    let mut contexts = Vec::new();
    for _ in 0..10 {
        // A read may be answered by a follower a moment behind the leader: load until
        // the state includes every seeded commit, so that all ten are equally stale.
        let context = eventually("the seeded state", Duration::from_secs(10), || async {
            let context = store.load_aggregate(aggregate_id).await.ok()?;
            (context.version() == SEEDED).then_some(context)
        })
        .await;
        contexts.push(context);
    }
    let attempts = contexts.into_iter().map(|mut context| {
        let store = store.clone();
        async move {
            let event = TallyEvent::Added {
                amount: 1,
                label: "stale".to_owned(),
            };
            context.aggregate().apply(event.clone());
            store
                .commit(vec![event], context, metadata().to_map())
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(AggregateError::AggregateConflict)))
        .count();
    assert_eq!((winners, conflicts), (1, 9), "{aggregate_id}: {results:?}");
}
