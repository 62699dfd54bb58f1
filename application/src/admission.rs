//! Admission control for checkout: when the order saga has fallen behind, `orderPlace`
//! is refused at once (`OVERLOADED`, with a retry hint) instead of accepted into a
//! queue whose orders would outlive their saga's step deadlines and be cancelled.
//!
//! Measured (`benches/capacity.rs`): without it, offering 60 orders/s to a 2-core
//! machine that confirms about 38/s accepted every order, and more than half were then
//! cancelled by step timeouts while confirmations fell to 14/s: the compensations
//! competed with the work (a metastable overload). Refusing new orders while the backlog
//! is old keeps the orders that are accepted within their deadlines.
//!
//! The signal is the saga consumer's backlog age: how long ago the oldest order commit
//! the saga has not finished was committed (`shopstream_consumer_lag_seconds{consumer=
//! "saga"}`). A background task samples it every [`SAMPLE_EVERY`]; checking costs a
//! read of a watch channel. It errs towards admitting: when the sample cannot be taken
//! (NATS away), orders go on to the command side, which answers for itself.

use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use cqrs_es::Aggregate;
use domain::order::Order;
use tokio::sync::watch;

use crate::error::AppError;

/// How often the backlog is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Whether checkouts are admitted; cheap to clone.
#[derive(Clone)]
pub struct CheckoutAdmission {
    max_lag: Option<Duration>,
    lag: watch::Receiver<Duration>,
}

impl CheckoutAdmission {
    /// Samples the saga's backlog in the background (for as long as the runtime runs)
    /// and refuses checkouts while it is older than `max_lag`; `Duration::ZERO` admits
    /// every checkout and samples nothing.
    pub fn start(jetstream: jetstream::Context, max_lag: Duration) -> Self {
        let (publish, lag) = watch::channel(Duration::ZERO);
        if max_lag.is_zero() {
            return Self { max_lag: None, lag };
        }
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let sampled =
                    infra_nats::consumer_backlog(&jetstream, saga::trigger::CONSUMER, Order::TYPE)
                        .await;
                let lag = match sampled {
                    Ok(backlog) => backlog
                        .oldest
                        .and_then(|oldest| (Utc::now() - oldest).to_std().ok())
                        .unwrap_or(Duration::ZERO),
                    Err(error) => {
                        tracing::debug!(error = %infra_nats::ErrorChain(&error), "sampling the saga backlog failed; admitting");
                        Duration::ZERO
                    }
                };
                if publish.send(lag).is_err() {
                    return;
                }
            }
        });
        Self {
            max_lag: Some(max_lag),
            lag,
        }
    }

    /// Admits a checkout, or refuses it with [`AppError::Overloaded`].
    ///
    /// # Errors
    /// [`AppError::Overloaded`] while the saga's oldest unfinished order commit is older
    /// than the bound.
    pub fn admit(&self) -> Result<(), AppError> {
        let Some(max_lag) = self.max_lag else {
            return Ok(());
        };
        let lag = *self.lag.borrow();
        if lag > max_lag {
            metrics::counter!("shopstream_checkouts_refused_total", "reason" => "saga_backlog")
                .increment(1);
            return Err(AppError::Overloaded {
                retry_after: SAMPLE_EVERY.max(lag - max_lag),
            });
        }
        Ok(())
    }
}
