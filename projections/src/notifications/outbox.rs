//! What the outbox holds, and reading a customer's notifications back.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use domain::{CustomerId, OrderId};
use infra_nats::BoxError;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// What a notification tells the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The order was confirmed (`OrderConfirmed`).
    OrderConfirmed,
    /// The order was cancelled (`OrderCancelled`).
    OrderCancelled,
    /// Money went back to the customer (`PaymentRefunded`).
    RefundIssued,
}

impl NotificationKind {
    /// The snake_case name stored in `outbox.notifications.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::OrderConfirmed => "order_confirmed",
            NotificationKind::OrderCancelled => "order_cancelled",
            NotificationKind::RefundIssued => "refund_issued",
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NotificationKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "order_confirmed" => Ok(NotificationKind::OrderConfirmed),
            "order_cancelled" => Ok(NotificationKind::OrderCancelled),
            "refund_issued" => Ok(NotificationKind::RefundIssued),
            other => Err(format!("unknown notification kind `{other}`")),
        }
    }
}

/// One notification to one customer, as enqueued in `outbox.notifications`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Notification {
    /// The id of the event behind it: unique, and the idempotency key a sender passes on.
    pub id: Uuid,
    /// What it tells.
    pub kind: NotificationKind,
    /// Who is told.
    pub customer_id: CustomerId,
    /// The order it is about.
    pub order_id: OrderId,
    /// The facts a message template needs; its fields depend on `kind`.
    pub payload: serde_json::Value,
    /// When the event happened (its commit's timestamp).
    pub occurred_at: DateTime<Utc>,
}

/// The columns [`Notification::from_row`] reads, for `SELECT` and `RETURNING` lists.
pub(super) const NOTIFICATION_COLUMNS: &str =
    "id, kind, customer_id, order_id, payload, occurred_at";

impl Notification {
    /// Reads the [`NOTIFICATION_COLUMNS`] of an outbox row.
    pub(super) fn from_row(row: &PgRow) -> Result<Self, BoxError> {
        let kind: String = row.try_get("kind")?;
        Ok(Self {
            id: row.try_get("id")?,
            kind: kind.parse::<NotificationKind>()?,
            customer_id: CustomerId::from_uuid(row.try_get("customer_id")?),
            order_id: OrderId::from_uuid(row.try_get("order_id")?),
            payload: row.try_get("payload")?,
            occurred_at: row.try_get("occurred_at")?,
        })
    }
}

/// Where a page of [`customer_notifications`] ends: the sort key of its last item
/// (stream position, event index) and the item's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationCursor {
    position: i64,
    event_index: i32,
    id: Uuid,
}

impl NotificationCursor {
    /// The opaque text handed to clients as `after`.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}.{}",
            self.position,
            self.event_index,
            self.id.simple()
        )
    }

    /// Reads a cursor made by [`NotificationCursor::encode`].
    ///
    /// # Errors
    /// [`QueryError::InvalidCursor`] for any other text.
    pub fn decode(cursor: &str) -> Result<Self, QueryError> {
        let invalid = || QueryError::InvalidCursor(cursor.to_owned());
        let mut parts = cursor.split('.');
        let (Some(position), Some(event_index), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        Ok(Self {
            position: position.parse().map_err(|_| invalid())?,
            event_index: event_index.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// One page of a customer's notifications, newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NotificationPage {
    /// At most `first` notifications.
    pub items: Vec<Notification>,
    /// The cursor of the last item, to pass as `after` for the next page.
    pub end_cursor: Option<String>,
    /// Whether more notifications follow the last item.
    pub has_next_page: bool,
}

/// Why reading notifications failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The `after` cursor was not made by this API.
    #[error("invalid cursor `{0}`")]
    InvalidCursor(String),
    /// A stored row does not read back (a bug or a hand edit).
    #[error("corrupt outbox row: {0}")]
    Corrupt(#[source] BoxError),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The notifications enqueued for `customer_id`, newest first, `first` at a time after
/// the cursor `after` (keyset pagination on stream position and event index).
///
/// # Errors
/// [`QueryError::InvalidCursor`] for a cursor not made here, or a database failure.
pub async fn customer_notifications(
    pool: &PgPool,
    customer_id: CustomerId,
    first: u32,
    after: Option<&str>,
) -> Result<NotificationPage, QueryError> {
    let after = after.map(NotificationCursor::decode).transpose()?;
    let rows = sqlx::query(&format!(
        "SELECT {NOTIFICATION_COLUMNS}, position, event_index
         FROM outbox.notifications
         WHERE customer_id = $1
           AND ($2::bigint IS NULL OR (position, event_index) < ($2, $3))
         ORDER BY position DESC, event_index DESC
         LIMIT $4"
    ))
    .bind(customer_id.as_uuid())
    .bind(after.map(|cursor| cursor.position))
    .bind(after.map(|cursor| cursor.event_index))
    .bind(i64::from(first) + 1)
    .fetch_all(pool)
    .await?;
    let has_next_page = rows.len() > first as usize;
    let mut items = Vec::with_capacity(rows.len().min(first as usize));
    let mut end_cursor = None;
    for row in rows.iter().take(first as usize) {
        let notification = Notification::from_row(row).map_err(QueryError::Corrupt)?;
        end_cursor = Some(NotificationCursor {
            position: row.try_get("position")?,
            event_index: row.try_get("event_index")?,
            id: notification.id,
        });
        items.push(notification);
    }
    Ok(NotificationPage {
        items,
        end_cursor: end_cursor.map(|cursor| cursor.encode()),
        has_next_page,
    })
}
