//! The shopstream domain: four cqrs-es aggregates (product, inventory, order, payment)
//! and the order saga's own state (`saga`),
//! their commands, past-tense events, typed errors and event upcasters.
//!
//! This crate is pure and synchronous: it performs no I/O and knows nothing of NATS,
//! PostgreSQL or HTTP. Facts from outside an aggregate (prices, stock, the clock) travel
//! inside commands, so every decision is a deterministic function of state and command.

#![warn(missing_docs)]

mod error_code;
pub mod ids;
pub mod inventory;
pub mod metadata;
pub mod money;
pub mod order;
pub mod payment;
pub mod product;
pub mod saga;
mod text;

pub use error_code::ErrorCode;
pub use ids::{CustomerId, OrderId, PaymentId, ProductId, RefundId, Sku, SkuError};
pub use metadata::{Actor, CommandMetadata};
pub use money::{Currency, Money, MoneyError};
