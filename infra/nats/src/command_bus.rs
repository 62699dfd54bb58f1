//! `CommandBus`: runs a command on the JetStream store (load, decide, append) and adds
//! what cqrs-es's `CqrsFramework` lacks: idempotent command ids, bounded conflict retries
//! with fresh state, and the position each command committed at, as a return value.

use std::time::Instant;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use domain::CommandMetadata;
use tracing::{debug, instrument};

use crate::error::StoreError;
pub use crate::store::CommitOutcome;
use crate::store::JetStreamEventStore;

/// How often a conflicting command is retried on fresh state.
#[derive(Debug, Clone, Copy)]
pub struct ConflictPolicy {
    /// Retries after the first attempt; 0 reports the first conflict.
    pub max_retries: usize,
}

impl Default for ConflictPolicy {
    fn default() -> Self {
        Self { max_retries: 5 }
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command: a broken domain rule. Nothing was appended.
    #[error("{0}")]
    Rejected(E),
    /// Other commands kept winning the race for this aggregate.
    #[error("aggregate changed concurrently {attempts} times in a row; try again")]
    Conflict { attempts: usize },
    /// NATS was unreachable or timed out; the command may or may not have been stored,
    /// and resending it with the same command id is safe.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// Stored data could not be read back.
    #[error("event store data is unreadable: {0}")]
    Corrupt(#[source] StoreError),
}

impl<E: std::error::Error> From<StoreError> for CommandError<E> {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => CommandError::Conflict { attempts: 1 },
            StoreError::Nats(_) => CommandError::Unavailable(error),
            other => CommandError::Corrupt(other),
        }
    }
}

/// How many locks serialise commands per aggregate within one process.
const AGGREGATE_LOCK_STRIPES: usize = 1024;

/// Runs commands for aggregate `A` on the JetStream store.
///
/// Commands for the same aggregate queue up within a process (one lock per stripe of
/// aggregate ids) instead of racing each other into conflicts and reloads: a hot SKU
/// reserved by hundreds of sagas at once otherwise spends its time on conflict storms.
/// Across processes the server's sequence check still decides.
pub struct CommandBus<A: Aggregate> {
    store: JetStreamEventStore<A>,
    services: A::Services,
    policy: ConflictPolicy,
    aggregate_locks: Box<[tokio::sync::Mutex<()>]>,
}

enum Attempt {
    Committed(CommitOutcome),
    Conflict,
}

impl<A: Aggregate> CommandBus<A> {
    /// A bus over `store`; `services` are the aggregate's cqrs-es services.
    pub fn new(
        store: JetStreamEventStore<A>,
        services: A::Services,
        policy: ConflictPolicy,
    ) -> Self {
        // Present from the start (at 0), so that dashboards and alerts see the series.
        metrics::counter!("shopstream_command_conflicts_total", "aggregate_type" => A::TYPE)
            .increment(0);
        Self {
            store,
            services,
            policy,
            aggregate_locks: (0..AGGREGATE_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// The store under this bus.
    pub fn store(&self) -> &JetStreamEventStore<A> {
        &self.store
    }

    /// The aggregate's current state, read from the log (not the cache), for a use case
    /// that must look before it sends a command. A new aggregate is its default state.
    ///
    /// # Errors
    /// [`StoreError`] when the log cannot be read or decoded.
    pub async fn load(&self, aggregate_id: &str) -> Result<A, StoreError> {
        Ok(self.store.load_fresh(aggregate_id).await?.into_state())
    }

    /// Executes one command, at most once per `metadata.command_id`.
    ///
    /// A command id already committed on this aggregate returns its original outcome
    /// (with `duplicate: true`) and appends nothing. A conflict reloads the aggregate
    /// and decides again, up to the policy's retries.
    ///
    /// # Errors
    /// [`CommandError`]: the domain's rejection, a persistent conflict, or the store's failure.
    #[instrument(name = "command", skip_all, fields(aggregate_type = A::TYPE, aggregate_id = %aggregate_id, command_id = %metadata.command_id, correlation_id = %metadata.correlation_id))]
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<CommitOutcome, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let started = Instant::now();
        let result = self
            .decide_and_append(aggregate_id, command, metadata)
            .await;
        let outcome = match &result {
            Ok(outcome) if outcome.duplicate => "duplicate",
            Ok(_) => "committed",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(CommandError::Unavailable(_)) => "unavailable",
            Err(CommandError::Corrupt(_)) => "corrupt",
        };
        metrics::histogram!("shopstream_command_seconds", "aggregate_type" => A::TYPE, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn decide_and_append(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<CommitOutcome, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let _serialised = self.aggregate_lock(aggregate_id).lock().await;
        let command_id = metadata.command_id.to_string();
        if let Some(record) = self
            .store
            .find_commit(aggregate_id, &command_id, false)
            .await?
        {
            debug!("command already committed");
            return Ok(CommitOutcome::replayed(aggregate_id, record));
        }
        let map = metadata.to_map();
        let attempts = self.policy.max_retries + 1;
        // A decision that appends nothing (a rejection, or a command with no effect) is
        // not checked by the server's sequence check, so one taken on a cached state
        // that another process has moved past would stand unchallenged: take it again on
        // freshly loaded state before reporting it.
        let mut state_is_fresh = false;
        let mut attempt = 0;
        loop {
            let result = self.attempt(aggregate_id, command.clone(), &map).await;
            let stale_if_unchecked = match &result {
                Err(CommandError::Rejected(_)) => true,
                Ok(Attempt::Committed(outcome)) => outcome.events == 0,
                _ => false,
            };
            if stale_if_unchecked && !state_is_fresh {
                debug!("rejected or no effect on a cached state; deciding again on fresh state");
                drop(result);
                // The fresh load also finds this command id if an earlier attempt of it
                // (whose ack was lost) is what changed the aggregate.
                if let Some(record) = self
                    .store
                    .find_commit(aggregate_id, &command_id, true)
                    .await?
                {
                    return Ok(CommitOutcome::replayed(aggregate_id, record));
                }
                state_is_fresh = true;
                continue;
            }
            match result {
                Ok(Attempt::Committed(outcome)) => return Ok(outcome),
                Err(error) => return Err(error),
                Ok(Attempt::Conflict) => {
                    metrics::counter!("shopstream_command_conflicts_total", "aggregate_type" => A::TYPE)
                        .increment(1);
                    attempt += 1;
                    if attempt >= attempts {
                        return Err(CommandError::Conflict { attempts });
                    }
                    debug!(attempt, "conflict, deciding again on fresh state");
                    // A lost ack followed by a retry lands here: the server compares the
                    // (now stale) expected sequence before the Msg-Id, so look for the
                    // command id in the aggregate's log before deciding again.
                    if let Some(record) = self
                        .store
                        .find_commit(aggregate_id, &command_id, true)
                        .await?
                    {
                        return Ok(CommitOutcome::replayed(aggregate_id, record));
                    }
                    // That lookup reloaded the aggregate and refreshed the cache.
                    state_is_fresh = true;
                }
            }
        }
    }
}

impl<A: Aggregate> CommandBus<A> {
    fn aggregate_lock(&self, aggregate_id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        aggregate_id.hash(&mut hasher);
        // The modulo keeps the index below the stripe count, which fits in usize.
        let stripe = (hasher.finish() % AGGREGATE_LOCK_STRIPES as u64) as usize;
        &self.aggregate_locks[stripe]
    }
}

impl<A: Aggregate> CommandBus<A> {
    /// One load, decide and append, on the cached state if there is one.
    async fn attempt(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &std::collections::HashMap<String, String>,
    ) -> Result<Attempt, CommandError<A::Error>> {
        let mut context = self.store.load_context(aggregate_id).await?;
        let sink = EventSink::default();
        // `handle` applies each event it emits to the state, which `append` then caches.
        if let Err(rejection) = context
            .state_mut()
            .handle(command, &self.services, &sink)
            .await
        {
            return Err(CommandError::Rejected(rejection));
        }
        let events = sink.collect().await;
        match self.store.append(events, context, metadata.clone()).await {
            Ok((_, outcome)) => Ok(Attempt::Committed(outcome)),
            Err(StoreError::Conflict { .. }) => Ok(Attempt::Conflict),
            Err(error) => Err(error.into()),
        }
    }
}
