//! The boundary to whatever actually reaches the customer (email, SMS, push).

use async_trait::async_trait;

use super::outbox::Notification;

/// Why a notification was not handed over; the dispatcher retries it later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    /// What the outside system said, recorded in `outbox.notifications.last_error`.
    pub reason: String,
}

impl SendError {
    /// A failure with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Hands one notification to the outside world.
///
/// Delivery is at least once: after a crash or a timeout the same notification may be
/// sent again, so an implementation passes `notification.id` on as the idempotency key
/// of the outside system (or deduplicates on it itself).
#[async_trait]
pub trait NotificationSender: Send + Sync {
    /// Sends `notification`.
    ///
    /// # Errors
    /// [`SendError`] when the outside system refused or could not be reached.
    async fn send(&self, notification: &Notification) -> Result<(), SendError>;
}

/// The default sender until a real channel is wired in: one `info` line per
/// notification, which never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSender;

#[async_trait]
impl NotificationSender for LogSender {
    async fn send(&self, notification: &Notification) -> Result<(), SendError> {
        tracing::info!(
            notification_id = %notification.id,
            kind = %notification.kind,
            customer_id = %notification.customer_id,
            order_id = %notification.order_id,
            payload = %notification.payload,
            "notification sent"
        );
        Ok(())
    }
}
