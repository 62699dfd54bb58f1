//! The order saga (process manager): reserve stock, take payment, confirm, and on any
//! failure compensate in reverse order. Not built yet: it lands with its own issue, on
//! top of the event store in `infra-nats` and the dead-letter queue of `projections`.
