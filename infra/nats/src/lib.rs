//! JetStream as shopstream's event store, behind cqrs-es's `EventStore` seam.
//!
//! What it is: one stream (`EVENTS`) holds every domain event, one subject per aggregate
//! instance, one message per command (a commit envelope holding all of that command's
//! events). The server enforces optimistic concurrency per subject
//! (`Nats-Expected-Last-Subject-Sequence`) and de-duplicates retried command ids
//! (`Nats-Msg-Id`); the stream sequence of a commit is the global position of its events.
//!
//! What it is not: a projection mechanism. Read models consume the stream from their own
//! durable consumers; cqrs-es `Query` dispatch is not used for them.

pub mod audit;
mod catalog;
mod command_bus;
mod envelope;
mod error;
mod provision;
mod reader;
mod sku_registry;
mod store;
pub mod subjects;
pub mod trace_context;

pub use catalog::{ProductCommandError, ProductCommands, SkuTaken};
pub use command_bus::{CommandBus, CommandError, CommitOutcome, ConflictPolicy};
pub use envelope::{CommitEnvelope, RecordedCommit, StoredEvent};
pub use error::{BoxError, ErrorChain, StoreError};
pub use provision::{
    check_server, connect, provision, ServerCheckError, StreamSettings, MINIMUM_SERVER_VERSION,
};
pub use reader::{
    aggregate_type_at, consumer_backlog, first_position_at_or_after, read_all, read_batch,
    stream_last_position, stream_range, ConsumerBacklog,
};
pub use sku_registry::{SkuRegistry, SkuReservationError};
pub use store::{EventStoreConfig, JetStreamAggregateContext, JetStreamEventStore};
pub use trace_context::RemoteTrace;
