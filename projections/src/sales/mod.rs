//! The sales analytics read model: revenue and units per day and per SKU, top sellers,
//! order counts by status and the cancellation rate.
//!
//! [`SalesProjection`] consumes the `order` aggregate only. Refunds are taken from
//! `OrderRefunded`, which names its order and amount; the payment's `PaymentRefunded`
//! names only the payment, and counting both would count each refund twice. It does not
//! read the `orders` schema: it keeps what it needs (status, days, lines) in its own
//! `orders` and `order_lines` tables.
//!
//! When each figure counts, all days being UTC days:
//! - an order counts as *placed* on the day of its `placed_at`, and in the status counts
//!   from then on;
//! - its units and revenue (the line totals) count as *sold* on the day it is
//!   *confirmed*, per day in `daily` and per SKU in `daily_skus`;
//! - a refund subtracts its amount from the net revenue of the day it is recorded
//!   (`refunded_minor`; `net_revenue_minor = gross_revenue_minor - refunded_minor`).
//!   Refunds are whole-order amounts, so per-SKU revenue stays gross, and units are not
//!   taken back;
//! - a cancellation counts on the day it is recorded; by itself it changes no revenue
//!   (an order cancelled after confirmation keeps its sale until a refund returns the
//!   money);
//! - the status counts move on every transition: one less in the old status, one more in
//!   the new;
//! - the cancellation rate of a period is the share of the orders *placed* in it that
//!   were cancelled (at any time since), so it stays between 0 and 1.
//!
//! Every figure is per currency; amounts of different currencies are never added.

mod projection;
mod query;

pub use projection::SalesProjection;
pub use query::{
    cancellation_rate, daily_sales, status_counts, top_sellers, CancellationRate, DailySales,
    StatusCount, TopSeller,
};
