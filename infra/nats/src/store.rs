//! `JetStreamEventStore`: cqrs-es's `EventStore` on the `EVENTS` stream.
//!
//! Load: an in-process cache of aggregate state, else the latest snapshot from the KV
//! bucket plus the tail of the aggregate's subject, else the whole subject.
//! Commit: one message carrying every event of the command, published with
//! `Nats-Expected-Last-Subject-Sequence` set to the last position this process saw for the
//! aggregate and `Nats-Msg-Id` set to the command id. The server rejects the commit if
//! anything was appended since, so a stale cache entry costs a conflict and a reload,
//! never a lost update.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, context::PublishErrorKind, kv};
use async_nats::HeaderMap;
use chrono::Utc;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use domain::Upcasting;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, instrument, warn};

use crate::envelope::{CommitEnvelope, RecordedCommit};
use crate::error::{BoxError, ErrorChain, StoreError};
use crate::reader::{read_subject, read_subject_batch, DIRECT_GET_BATCH};
use crate::subjects::{aggregate_subject, headers, snapshot_key, SNAPSHOTS_BUCKET};

/// Tuning of one store.
#[derive(Debug, Clone)]
pub struct EventStoreConfig {
    /// Write a snapshot after this many events since the last one; 0 never snapshots.
    pub snapshot_every: usize,
    /// Aggregates whose state is kept in memory; 0 disables the cache.
    pub cache_capacity: usize,
    /// How many recent command ids each aggregate remembers for idempotency.
    pub remembered_commands: usize,
}

impl Default for EventStoreConfig {
    fn default() -> Self {
        Self {
            snapshot_every: 100,
            cache_capacity: 10_000,
            remembered_commands: 256,
        }
    }
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    pub aggregate_id: String,
    /// The stream sequence the command committed at (its events' global position);
    /// for a command that emitted nothing, the aggregate's last position.
    pub position: u64,
    /// The aggregate version after the command.
    pub version: usize,
    /// How many events the command appended.
    pub events: usize,
    /// True when this command id had already been committed: nothing new was appended,
    /// and the original outcome is returned.
    pub duplicate: bool,
}

impl CommitOutcome {
    pub(crate) fn replayed(aggregate_id: &str, record: CommitRecord) -> Self {
        Self {
            aggregate_id: aggregate_id.to_owned(),
            position: record.position,
            version: record.version,
            events: record.events,
            duplicate: true,
        }
    }
}

/// A command recorded on an aggregate: enough to answer a retry with the original outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommitRecord {
    pub command_id: String,
    pub position: u64,
    pub version: usize,
    pub events: usize,
}

/// An aggregate's folded state at a position: the cache entry and the snapshot format.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FoldedState {
    version: usize,
    position: u64,
    state: Value,
    recent_commits: VecDeque<CommitRecord>,
    /// The hash of the commit at `position` (absent in snapshots written before the
    /// hash chain, and for unchained commits).
    #[serde(default)]
    last_hash: Option<String>,
    #[serde(skip)]
    events_since_snapshot: usize,
}

impl FoldedState {
    fn find_commit(&self, command_id: &str) -> Option<&CommitRecord> {
        self.recent_commits
            .iter()
            .rev()
            .find(|record| record.command_id == command_id)
    }

    fn remember(&mut self, record: CommitRecord, capacity: usize) {
        remember(&mut self.recent_commits, record, capacity);
    }
}

fn remember(recent: &mut VecDeque<CommitRecord>, record: CommitRecord, capacity: usize) {
    recent.push_back(record);
    while recent.len() > capacity {
        recent.pop_front();
    }
}

/// The aggregate being decided on, with what the store needs to commit its events.
pub struct JetStreamAggregateContext<A: Aggregate> {
    aggregate_id: String,
    aggregate: A,
    /// Aggregate version (number of events) the state reflects.
    version: usize,
    /// Stream sequence of the aggregate's last commit; 0 for a new aggregate.
    position: u64,
    /// The aggregate's recent commits when the state was read from the log (or a
    /// snapshot); `None` when it came from the cache, whose entry keeps the list so that
    /// it is not copied on every command.
    recent_commits: Option<VecDeque<CommitRecord>>,
    /// The hash of the aggregate's last commit, which the next commit chains to.
    last_hash: Option<String>,
    events_since_snapshot: usize,
}

impl<A: Aggregate> AggregateContext<A> for JetStreamAggregateContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A: Aggregate> JetStreamAggregateContext<A> {
    /// The aggregate version the loaded state reflects.
    pub fn version(&self) -> usize {
        self.version
    }

    /// The stream sequence of the aggregate's last commit (0 when new).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The hash of the aggregate's last commit (`None` when new or unchained).
    pub fn last_hash(&self) -> Option<&str> {
        self.last_hash.as_deref()
    }

    /// The loaded state.
    pub fn state(&self) -> &A {
        &self.aggregate
    }

    /// The loaded state, owned.
    pub fn into_state(self) -> A {
        self.aggregate
    }

    /// The loaded state, for deciding a command on it.
    pub(crate) fn state_mut(&mut self) -> &mut A {
        &mut self.aggregate
    }

    fn new(aggregate_id: &str) -> Self {
        Self {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: A::default(),
            version: 0,
            position: 0,
            recent_commits: Some(VecDeque::new()),
            last_hash: None,
            events_since_snapshot: 0,
        }
    }

    /// A context from a snapshot: it owns a copy of the recent commits.
    fn from_snapshot(aggregate_id: &str, folded: FoldedState) -> Result<Self, StoreError> {
        let mut context = Self::from_cached(aggregate_id, &folded)?;
        context.recent_commits = Some(folded.recent_commits);
        Ok(context)
    }

    /// A context from a cache entry: the entry keeps the recent commits.
    fn from_cached(aggregate_id: &str, folded: &FoldedState) -> Result<Self, StoreError> {
        let aggregate = A::deserialize(&folded.state)
            .map_err(|e| StoreError::decode(format!("state of {}/{aggregate_id}", A::TYPE), e))?;
        Ok(Self {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            version: folded.version,
            position: folded.position,
            recent_commits: None,
            last_hash: folded.last_hash.clone(),
            events_since_snapshot: folded.events_since_snapshot,
        })
    }

    fn serialized_state(&self) -> Result<Value, StoreError> {
        serde_json::to_value(&self.aggregate).map_err(|e| StoreError::decode("aggregate state", e))
    }

    /// The folded state, if this context owns its recent commits.
    fn to_folded(&self) -> Result<Option<FoldedState>, StoreError> {
        let Some(recent_commits) = &self.recent_commits else {
            return Ok(None);
        };
        Ok(Some(FoldedState {
            version: self.version,
            position: self.position,
            state: self.serialized_state()?,
            recent_commits: recent_commits.clone(),
            last_hash: self.last_hash.clone(),
            events_since_snapshot: self.events_since_snapshot,
        }))
    }

    fn remember(&mut self, record: CommitRecord, capacity: usize) {
        if let Some(recent) = &mut self.recent_commits {
            remember(recent, record, capacity);
        }
    }

    fn find_commit(&self, command_id: &str) -> Option<&CommitRecord> {
        self.recent_commits
            .as_ref()?
            .iter()
            .rev()
            .find(|record| record.command_id == command_id)
    }
}

struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    snapshots: kv::Store,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    config: EventStoreConfig,
    cache: Option<Mutex<LruCache<String, FoldedState>>>,
}

/// The JetStream event store for aggregate `A`; cheap to clone.
pub struct JetStreamEventStore<A: Aggregate> {
    shared: Arc<Shared>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for JetStreamEventStore<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> JetStreamEventStore<A> {
    /// A store on a provisioned server (see [`crate::provision`]), decoding older events
    /// through the aggregate's own upcasters.
    ///
    /// # Errors
    /// [`StoreError::Nats`] when the snapshot bucket is missing.
    pub async fn new(
        client: async_nats::Client,
        config: EventStoreConfig,
    ) -> Result<Self, StoreError>
    where
        A: Upcasting,
    {
        Self::with_upcasters(client, config, A::upcasters()).await
    }

    /// A store with an explicit list of upcasters: for aggregates outside the domain, and
    /// for tests of the upcasting itself.
    ///
    /// # Errors
    /// [`StoreError::Nats`] when the snapshot bucket is missing.
    pub async fn with_upcasters(
        client: async_nats::Client,
        config: EventStoreConfig,
        upcasters: Vec<Box<dyn EventUpcaster>>,
    ) -> Result<Self, StoreError> {
        let js = jetstream::new(client.clone());
        let snapshots = js
            .get_key_value(SNAPSHOTS_BUCKET)
            .await
            .map_err(StoreError::nats)?;
        let cache =
            NonZeroUsize::new(config.cache_capacity).map(|cap| Mutex::new(LruCache::new(cap)));
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                js,
                snapshots,
                upcasters,
                config,
                cache,
            }),
            aggregate: PhantomData,
        })
    }

    /// Every commit of one aggregate, oldest first, with positions and metadata.
    ///
    /// # Errors
    /// [`StoreError`] when the log cannot be read or decoded.
    pub async fn history(&self, aggregate_id: &str) -> Result<Vec<RecordedCommit>, StoreError> {
        read_subject(
            &self.shared.client,
            &aggregate_subject(A::TYPE, aggregate_id),
            0,
        )
        .await
    }

    /// Loads the aggregate bypassing (and refreshing) the cache.
    ///
    /// # Errors
    /// [`StoreError`] when the log or the snapshot cannot be read.
    pub async fn load_fresh(
        &self,
        aggregate_id: &str,
    ) -> Result<JetStreamAggregateContext<A>, StoreError> {
        // Most aggregates are short: one batch holds all of their commits, and reading it
        // costs the same round trip as reading a snapshot. Only a full batch sends us to
        // the snapshot, and then on through the subject's tail.
        let subject = aggregate_subject(A::TYPE, aggregate_id);
        let mut first_batch = read_subject_batch(&self.shared.client, &subject, 0).await?;
        let longer_than_a_batch = first_batch.len() == DIRECT_GET_BATCH;
        let mut context = JetStreamAggregateContext::new(aggregate_id);
        if longer_than_a_batch {
            if let Some(snapshot) = self.snapshot_context(aggregate_id).await? {
                context = snapshot;
                first_batch.retain(|(position, _)| *position > context.position);
            }
        }
        for (position, payload) in first_batch {
            self.fold(&mut context, &RecordedCommit::decode(position, &payload)?)?;
        }
        if longer_than_a_batch {
            for commit in read_subject(&self.shared.client, &subject, context.position).await? {
                self.fold(&mut context, &commit)?;
            }
        }
        self.cache_put(&context)?;
        Ok(context)
    }

    async fn snapshot_context(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<JetStreamAggregateContext<A>>, StoreError> {
        let Some(folded) = self.read_snapshot(aggregate_id).await? else {
            return Ok(None);
        };
        match JetStreamAggregateContext::from_snapshot(aggregate_id, folded) {
            Ok(context) => Ok(Some(context)),
            // A snapshot is only a cache: one that no longer fits the aggregate's state
            // (its shape changed) is ignored and the state is rebuilt from the log.
            Err(error) => {
                warn!(aggregate_id, error = %ErrorChain(&error), "ignoring an unreadable snapshot");
                Ok(None)
            }
        }
    }

    /// The version and position of the stored snapshot of an aggregate, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the bucket cannot be read or the snapshot decoded.
    pub async fn snapshot_position(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<(usize, u64)>, StoreError> {
        Ok(self
            .read_snapshot(aggregate_id)
            .await?
            .map(|folded| (folded.version, folded.position)))
    }

    /// Forgets the cached state of one aggregate (the next load reads the log).
    pub fn evict(&self, aggregate_id: &str) {
        if let Some(cache) = &self.shared.cache {
            lock(cache).pop(aggregate_id);
        }
    }

    /// The outcome of a command already committed on an aggregate, if it is among the
    /// aggregate's remembered commands. `fresh` reads the log instead of the cache.
    pub(crate) async fn find_commit(
        &self,
        aggregate_id: &str,
        command_id: &str,
        fresh: bool,
    ) -> Result<Option<CommitRecord>, StoreError> {
        let cached = if fresh {
            None
        } else {
            self.with_cached(aggregate_id, |folded| {
                folded.find_commit(command_id).cloned()
            })
        };
        let found = match cached {
            Some(found) => found,
            None => self
                .load_fresh(aggregate_id)
                .await?
                .find_commit(command_id)
                .cloned(),
        };
        Ok(found)
    }

    /// The aggregate as the next command decides on it: the cached state, else the log.
    /// What [`EventStore::load_aggregate`] returns, with the [`StoreError`] itself (and so
    /// its cause) rather than cqrs-es's `AggregateError`, which hides it.
    ///
    /// # Errors
    /// [`StoreError`] when the log or the snapshot cannot be read or decoded.
    pub async fn load_context(
        &self,
        aggregate_id: &str,
    ) -> Result<JetStreamAggregateContext<A>, StoreError> {
        let cached = self.with_cached(aggregate_id, |folded| {
            JetStreamAggregateContext::from_cached(aggregate_id, folded)
        });
        if let Some(context) = cached {
            return context;
        }
        self.load_fresh(aggregate_id).await
    }

    fn fold(
        &self,
        context: &mut JetStreamAggregateContext<A>,
        commit: &RecordedCommit,
    ) -> Result<(), StoreError> {
        let envelopes = commit.into_event_envelopes::<A>(&self.shared.upcasters)?;
        let events = envelopes.len();
        for envelope in envelopes {
            context.aggregate.apply(envelope.payload);
        }
        context.version = commit.envelope.last_sequence();
        context.position = commit.position;
        context.last_hash = commit.envelope.hash.clone();
        context.events_since_snapshot += events;
        context.remember(
            CommitRecord {
                command_id: commit.envelope.command_id.clone(),
                position: commit.position,
                version: context.version,
                events,
            },
            self.shared.config.remembered_commands,
        );
        Ok(())
    }

    async fn read_snapshot(&self, aggregate_id: &str) -> Result<Option<FoldedState>, StoreError> {
        if self.shared.config.snapshot_every == 0 {
            return Ok(None);
        }
        let key = snapshot_key(A::TYPE, aggregate_id);
        let Some(bytes) = self
            .shared
            .snapshots
            .get(&key)
            .await
            .map_err(StoreError::nats)?
        else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(folded) => Ok(Some(folded)),
            Err(error) => {
                warn!(key, %error, "ignoring an unreadable snapshot");
                Ok(None)
            }
        }
    }

    /// Writes a snapshot; a failure only costs a longer load later, so it is logged.
    async fn write_snapshot(&self, aggregate_id: &str, folded: &FoldedState) {
        let key = snapshot_key(A::TYPE, aggregate_id);
        let result = match serde_json::to_vec(folded) {
            Ok(bytes) => self
                .shared
                .snapshots
                .put(&key, bytes.into())
                .await
                .map(|_| ())
                .map_err(BoxError::from),
            Err(e) => Err(BoxError::from(e)),
        };
        match result {
            Ok(()) => debug!(key, version = folded.version, "snapshot written"),
            Err(error) => warn!(key, error = %ErrorChain(&*error), "snapshot not written"),
        }
    }

    fn with_cached<R>(
        &self,
        aggregate_id: &str,
        read: impl FnOnce(&FoldedState) -> R,
    ) -> Option<R> {
        let cache = self.shared.cache.as_ref()?;
        lock(cache).get(aggregate_id).map(read)
    }

    fn cache_put(&self, context: &JetStreamAggregateContext<A>) -> Result<(), StoreError> {
        if let Some(cache) = &self.shared.cache {
            if let Some(folded) = context.to_folded()? {
                lock(cache).put(context.aggregate_id.clone(), folded);
            }
        }
        Ok(())
    }

    /// Brings the cache up to a successful commit, updating the entry in place when it
    /// still describes the state the command was decided on. Returns the folded state
    /// when a snapshot is due.
    fn cache_commit(
        &self,
        context: &JetStreamAggregateContext<A>,
        previous_position: u64,
        record: CommitRecord,
        snapshot_due: bool,
    ) -> Result<Option<FoldedState>, StoreError> {
        let capacity = self.shared.config.remembered_commands;
        let Some(cache) = &self.shared.cache else {
            return if snapshot_due {
                context.to_folded()
            } else {
                Ok(None)
            };
        };
        let state = context.serialized_state()?;
        let mut cache = lock(cache);
        match cache.get_mut(&context.aggregate_id) {
            Some(entry) if entry.position == previous_position => {
                entry.state = state;
                entry.version = context.version;
                entry.position = context.position;
                entry.last_hash = context.last_hash.clone();
                entry.events_since_snapshot = context.events_since_snapshot;
                entry.remember(record, capacity);
                Ok(snapshot_due.then(|| entry.clone()))
            }
            _ => match context.to_folded()? {
                Some(folded) => {
                    let snapshot = snapshot_due.then(|| folded.clone());
                    cache.put(context.aggregate_id.clone(), folded);
                    Ok(snapshot)
                }
                // The entry this state came from was replaced or evicted meanwhile, and
                // the context lacks the recent commits to rebuild it: drop it.
                None => {
                    cache.pop(&context.aggregate_id);
                    Ok(None)
                }
            },
        }
    }

    /// Appends a command's events as one commit, expecting the aggregate's last position
    /// to be the one `context` was loaded at, and returns the events as stored with what
    /// the commit did. A command that emitted nothing appends nothing.
    #[instrument(name = "append", skip_all, fields(aggregate_type = A::TYPE, aggregate_id = %context.aggregate_id, otel.kind = "producer"))]
    pub(crate) async fn append(
        &self,
        events: Vec<A::Event>,
        mut context: JetStreamAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<(Vec<EventEnvelope<A>>, CommitOutcome), StoreError> {
        let aggregate_id = context.aggregate_id.clone();
        if events.is_empty() {
            let outcome = CommitOutcome {
                aggregate_id,
                position: context.position,
                version: context.version,
                events: 0,
                duplicate: false,
            };
            return Ok((Vec::new(), outcome));
        }
        let mut envelope = CommitEnvelope::new::<A>(
            &aggregate_id,
            context.version + 1,
            &events,
            &metadata,
            Utc::now(),
        )?;
        envelope.seal(context.last_hash.as_deref());
        let subject = aggregate_subject(A::TYPE, &aggregate_id);
        let mut headers = commit_headers(&envelope, context.position);
        // Consumers continue this trace from the commit (see `trace_context`).
        crate::trace_context::inject_current(&mut headers);
        let payload =
            serde_json::to_vec(&envelope).map_err(|e| StoreError::decode("envelope", e))?;

        let publishing = std::time::Instant::now();
        let ack = self
            .shared
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(StoreError::nats)?
            .await;
        let ack = match ack {
            Ok(ack) => ack,
            Err(error) if is_wrong_sequence(&error) => {
                self.evict(&aggregate_id);
                return Err(StoreError::Conflict {
                    aggregate: format!("{}/{aggregate_id}", A::TYPE),
                    expected: context.position,
                });
            }
            Err(error) => {
                // The ack was lost or refused: the commit may or may not be stored, so the
                // cached state can no longer be trusted.
                self.evict(&aggregate_id);
                return Err(StoreError::nats(error));
            }
        };

        let event_count = events.len();
        if !ack.duplicate {
            metrics::histogram!("shopstream_append_seconds", "aggregate_type" => A::TYPE)
                .record(publishing.elapsed().as_secs_f64());
            metrics::counter!("shopstream_appends_total", "aggregate_type" => A::TYPE).increment(1);
            metrics::counter!("shopstream_appended_events_total", "aggregate_type" => A::TYPE)
                .increment(event_count as u64);
        }
        let committed = RecordedCommit {
            position: ack.sequence,
            envelope,
        };
        let envelopes = events
            .into_iter()
            .zip(&committed.envelope.events)
            .enumerate()
            .map(|(index, (payload, stored))| EventEnvelope {
                aggregate_id: aggregate_id.clone(),
                sequence: committed.envelope.first_sequence + index,
                payload,
                metadata: committed.event_metadata(stored),
            })
            .collect();

        // The handler already applied the events to `context.aggregate`.
        let previous_position = context.position;
        context.version += event_count;
        context.position = ack.sequence;
        context.last_hash = committed.envelope.hash.clone();
        context.events_since_snapshot += event_count;
        let record = CommitRecord {
            command_id: committed.envelope.command_id.clone(),
            position: ack.sequence,
            version: context.version,
            events: event_count,
        };
        context.remember(record.clone(), self.shared.config.remembered_commands);
        if ack.duplicate {
            // The server already holds this command id; its stored outcome wins.
            self.evict(&aggregate_id);
        } else {
            let snapshot_every = self.shared.config.snapshot_every;
            let snapshot_due =
                snapshot_every > 0 && context.events_since_snapshot >= snapshot_every;
            if snapshot_due {
                context.events_since_snapshot = 0;
            }
            let snapshot = self.cache_commit(&context, previous_position, record, snapshot_due)?;
            if let Some(folded) = snapshot {
                self.write_snapshot(&aggregate_id, &folded).await;
            }
        }
        let outcome = CommitOutcome {
            aggregate_id,
            position: ack.sequence,
            version: context.version,
            events: event_count,
            duplicate: ack.duplicate,
        };
        Ok((envelopes, outcome))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the cache lock leaves at worst a stale entry, which the
    // server's sequence check catches; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn commit_headers(envelope: &CommitEnvelope, expected_position: u64) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(headers::MSG_ID, envelope.command_id.as_str());
    map.insert(
        headers::EXPECTED_LAST_SUBJECT_SEQUENCE,
        expected_position.to_string().as_str(),
    );
    let event_types: Vec<&str> = envelope
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    map.insert(headers::EVENT_TYPES, event_types.join(",").as_str());
    map.insert(headers::CORRELATION_ID, envelope.correlation_id.as_str());
    map.insert(headers::CAUSATION_ID, envelope.causation_id.as_str());
    map
}

/// Both server codes for a failed expected-sequence check: 10071 (wrong last sequence)
/// and 10164 (an expectation the server cannot satisfy, e.g. in a batch).
fn is_wrong_sequence(error: &jetstream::context::PublishError) -> bool {
    if error.kind() == PublishErrorKind::WrongLastSequence {
        return true;
    }
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|js_error| {
            js_error.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                || js_error.error_code()
                    == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
        })
}

impl<A: Aggregate> EventStore<A> for JetStreamEventStore<A> {
    type AC = JetStreamAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let result: Result<Vec<EventEnvelope<A>>, StoreError> = async {
            let mut envelopes = Vec::new();
            for commit in self.history(aggregate_id).await? {
                envelopes.extend(commit.into_event_envelopes::<A>(&self.shared.upcasters)?);
            }
            Ok(envelopes)
        }
        .await;
        result.map_err(StoreError::into_aggregate_error)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        self.load_context(aggregate_id)
            .await
            .map_err(StoreError::into_aggregate_error)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.append(events, context, metadata)
            .await
            .map(|(envelopes, _)| envelopes)
            .map_err(StoreError::into_aggregate_error)
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};

    use super::is_wrong_sequence;

    fn refused_with(err_code: u64) -> PublishError {
        let api_error: async_nats::jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": err_code, "description": "refused"
        }))
        .unwrap();
        PublishError::with_source(PublishErrorKind::Other, api_error)
    }

    #[test]
    fn both_wrong_sequence_codes_are_conflicts() {
        assert!(is_wrong_sequence(&PublishError::new(
            PublishErrorKind::WrongLastSequence
        )));
        assert!(is_wrong_sequence(&refused_with(10071)));
        assert!(is_wrong_sequence(&refused_with(10164)));
    }

    #[test]
    fn other_refusals_are_not_conflicts() {
        assert!(!is_wrong_sequence(&refused_with(10077)));
        assert!(!is_wrong_sequence(&PublishError::new(
            PublishErrorKind::TimedOut
        )));
    }
}
