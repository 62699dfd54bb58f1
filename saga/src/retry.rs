//! How a step is tried again: forward steps until their phase's deadline, compensations a
//! bounded number of times; both with exponential backoff, never a hot loop.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

/// Why one attempt of a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Trying again cannot help (stock short, card declined, order cancelled).
    Permanent(String),
    /// Trying again with the same idempotency key may help (NATS or the provider down).
    Transient(String),
}

/// Why a step gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp {
    /// A permanent failure.
    Permanent(String),
    /// The phase's deadline passed; the last transient error, if any.
    TimedOut(Option<String>),
    /// Every allowed attempt failed transiently.
    Exhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

impl GaveUp {
    /// A sentence for the saga's log; `step` says what was being done.
    pub fn describe(&self, step: impl Display) -> String {
        match self {
            GaveUp::Permanent(reason) => reason.clone(),
            GaveUp::TimedOut(None) => format!("{step}: no outcome before the deadline"),
            GaveUp::TimedOut(Some(error)) => {
                format!("{step}: no outcome before the deadline (last error: {error})")
            }
            GaveUp::Exhausted { attempts, error } => {
                format!("{step}: failed {attempts} times (last error: {error})")
            }
        }
    }
}

/// Exponential backoff with a cap.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first pause.
    pub initial: Duration,
    /// The longest pause.
    pub max: Duration,
    /// Attempts for a compensation step before the saga is parked.
    pub compensation_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            compensation_attempts: 8,
        }
    }
}

impl Backoff {
    /// The pause after the `attempt`-th failure (1-based).
    pub fn pause(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Tries `call` until it succeeds, fails for good, or `deadline` passes; each attempt
    /// is cut off at the deadline. `step` names the step in log lines.
    pub async fn until<T, F, Fut>(
        &self,
        step: impl Display,
        deadline: DateTime<Utc>,
        mut call: F,
    ) -> Result<T, GaveUp>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut last_error = None;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let Some(remaining) = remaining(deadline) else {
                return Err(GaveUp::TimedOut(last_error));
            };
            match tokio::time::timeout(remaining, call()).await {
                Err(_) => return Err(GaveUp::TimedOut(last_error)),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Failure::Permanent(reason))) => return Err(GaveUp::Permanent(reason)),
                Ok(Err(Failure::Transient(error))) => {
                    warn!(%step, attempt, %error, "transient failure, trying again");
                    let pause = self.pause(attempt);
                    last_error = Some(error);
                    match remaining_after(deadline, pause) {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => return Err(GaveUp::TimedOut(last_error)),
                    }
                }
            }
        }
    }

    /// Tries `call` up to `compensation_attempts` times. `step` names the step in log lines.
    pub async fn bounded<T, F, Fut>(&self, step: impl Display, mut call: F) -> Result<T, GaveUp>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = self.compensation_attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            match call().await {
                Ok(value) => return Ok(value),
                Err(Failure::Permanent(reason)) => return Err(GaveUp::Permanent(reason)),
                Err(Failure::Transient(error)) => {
                    warn!(%step, attempt, %error, "compensation failed, trying again");
                    last_error = error;
                    if attempt < attempts {
                        tokio::time::sleep(self.pause(attempt)).await;
                    }
                }
            }
        }
        Err(GaveUp::Exhausted {
            attempts,
            error: last_error,
        })
    }
}

/// Time left until `deadline`, if any.
pub fn remaining(deadline: DateTime<Utc>) -> Option<Duration> {
    (deadline - Utc::now())
        .to_std()
        .ok()
        .filter(|left| !left.is_zero())
}

/// `pause`, if the deadline leaves room for it and one more attempt.
fn remaining_after(deadline: DateTime<Utc>, pause: Duration) -> Option<Duration> {
    remaining(deadline)
        .filter(|left| *left > pause)
        .map(|_| pause)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> Backoff {
        Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
            compensation_attempts: 3,
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let backoff = Backoff::default();
        assert_eq!(backoff.pause(1), Duration::from_millis(50));
        assert_eq!(backoff.pause(2), Duration::from_millis(100));
        assert_eq!(backoff.pause(6), Duration::from_millis(1600));
        assert_eq!(backoff.pause(7), Duration::from_secs(2));
        assert_eq!(backoff.pause(60), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn bounded_gives_up_after_the_allowed_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .bounded("refund", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Transient("down".to_owned()))
            })
            .await;
        assert_eq!(
            result,
            Err(GaveUp::Exhausted {
                attempts: 3,
                error: "down".to_owned()
            })
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn until_retries_transient_failures_and_stops_at_permanent_ones() {
        let calls = AtomicU32::new(0);
        let deadline = Utc::now() + chrono::Duration::seconds(5);
        let result = fast()
            .until("reserve", deadline, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(Failure::Transient("busy".to_owned())),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        let result: Result<(), _> = fast()
            .until("reserve", deadline, || async {
                Err(Failure::Permanent("short".to_owned()))
            })
            .await;
        assert_eq!(result, Err(GaveUp::Permanent("short".to_owned())));
    }

    #[tokio::test]
    async fn until_cuts_a_hanging_call_at_the_deadline() {
        let deadline = Utc::now() + chrono::Duration::milliseconds(50);
        let result: Result<(), _> = fast()
            .until("authorise", deadline, || async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            })
            .await;
        assert_eq!(result, Err(GaveUp::TimedOut(None)));
        let past = Utc::now() - chrono::Duration::seconds(1);
        let result: Result<(), _> = fast().until("authorise", past, || async { Ok(()) }).await;
        assert_eq!(result, Err(GaveUp::TimedOut(None)));
    }
}
