//! The contract between the projector runtime and a read model.
//!
//! A [`Projection`] turns commits of the `EVENTS` stream into rows of its own PostgreSQL
//! schema. The runtime owns everything around it: the durable consumer, the transaction,
//! the position written in that transaction, batching, retries, the dead-letter queue
//! and rebuilds. A projection only says what a batch of commits changes.

use async_trait::async_trait;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::{Aggregate, EventEnvelope};
use infra_nats::{BoxError, RecordedCommit};
use sqlx::PgConnection;

/// Why a commit is being delivered.
///
/// Read models apply every mode the same way; a consumer with effects outside its own
/// tables (the notifier, the saga) acts only on [`DeliveryMode::Live`], so a rebuild or an
/// audit replay never repeats an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// The projector is following the log as it is written.
    Live,
    /// A new version of the read model is being built beside the live one.
    Rebuild,
    /// An operator re-delivers a range of the log (audit or repair).
    Replay,
}

impl DeliveryMode {
    /// Whether effects outside the read model's own tables may run.
    pub fn allows_side_effects(self) -> bool {
        matches!(self, DeliveryMode::Live)
    }

    /// The name used in logs, metrics and the dead-letter queue.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Live => "live",
            DeliveryMode::Rebuild => "rebuild",
            DeliveryMode::Replay => "replay",
        }
    }
}

/// Why a projection could not apply a commit.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The commit or one of its events does not decode (unknown type, wrong schema,
    /// missing field). Never fixed by retrying: the commit is parked.
    #[error("undecodable event: {0}")]
    Decode(#[source] BoxError),
    /// The events decode but contradict the read model (an order line for an order the
    /// model never saw, say). Parked.
    #[error("inconsistent with the read model: {0}")]
    Inconsistent(String),
    /// PostgreSQL failed. The runtime retries connection-level failures with backoff and
    /// parks the commit when the database rejects the statement itself.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// One commit handed to a projection, with the reason it is delivered.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub commit: &'a RecordedCommit,
    pub mode: DeliveryMode,
}

impl Delivery<'_> {
    /// The stream sequence of the commit: its global position.
    pub fn position(&self) -> u64 {
        self.commit.position
    }

    /// The aggregate type of the commit (`product`, `inventory`, `order`, `payment`...).
    pub fn aggregate_type(&self) -> &str {
        &self.commit.envelope.aggregate_type
    }

    /// Upcasts and decodes the commit's events as events of `A`.
    ///
    /// # Errors
    /// [`ApplyError::Decode`] when an event does not fit `A::Event` after upcasting.
    pub fn events<A: Aggregate>(
        &self,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> Result<Vec<EventEnvelope<A>>, ApplyError> {
        self.commit
            .into_event_envelopes::<A>(upcasters)
            .map_err(|e| ApplyError::Decode(Box::new(e)))
    }
}

/// A read model (or another consumer) fed from the `EVENTS` stream.
///
/// Rules every implementation keeps, so that the runtime can guarantee exactly-once
/// effect and rebuild the model beside the live one:
/// - `apply` writes only to tables of its own schema, named **unqualified**: the runtime
///   sets `search_path` to the live schema, or to the schema being rebuilt.
/// - `apply` reads nothing outside its own schema and nothing but the commits it is
///   given, so that the model is a pure function of the log.
/// - Tables use natural keys (aggregate id, stream position and event index), never
///   `serial` columns, so a rebuilt table equals the live one row for row.
/// - `apply` does not commit, roll back or open transactions; it may be called with a
///   batch of many commits and should apply it with few statements (`UNNEST` arrays),
///   since catching up after downtime is bound by round trips.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projector's name: its consumer, position row and dead-letter owner.
    fn name(&self) -> &'static str;

    /// The PostgreSQL schema holding the live tables (created by a migration).
    fn schema(&self) -> &'static str;

    /// Bumped whenever a code change alters what the projection writes; a projector
    /// whose stored version differs can rebuild itself at start-up.
    fn version(&self) -> i32;

    /// The aggregate types whose commits it consumes (subjects `events.<type>.>`).
    fn aggregate_types(&self) -> &'static [&'static str];

    /// Applies `batch`, in stream order, on `conn` inside the runtime's transaction.
    ///
    /// # Errors
    /// See [`ApplyError`]; on any error the runtime rolls the batch back and retries or
    /// isolates the failing commit.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError>;
}
