//! The notifier: tells customers that their order was confirmed or cancelled, or that
//! money went back to them.
//!
//! - [`NotifierProjection`] follows the `order` and `payment` commits. It keeps its own
//!   state in schema `notifications` (which customer placed which order, which order each
//!   payment pays), in every delivery mode, and on a live delivery only it enqueues one
//!   [`Notification`] per meaningful event in the transactional outbox
//!   `outbox.notifications`, in the projector's transaction.
//! - The dispatcher ([`dispatch_pending`], [`run_dispatcher`]) claims due notifications,
//!   hands them to a [`NotificationSender`] and records the outcome, retrying failures
//!   with exponential backoff. Several replicas may run it side by side.
//!
//! Delivery to the customer is at least once: a sender that crashes after sending but
//! before the outbox records it sends again later. The notification id (the id of the
//! event behind it) is the idempotency key a sender passes on to the outside system.
//!
//! Which events notify: `OrderConfirmed`, `OrderCancelled` and `PaymentRefunded`. A
//! refund notifies on the payment's event, which carries the refund id and is the money
//! actually going back (once per refund, partial refunds included); the order's
//! `OrderRefunded` only records the same refund on the order and stays silent, so the
//! customer hears of each refund once.

mod dispatcher;
mod outbox;
mod projection;
mod sender;

pub use dispatcher::{
    dispatch_pending, run_dispatcher, DispatchError, DispatchReport, DispatcherConfig, RetryPolicy,
};
pub use outbox::{
    customer_notifications, Notification, NotificationCursor, NotificationKind, NotificationPage,
    QueryError,
};
pub use projection::NotifierProjection;
pub use sender::{LogSender, NotificationSender, SendError};
