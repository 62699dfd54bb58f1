//! Building commits by hand, as the event store would have written them: for tests of
//! read models and for benchmarks.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::metadata::keys;
use infra_nats::{CommitEnvelope, RecordedCommit};

/// A commit of `events` to aggregate `aggregate_id` of type `A`, at stream position
/// `position`, whose first event has aggregate version `first_sequence`.
///
/// # Panics
/// When an event does not serialise (a bug in the domain types).
pub fn commit<A: Aggregate>(
    position: u64,
    aggregate_id: &str,
    first_sequence: usize,
    events: &[A::Event],
    timestamp: DateTime<Utc>,
) -> RecordedCommit {
    let metadata = HashMap::from([
        (keys::COMMAND_ID.to_owned(), format!("fixture-{position}")),
        (keys::ACTOR.to_owned(), "user:fixture".to_owned()),
    ]);
    let envelope =
        CommitEnvelope::new::<A>(aggregate_id, first_sequence, events, &metadata, timestamp)
            .expect("fixture events serialise");
    RecordedCommit { position, envelope }
}
