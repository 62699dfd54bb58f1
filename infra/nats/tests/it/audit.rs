//! The hash chain on real commits, and `audit::verify` catching damage planted straight
//! onto the log (bypassing the store).

use infra_nats::audit::{self, Bound, FindingKind};
use infra_nats::{subjects, CommitEnvelope, EventStoreConfig, RecordedCommit};
use serde_json::json;
use testkit::NatsServer;

use crate::tally::{add, Tally};
use crate::{bus, metadata, provisioned, store, uncached};

/// Asserts that every commit's hash chains to the one before it.
fn assert_chained(history: &[RecordedCommit]) {
    let mut previous: Option<String> = None;
    for commit in history {
        let hash = commit
            .envelope
            .hash
            .clone()
            .expect("every commit is chained");
        assert_eq!(
            hash,
            commit.envelope.chain_hash(previous.as_deref()),
            "commit at {}",
            commit.position
        );
        previous = Some(hash);
    }
}

#[tokio::test]
async fn every_commit_chains_to_the_previous_one_with_and_without_the_cache() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    for (id, config) in [
        ("cached", EventStoreConfig::default()),
        ("uncached", uncached()),
    ] {
        let bus = bus::<Tally>(&client, config).await;
        for i in 0..4 {
            bus.execute(id, add(i, 2), &metadata()).await.unwrap();
        }
        let history = store::<Tally>(&client, uncached())
            .await
            .history(id)
            .await
            .unwrap();
        assert_eq!(history.len(), 4);
        assert_chained(&history);
        assert_ne!(history[0].envelope.hash, history[1].envelope.hash);
    }
}

#[tokio::test]
async fn a_store_loading_from_a_snapshot_continues_the_chain() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let config = EventStoreConfig {
        snapshot_every: 2,
        ..Default::default()
    };
    let first = bus::<Tally>(&client, config.clone()).await;
    // More than one direct-get batch, ending on a snapshot: a cold load reads no tail.
    for _ in 0..258 {
        first.execute("snap", add(1, 1), &metadata()).await.unwrap();
    }
    let cold = bus::<Tally>(&client, config.clone()).await;
    let (_, snapshot_position) = store::<Tally>(&client, config)
        .await
        .snapshot_position("snap")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot_position, 258, "the snapshot is the last commit");
    cold.execute("snap", add(1, 1), &metadata()).await.unwrap();
    let history = store::<Tally>(&client, uncached())
        .await
        .history("snap")
        .await
        .unwrap();
    assert_chained(&history);
}

#[tokio::test]
async fn a_clean_log_verifies_clean() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    for i in 0..3 {
        bus.execute("a", add(i, 2), &metadata()).await.unwrap();
        bus.execute("b", add(i, 1), &metadata()).await.unwrap();
    }
    let js = async_nats::jetstream::new(client);
    let report = audit::verify(&js, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (
            report.commits,
            report.aggregates,
            report.unchained,
            report.last_position
        ),
        (6, 2, 0, 6)
    );
    let only_other = audit::verify(&js, Some("order")).await.unwrap();
    assert_eq!(only_other.commits, 0);
}

/// Three commits on `tally/a`, then `forge` publishes one more message straight onto
/// the subject; returns the forged message's position and the report.
async fn plant(
    forge: impl FnOnce(&[RecordedCommit]) -> CommitEnvelope,
) -> (u64, audit::VerifyReport) {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    for i in 0..3 {
        bus.execute("a", add(i, 1), &metadata()).await.unwrap();
    }
    bus.execute("b", add(1, 1), &metadata()).await.unwrap();
    let history = store::<Tally>(&client, uncached())
        .await
        .history("a")
        .await
        .unwrap();
    let forged = forge(&history);
    let js = async_nats::jetstream::new(client);
    let ack = js
        .publish(
            subjects::aggregate_subject("tally", "a"),
            serde_json::to_vec(&forged).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // A clean commit after the damage must not be reported.
    bus.execute("b", add(1, 1), &metadata()).await.unwrap();
    (ack.sequence, audit::verify(&js, None).await.unwrap())
}

#[tokio::test]
async fn an_altered_copy_is_caught_at_its_position() {
    let (position, report) = plant(|history| {
        let mut copy = history[1].envelope.clone();
        copy.events[0].payload = json!({ "Added": { "amount": 1_000_000, "label": "x" } });
        copy
    })
    .await;
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Altered && f.position == position),
        "{report:?}"
    );
    assert!(report.findings.iter().all(|f| f.position == position));
    assert_eq!(report.commits, 6);
}

#[tokio::test]
async fn a_commit_skipping_a_version_is_a_gap() {
    let (position, report) = plant(|history| {
        let last = &history[2].envelope;
        let mut next = last.clone();
        next.first_sequence = last.last_sequence() + 2;
        next.command_id = "forged".to_owned();
        next.seal(last.hash.as_deref());
        next
    })
    .await;
    let found: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.position))
        .collect();
    assert_eq!(found, [(FindingKind::Gap, position)], "{report:?}");
    assert_eq!(report.findings[0].aggregate_id, "a");
}

#[tokio::test]
async fn a_commit_repeating_an_old_version_is_reordered() {
    let (position, report) = plant(|history| {
        let last = &history[2].envelope;
        let mut repeat = history[0].envelope.clone();
        // Properly chained, so only the version gives it away.
        repeat.seal(last.hash.as_deref());
        repeat
    })
    .await;
    let found: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.position))
        .collect();
    assert_eq!(found, [(FindingKind::Reordered, position)], "{report:?}");
}

#[tokio::test]
async fn audit_reads_refuse_unknown_types_and_missing_aggregates() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let bus = bus::<Tally>(&client, EventStoreConfig::default()).await;
    let unknown = audit::history(&client, "tally", "a", 0, 10).await;
    assert!(matches!(unknown, Err(audit::AuditError::UnknownType(_))));
    let missing = audit::history(&client, "order", "nope", 0, 10).await;
    assert!(matches!(missing, Err(audit::AuditError::NotFound { .. })));
    bus.execute("a", add(1, 2), &metadata()).await.unwrap();
    let state = audit::state_at(&client, "order", "a", Bound::Version(1)).await;
    assert!(matches!(state, Err(audit::AuditError::NotFound { .. })));
}
