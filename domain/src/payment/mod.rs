//! The payment aggregate: one authorisation with the payment provider, and what became
//! of it.
//!
//! The provider answers first: a payment is either authorised or declined.
//! An authorised payment is then captured once (up to the authorised amount) or voided;
//! captured money can be refunded in parts, never more in total than was captured.
//! Each refund carries a [`RefundId`], so a retried refund is recognised and ignored.
//!
//! The provider calls themselves happen outside the domain; these commands record their
//! outcome and refuse outcomes that break the rules.

mod command;
mod error;
mod event;

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use command::{PaymentCommand, PaymentMethod};
pub use error::PaymentError;
pub use event::PaymentEvent;

use crate::ids::{OrderId, PaymentId, RefundId};
use crate::money::{Currency, Money};
use crate::text::required;

/// Where a payment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// The provider authorised the amount; nothing taken yet.
    Authorised,
    /// The provider refused.
    Declined,
    /// The money was taken (and may since have been refunded, in part or in full).
    Captured,
    /// The authorisation was cancelled without taking money.
    Voided,
}

/// The state of a payment, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    recorded: Option<Recorded>,
}

/// The state of a payment the provider answered for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recorded {
    id: PaymentId,
    order_id: OrderId,
    /// Authorised, or asked for when declined.
    amount: Money,
    status: PaymentStatus,
    provider_reference: Option<String>,
    captured: Option<Money>,
    refunded: Money,
    refund_ids: BTreeSet<RefundId>,
}

impl Payment {
    /// The payment id, once recorded.
    pub fn id(&self) -> Option<PaymentId> {
        self.recorded.as_ref().map(|p| p.id)
    }

    /// The order being paid, once recorded.
    pub fn order_id(&self) -> Option<OrderId> {
        self.recorded.as_ref().map(|p| p.order_id)
    }

    /// The current status; `None` until the provider answered.
    pub fn status(&self) -> Option<PaymentStatus> {
        self.recorded.as_ref().map(|p| p.status)
    }

    /// The authorised amount (or the amount asked for, when declined).
    pub fn amount(&self) -> Option<Money> {
        self.recorded.as_ref().map(|p| p.amount)
    }

    /// The provider's id for the authorisation.
    pub fn provider_reference(&self) -> Option<&str> {
        self.recorded
            .as_ref()
            .and_then(|p| p.provider_reference.as_deref())
    }

    /// The captured amount, once captured.
    pub fn captured(&self) -> Option<Money> {
        self.recorded.as_ref().and_then(|p| p.captured)
    }

    /// The sum of all refunds, once recorded.
    pub fn refunded(&self) -> Option<Money> {
        self.recorded.as_ref().map(|p| p.refunded)
    }

    /// What can still be refunded: captured minus refunded; `None` until captured.
    pub fn refundable(&self) -> Option<Money> {
        self.recorded.as_ref().and_then(Recorded::refundable)
    }

    /// Decides which events a command causes, without changing the state.
    ///
    /// # Errors
    /// The [`PaymentError`] naming the broken rule; a rejected command has no events.
    pub fn decide(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        let Some(payment) = &self.recorded else {
            return decide_first(command);
        };
        let payment_id = payment.id;
        match command {
            PaymentCommand::AuthorisePayment { .. } | PaymentCommand::DeclinePayment { .. } => {
                match payment.status {
                    PaymentStatus::Declined => Err(PaymentError::AlreadyDeclined),
                    _ => Err(PaymentError::AlreadyAuthorised),
                }
            }
            PaymentCommand::CapturePayment { amount } => {
                payment.check_amount(amount)?;
                match payment.status {
                    PaymentStatus::Authorised => {}
                    PaymentStatus::Declined => return Err(PaymentError::AlreadyDeclined),
                    PaymentStatus::Captured => return Err(PaymentError::AlreadyCaptured),
                    PaymentStatus::Voided => return Err(PaymentError::AlreadyVoided),
                }
                if amount.amount_minor > payment.amount.amount_minor {
                    return Err(PaymentError::CaptureExceedsAuthorised {
                        requested: amount,
                        authorised: payment.amount,
                    });
                }
                Ok(vec![PaymentEvent::PaymentCaptured { payment_id, amount }])
            }
            PaymentCommand::VoidPayment => match payment.status {
                PaymentStatus::Authorised => Ok(vec![PaymentEvent::PaymentVoided { payment_id }]),
                PaymentStatus::Declined => Err(PaymentError::AlreadyDeclined),
                PaymentStatus::Captured => Err(PaymentError::AlreadyCaptured),
                PaymentStatus::Voided => Err(PaymentError::AlreadyVoided),
            },
            PaymentCommand::RefundPayment {
                refund_id,
                amount,
                reason,
            } => {
                let reason = required(&reason, PaymentError::EmptyReason)?;
                payment.check_amount(amount)?;
                match payment.status {
                    PaymentStatus::Captured => {}
                    PaymentStatus::Authorised => return Err(PaymentError::NotCaptured),
                    PaymentStatus::Declined => return Err(PaymentError::AlreadyDeclined),
                    PaymentStatus::Voided => return Err(PaymentError::AlreadyVoided),
                }
                // A retried refund was already paid out; paying it again would be a loss.
                if payment.refund_ids.contains(&refund_id) {
                    return Ok(vec![]);
                }
                let refundable = payment.refundable().ok_or(PaymentError::NotCaptured)?;
                if amount.amount_minor > refundable.amount_minor {
                    return Err(PaymentError::RefundExceedsCaptured {
                        requested: amount,
                        refundable,
                    });
                }
                Ok(vec![PaymentEvent::PaymentRefunded {
                    payment_id,
                    refund_id,
                    amount,
                    reason,
                }])
            }
        }
    }
}

impl Recorded {
    fn currency(&self) -> Currency {
        self.amount.currency
    }

    fn check_amount(&self, amount: Money) -> Result<(), PaymentError> {
        if amount.currency != self.currency() {
            return Err(PaymentError::CurrencyMismatch {
                expected: self.currency(),
                found: amount.currency,
            });
        }
        if !amount.is_positive() {
            return Err(PaymentError::NonPositiveAmount);
        }
        Ok(())
    }

    fn refundable(&self) -> Option<Money> {
        let captured = self.captured?;
        // Refunds never exceed the capture, so this cannot underflow.
        captured.checked_sub(self.refunded).ok()
    }
}

/// Decides the provider's first answer for a payment that has none yet.
fn decide_first(command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
    match command {
        PaymentCommand::AuthorisePayment {
            payment_id,
            order_id,
            amount,
            method,
            provider_reference,
        } => {
            if !amount.is_positive() {
                return Err(PaymentError::NonPositiveAmount);
            }
            let method = match method {
                PaymentMethod::Card { token } => PaymentMethod::Card {
                    token: required(&token, PaymentError::EmptyCardToken)?,
                },
            };
            let provider_reference =
                required(&provider_reference, PaymentError::EmptyProviderReference)?;
            Ok(vec![PaymentEvent::PaymentAuthorised {
                payment_id,
                order_id,
                amount,
                method,
                provider_reference,
            }])
        }
        PaymentCommand::DeclinePayment {
            payment_id,
            order_id,
            amount,
            reason,
        } => {
            if !amount.is_positive() {
                return Err(PaymentError::NonPositiveAmount);
            }
            let reason = required(&reason, PaymentError::EmptyReason)?;
            Ok(vec![PaymentEvent::PaymentDeclined {
                payment_id,
                order_id,
                amount,
                reason,
            }])
        }
        PaymentCommand::CapturePayment { .. }
        | PaymentCommand::VoidPayment
        | PaymentCommand::RefundPayment { .. } => Err(PaymentError::NotFound),
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PaymentCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PaymentError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: PaymentEvent) {
        let first = |payment_id, order_id, amount: Money, status, provider_reference| Recorded {
            id: payment_id,
            order_id,
            amount,
            status,
            provider_reference,
            captured: None,
            refunded: Money::zero(amount.currency),
            refund_ids: BTreeSet::new(),
        };
        match event {
            PaymentEvent::PaymentAuthorised {
                payment_id,
                order_id,
                amount,
                provider_reference,
                ..
            } => {
                self.recorded = Some(first(
                    payment_id,
                    order_id,
                    amount,
                    PaymentStatus::Authorised,
                    Some(provider_reference),
                ));
            }
            PaymentEvent::PaymentDeclined {
                payment_id,
                order_id,
                amount,
                ..
            } => {
                self.recorded = Some(first(
                    payment_id,
                    order_id,
                    amount,
                    PaymentStatus::Declined,
                    None,
                ));
            }
            // Every other event follows the provider's first answer.
            PaymentEvent::PaymentCaptured { amount, .. } => {
                if let Some(payment) = self.recorded.as_mut() {
                    payment.status = PaymentStatus::Captured;
                    payment.captured = Some(amount);
                }
            }
            PaymentEvent::PaymentVoided { .. } => {
                if let Some(payment) = self.recorded.as_mut() {
                    payment.status = PaymentStatus::Voided;
                }
            }
            PaymentEvent::PaymentRefunded {
                refund_id, amount, ..
            } => {
                if let Some(payment) = self.recorded.as_mut() {
                    payment.refund_ids.insert(refund_id);
                    payment.refunded.amount_minor = payment
                        .refunded
                        .amount_minor
                        .saturating_add(amount.amount_minor);
                }
            }
        }
    }
}

/// Upcasters for stored payment events; no payment event has changed shape yet.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

#[cfg(test)]
mod tests;
