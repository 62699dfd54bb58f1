//! The order saga (process manager): drives every placed order to a terminal state.
//!
//! Reserve stock for every line, authorise the payment, then capture, commit the stock
//! and confirm the order; on any failure compensate in reverse order (refund or void,
//! return or release the stock, cancel the order). The saga's own state is an
//! event-sourced aggregate ([`domain::saga::OrderSaga`]); this crate holds the I/O around
//! it: the driver that performs steps with idempotency keys ([`driver`]), the durable
//! trigger consumer shared by replicas ([`trigger`]), the payment provider seam with a
//! simulated provider ([`provider`]), parking in the dead-letter queue ([`parking`]) and
//! the operators' functions ([`admin`]).

pub mod admin;
pub mod buses;
pub mod driver;
pub mod keys;
pub mod parking;
pub mod provider;
pub mod replay;
pub mod retry;
pub mod trigger;

pub use buses::SagaBuses;
pub use driver::{DriveError, DriveOutcome, SagaConfig, SagaDriver};
pub use trigger::{run, TriggerConfig};
