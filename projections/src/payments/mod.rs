//! The payments read model: every payment with its running totals, and every operation
//! the provider reported for it.
//!
//! [`PaymentsProjection`] consumes the `payment` aggregate and keeps, in the `payments`
//! schema:
//! - `payments`: one row per payment with its order, status, amount (authorised, or
//!   asked for when declined), captured and refunded totals, method, provider reference
//!   and decline reason, and the aggregate version last applied;
//! - `operations`: one row per payment event (authorisation, decline, capture, void,
//!   refund) with its amount, time, reason, provider reference and refund id, keyed by
//!   payment id and aggregate version.
//!
//! Times are those of the commits, since payment events carry none.
//! The query functions ([`payment`], [`payments_for_order`], [`order_payment_totals`])
//! read the live schema for the API.

mod projection;
mod query;

use std::fmt;
use std::str::FromStr;

pub use projection::PaymentsProjection;
pub use query::{
    order_payment_totals, payment, payments_for_order, payments_for_orders, OrderPaymentTotals,
    PaymentOperation, PaymentView,
};

use crate::orders::UnknownState;

/// Where a payment stands, refunds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The provider authorised the amount; nothing taken yet.
    Authorised,
    /// The provider refused.
    Declined,
    /// The money was taken; nothing refunded.
    Captured,
    /// Part of the captured money went back.
    PartiallyRefunded,
    /// All of the captured money went back.
    Refunded,
    /// The authorisation was cancelled without taking money.
    Voided,
}

impl PaymentStatus {
    const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Authorised,
        PaymentStatus::Declined,
        PaymentStatus::Captured,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::Voided,
    ];

    /// The status as stored and shown: a snake_case word.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Authorised => "authorised",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Captured => "captured",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Voided => "voided",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// What the provider did with a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// The provider authorised an amount.
    Authorisation,
    /// The provider refused to authorise an amount.
    Decline,
    /// The money was taken.
    Capture,
    /// The authorisation was cancelled.
    Void,
    /// Captured money went back.
    Refund,
}

impl OperationKind {
    const ALL: [OperationKind; 5] = [
        OperationKind::Authorisation,
        OperationKind::Decline,
        OperationKind::Capture,
        OperationKind::Void,
        OperationKind::Refund,
    ];

    /// The kind as stored and shown: a lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Authorisation => "authorisation",
            OperationKind::Decline => "decline",
            OperationKind::Capture => "capture",
            OperationKind::Void => "void",
            OperationKind::Refund => "refund",
        }
    }
}

impl FromStr for OperationKind {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}
