//! The order saga (process manager): reserve stock, take payment, confirm, and on any
//! failure compensate in reverse order. The driver is not built yet: it lands with its
//! own issue, on top of the event store in `infra-nats` and the dead-letter queue of
//! `projections`.
//!
//! What is here already is the seam to the outside world that the saga pays through:
//! the [`provider::PaymentProvider`] trait, and [`provider::SimulatedProvider`], the
//! default provider, which keeps its own ledger in PostgreSQL so that it survives a
//! crash of the saga process and is shared by several saga replicas.

pub mod provider;
