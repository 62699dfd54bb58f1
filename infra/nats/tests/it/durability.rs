use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use infra_nats::{read_all, stream_last_position, CommandError, EventStoreConfig};
use testkit::{eventually, NatsServer};

use crate::tally::{add, Tally};
use crate::{bus, metadata, provisioned, uncached};

const EVENTS_PER_COMMAND: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_event_command_is_never_seen_half_written_even_across_a_server_kill() {
    let mut server = NatsServer::start();
    let client = provisioned(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));

    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let client = client.clone();
            let stop = stop.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
                let id = format!("w{writer}");
                while !stop.load(Ordering::Relaxed) {
                    match bus
                        .execute(&id, add(1, EVENTS_PER_COMMAND), &metadata())
                        .await
                    {
                        Ok(outcome) => acknowledged
                            .lock()
                            .unwrap()
                            .push((id.clone(), outcome.position)),
                        // While the server is down commands fail; they must fail whole.
                        Err(CommandError::Unavailable(_) | CommandError::Conflict { .. }) => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
            })
        })
        .collect();
    let reader = {
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let store = crate::store::<Tally>(&client, uncached()).await;
            let mut observations = 0;
            while !stop.load(Ordering::Relaxed) {
                for writer in 0..4 {
                    if let Ok(loaded) = store.load_fresh(&format!("w{writer}")).await {
                        assert_eq!(
                            loaded.version() % EVENTS_PER_COMMAND,
                            0,
                            "half a command seen"
                        );
                        assert_eq!(loaded.state().events_seen as usize, loaded.version());
                        observations += 1;
                    }
                }
            }
            observations
        })
    };

    let acked = |n: usize| {
        let acknowledged = acknowledged.clone();
        move || {
            let acknowledged = acknowledged.clone();
            async move { (acknowledged.lock().unwrap().len() >= n).then_some(()) }
        }
    };
    eventually(
        "writes before the kill",
        Duration::from_secs(30),
        acked(200),
    )
    .await;
    server.kill();
    // Stay down for a while so that writers run into the outage, not only the restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    let before_restart = acknowledged.lock().unwrap().len();
    eventually(
        "writes after the restart",
        Duration::from_secs(60),
        acked(before_restart + 200),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(reader.await.unwrap() > 0, "the reader observed aggregates");

    // Every commit in the log is whole, and every acknowledged command is in it.
    let js = async_nats::jetstream::new(client.clone());
    let last = stream_last_position(&js).await.unwrap();
    let commits: Vec<_> = read_all(&js, 1, None)
        .await
        .unwrap()
        .take(last as usize)
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert!(commits
        .iter()
        .all(|c| c.envelope.events.len() == EVENTS_PER_COMMAND));
    let stored: std::collections::HashSet<_> = commits
        .iter()
        .map(|c| (c.envelope.aggregate_id.clone(), c.position))
        .collect();
    for ack in acknowledged.lock().unwrap().iter() {
        assert!(stored.contains(ack), "acknowledged commit {ack:?} lost");
    }
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_across_a_server_kill_and_restart() {
    let mut server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    let mut acknowledged = Vec::new();
    for i in 0..300u64 {
        let id = format!("agg-{}", i % 30);
        acknowledged.push((
            id.clone(),
            bus.execute(&id, add(i, 1), &metadata()).await.unwrap(),
        ));
    }
    server.kill();
    server.restart();

    let client = provisioned(&server).await;
    let fresh = crate::store::<Tally>(&client, uncached()).await;
    for (id, outcome) in &acknowledged {
        let history = eventually(
            "the aggregate readable after restart",
            Duration::from_secs(10),
            || {
                let fresh = fresh.clone();
                let id = id.clone();
                async move { fresh.history(&id).await.ok() }
            },
        )
        .await;
        assert!(
            history.iter().any(|c| c.position == outcome.position),
            "acknowledged commit at {} of {id} lost",
            outcome.position
        );
    }
    let js = async_nats::jetstream::new(client);
    assert_eq!(stream_last_position(&js).await.unwrap(), 300);
}
