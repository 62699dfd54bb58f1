//! The GraphQL API end to end: the real server on a free port, with the projectors and
//! the saga running beside it, against real NATS and PostgreSQL.

mod admission;
mod audit;
mod bad_input;
mod health;
mod idempotency;
mod metrics;
mod operations;
mod protection;
mod read_your_writes;
mod replay;
mod roles;
mod shopping;
mod subscriptions;
mod support;
mod tokens;
mod unavailable;
