//! Sending what the outbox holds: claim due rows, send, record the outcome.
//!
//! A claim is a lease: one short statement picks due unsent rows with
//! `FOR UPDATE SKIP LOCKED` (so concurrent dispatchers never pick the same row) and
//! pushes their `next_attempt_at` past the lease, so no other dispatcher finds them due
//! while they are being sent. No transaction stays open during a send. When the
//! dispatcher dies mid-batch, its unrecorded rows fall due again when the lease ends.

use std::future::Future;
use std::time::Duration;

use infra_nats::{BoxError, ErrorChain};
use sqlx::PgPool;
use tracing::instrument;

use super::outbox::{Notification, NOTIFICATION_COLUMNS};
use super::sender::NotificationSender;

/// How failed sends are retried and how long a claim lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with every further failure.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// How long a send may take before it counts as failed.
    pub send_timeout: Duration,
    /// How long a claimed row stays hidden from other dispatchers; longer than
    /// `send_timeout` times a batch, so a live dispatcher always records its rows first.
    pub lease: Duration,
}

impl RetryPolicy {
    /// What [`dispatch_pending`] uses: 1 s doubling up to 10 minutes, sends bounded to
    /// 10 s, claims leased for 30 minutes.
    pub const STANDARD: RetryPolicy = RetryPolicy {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(600),
        send_timeout: Duration::from_secs(10),
        lease: Duration::from_secs(1800),
    };

    /// The wait before the next attempt of a notification that has now failed
    /// `failures` times (1 for the first failure).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .checked_mul(1 << doublings)
            .map_or(self.max_backoff, |delay| delay.min(self.max_backoff))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::STANDARD
    }
}

/// What one [`dispatch_pending`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Due notifications this call claimed.
    pub claimed: usize,
    /// Of those, the ones the sender accepted, now marked sent.
    pub sent: usize,
    /// Of those, the ones the sender refused or timed out on, scheduled for a retry.
    pub failed: usize,
}

/// Why dispatching stopped.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// A claimed row does not read back (a bug or a hand edit).
    #[error("corrupt outbox row: {0}")]
    Corrupt(#[source] BoxError),
    /// PostgreSQL failed; rows already claimed become due again when their lease ends.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Claims up to `limit` due unsent notifications, sends each with `sender`, and marks it
/// sent or schedules its retry with [`RetryPolicy::STANDARD`].
///
/// # Errors
/// When PostgreSQL fails or a claimed row is corrupt. Sender failures are not errors:
/// they are recorded on the row and counted in the report.
pub async fn dispatch_pending(
    pool: &PgPool,
    sender: &dyn NotificationSender,
    limit: usize,
) -> Result<DispatchReport, DispatchError> {
    dispatch_with(pool, sender, limit, &RetryPolicy::STANDARD).await
}

// Debug level: the dispatcher polls, and a span per poll would be a trace per poll.
#[instrument(level = "debug", skip_all, fields(limit = limit))]
async fn dispatch_with(
    pool: &PgPool,
    sender: &dyn NotificationSender,
    limit: usize,
    policy: &RetryPolicy,
) -> Result<DispatchReport, DispatchError> {
    let claimed = claim(pool, limit, policy.lease).await?;
    let mut report = DispatchReport {
        claimed: claimed.len(),
        ..DispatchReport::default()
    };
    for (notification, previous_attempts) in claimed {
        let outcome =
            match tokio::time::timeout(policy.send_timeout, sender.send(&notification)).await {
                Ok(outcome) => outcome.map_err(|e| e.reason),
                Err(_) => Err(format!("timed out after {:?}", policy.send_timeout)),
            };
        match outcome {
            Ok(()) => {
                mark_sent(pool, &notification).await?;
                report.sent += 1;
            }
            Err(reason) => {
                let failures = u32::try_from(previous_attempts).unwrap_or(0) + 1;
                let retry_in = policy.backoff(failures);
                tracing::warn!(
                    notification_id = %notification.id,
                    failures,
                    retry_in = ?retry_in,
                    error = %reason,
                    "sending a notification failed"
                );
                schedule_retry(pool, &notification, &reason, retry_in).await?;
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// Leases up to `limit` due unsent rows, oldest first, with the attempts made so far.
async fn claim(
    pool: &PgPool,
    limit: usize,
    lease: Duration,
) -> Result<Vec<(Notification, i32)>, DispatchError> {
    let rows = sqlx::query(&format!(
        "UPDATE outbox.notifications AS claimed
         SET next_attempt_at = now() + make_interval(secs => $2)
         FROM (
             SELECT id FROM outbox.notifications
             WHERE sent_at IS NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at, position, event_index
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         ) AS due
         WHERE claimed.id = due.id
         RETURNING {}, claimed.attempts, claimed.position, claimed.event_index",
        NOTIFICATION_COLUMNS
            .split(", ")
            .map(|column| format!("claimed.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            use sqlx::Row;
            let notification = Notification::from_row(row).map_err(DispatchError::Corrupt)?;
            let attempts: i32 = row.try_get("attempts")?;
            let key: (i64, i32) = (row.try_get("position")?, row.try_get("event_index")?);
            Ok((key, notification, attempts))
        })
        .collect::<Result<Vec<_>, DispatchError>>()?;
    // `RETURNING` has no order; send in stream order.
    claimed.sort_by_key(|(key, _, _)| *key);
    Ok(claimed
        .into_iter()
        .map(|(_, notification, attempts)| (notification, attempts))
        .collect())
}

async fn mark_sent(pool: &PgPool, notification: &Notification) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox.notifications
         SET sent_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE id = $1 AND sent_at IS NULL",
    )
    .bind(notification.id)
    .execute(pool)
    .await?;
    Ok(())
}

async fn schedule_retry(
    pool: &PgPool,
    notification: &Notification,
    reason: &str,
    retry_in: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox.notifications
         SET attempts = attempts + 1,
             last_error = $2,
             next_attempt_at = now() + make_interval(secs => $3)
         WHERE id = $1 AND sent_at IS NULL",
    )
    .bind(notification.id)
    .bind(reason)
    .bind(retry_in.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// How [`run_dispatcher`] paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Notifications claimed per round.
    pub batch_size: usize,
    /// The pause when nothing is due, or after a database failure.
    pub idle: Duration,
    /// Backoff, send timeout and lease.
    pub retry: RetryPolicy,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            idle: Duration::from_secs(1),
            retry: RetryPolicy::STANDARD,
        }
    }
}

/// Dispatches until `shutdown` completes: full batches back to back, then a pause of
/// `config.idle` when the outbox has nothing due. A database failure is logged and
/// retried after the pause. The batch in flight is finished before it returns.
pub async fn run_dispatcher(
    pool: PgPool,
    sender: &dyn NotificationSender,
    config: DispatcherConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let busy = match dispatch_with(&pool, sender, config.batch_size, &config.retry).await {
            Ok(report) => report.claimed == config.batch_size,
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "dispatching notifications failed");
                false
            }
        };
        if busy {
            // A full batch: more may be due, but a requested shutdown comes first.
            if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                return;
            }
            continue;
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(config.idle) => {}
        }
    }
}
