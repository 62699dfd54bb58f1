//! The order saga's own state: every decision the process manager made about one order,
//! event-sourced like any aggregate, so an auditor can replay why an order ended as it did.
//!
//! The saga moves forward through three phases, each with a deadline recorded before its
//! work starts (so the deadline survives a crash):
//! `Reserving -> Authorising -> Completing -> Completed`.
//! Any failure (stock short, payment declined, a deadline passed, the customer cancelled)
//! moves it to `Compensating`, which ends in `Compensated` or, when a compensation keeps
//! failing, in `CompensationFailed`, parked for an operator.
//!
//! The saga records outcomes; it performs nothing. The driver (in the `saga` crate)
//! performs each phase's effects with idempotency keys derived from the saga and the step,
//! then records the outcome here. Outcomes that no longer fit the phase (a reply repeated
//! after a crash, a success after a timeout) are ignored: `decide` returns no events, and
//! the driver logs it. So the state machine stays consistent whatever order replies arrive in.
//!
//! One driver at a time: the saga names its [`Owner`], the trigger message (or operator)
//! responsible for driving it while it is not at rest. A redelivered trigger finds itself
//! named and resumes; another trigger only records what it knows and leaves the driving to
//! the owner. Concurrent appends are serialised by the event store's optimistic concurrency.

mod command;
mod error;
mod event;
#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use command::{OperatorAction, SagaCommand, SagaStart};
pub use error::SagaError;
pub use event::{FailedStep, SagaEvent};

use crate::ids::{CustomerId, OrderId, PaymentId, Sku};
use crate::money::Money;
use crate::order::Canceller;
use crate::text::required;

/// One line the saga reserves stock for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaLine {
    /// The SKU.
    pub sku: Sku,
    /// How many units.
    pub quantity: u32,
}

/// Who drives a saga that is not at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// The driver holding the trigger message at this stream position (an order event);
    /// if it dies, the message is redelivered and the next holder resumes.
    Trigger(u64),
    /// An operator's action, such as `user:<uuid>`.
    Operator(String),
}

/// Where a saga is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Reserving stock for every line.
    Reserving {
        /// When the phase gives up.
        deadline_at: DateTime<Utc>,
    },
    /// Waiting for the payment provider to authorise.
    Authorising {
        /// When the phase gives up.
        deadline_at: DateTime<Utc>,
    },
    /// Capturing, committing the reservations, confirming the order.
    Completing {
        /// When the phase gives up.
        deadline_at: DateTime<Utc>,
    },
    /// The order is confirmed, paid and its stock committed. At rest.
    Completed,
    /// Undoing whatever may have been done, in reverse order.
    Compensating {
        /// Why.
        reason: String,
    },
    /// Everything was undone and the order cancelled. At rest.
    Compensated {
        /// Why the saga compensated.
        reason: String,
    },
    /// A compensation kept failing; parked for an operator. At rest.
    CompensationFailed {
        /// Why the saga was compensating.
        reason: String,
        /// The compensation step that failed.
        step: String,
        /// Its last error.
        error: String,
    },
}

impl Phase {
    /// The phase as a snake_case word, such as `compensation_failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Reserving { .. } => "reserving",
            Phase::Authorising { .. } => "authorising",
            Phase::Completing { .. } => "completing",
            Phase::Completed => "completed",
            Phase::Compensating { .. } => "compensating",
            Phase::Compensated { .. } => "compensated",
            Phase::CompensationFailed { .. } => "compensation_failed",
        }
    }

    /// True when no driver works on the saga: completed, compensated or parked.
    pub fn is_at_rest(&self) -> bool {
        matches!(
            self,
            Phase::Completed | Phase::Compensated { .. } | Phase::CompensationFailed { .. }
        )
    }

    /// The deadline of a forward phase.
    pub fn deadline_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Phase::Reserving { deadline_at }
            | Phase::Authorising { deadline_at }
            | Phase::Completing { deadline_at } => Some(*deadline_at),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A customer's or admin's cancellation the saga learned of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationNote {
    /// Who cancelled.
    pub by: Canceller,
    /// Why.
    pub reason: String,
}

/// The state of one order's saga, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderSaga {
    run: Option<Run>,
}

/// What a started saga knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The order, also the saga's id.
    pub order_id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// What to reserve.
    pub lines: Vec<SagaLine>,
    /// What to charge.
    pub amount: Money,
    /// The provider's card token.
    pub card_token: String,
    /// The payment aggregate this saga records provider outcomes on.
    pub payment_id: PaymentId,
    /// Where the saga is.
    pub phase: Phase,
    /// Who drives it while it is not at rest.
    pub owner: Option<Owner>,
    /// The provider's reference once the payment is authorised.
    pub provider_reference: Option<String>,
    /// A cancellation by the customer or an admin, once noticed.
    pub cancellation: Option<CancellationNote>,
    /// How many times compensation was started (1 unless an operator retried).
    pub compensation_rounds: u32,
}

impl OrderSaga {
    /// The saga's state once started.
    pub fn run(&self) -> Option<&Run> {
        self.run.as_ref()
    }

    /// The current phase; `None` until started.
    pub fn phase(&self) -> Option<&Phase> {
        self.run.as_ref().map(|run| &run.phase)
    }

    /// True when `owner` should drive this saga now: it is the recorded owner and the
    /// saga is not at rest.
    pub fn is_driven_by(&self, owner: &Owner) -> bool {
        self.run
            .as_ref()
            .is_some_and(|run| !run.phase.is_at_rest() && run.owner.as_ref() == Some(owner))
    }

    /// Decides which events a command causes, without changing the state.
    ///
    /// An outcome that no longer fits the phase gives no events: replies may arrive twice
    /// or late, and the saga has already moved on.
    ///
    /// # Errors
    /// The [`SagaError`] naming the broken rule.
    pub fn decide(&self, command: SagaCommand) -> Result<Vec<SagaEvent>, SagaError> {
        let Some(run) = &self.run else {
            return match command {
                SagaCommand::Start(start) => start_saga(start),
                _ => Err(SagaError::NotStarted),
            };
        };
        let events = match command {
            SagaCommand::Start(_) => vec![],
            SagaCommand::RecordStockReserved { deadline_at } => match run.phase {
                Phase::Reserving { .. } => vec![SagaEvent::StockReserved { deadline_at }],
                _ => vec![],
            },
            SagaCommand::RecordPaymentAuthorised {
                provider_reference,
                deadline_at,
            } => match run.phase {
                Phase::Authorising { .. } => {
                    let provider_reference =
                        required(&provider_reference, SagaError::MissingReference)?;
                    vec![SagaEvent::PaymentAuthorised {
                        provider_reference,
                        deadline_at,
                    }]
                }
                _ => vec![],
            },
            SagaCommand::RecordCompleted => match run.phase {
                Phase::Completing { .. } => vec![SagaEvent::SagaCompleted],
                _ => vec![],
            },
            SagaCommand::RecordStepFailed { step, reason } => {
                let reason = required(&reason, SagaError::MissingReason)?;
                match run.phase {
                    Phase::Reserving { .. }
                    | Phase::Authorising { .. }
                    | Phase::Completing { .. } => {
                        vec![SagaEvent::StepFailed { step, reason }]
                    }
                    _ => vec![],
                }
            }
            SagaCommand::NoteCancellation {
                by,
                reason,
                trigger_position,
            } => {
                let reason = required(&reason, SagaError::MissingReason)?;
                if run.cancellation.is_some() {
                    vec![]
                } else {
                    // A completed saga is at rest: the trigger that noticed takes over and
                    // drives the compensation; otherwise the current owner does.
                    let takes_over = matches!(run.phase, Phase::Completed);
                    vec![SagaEvent::CancellationNoticed {
                        by,
                        reason,
                        trigger_position,
                        takes_over,
                    }]
                }
            }
            SagaCommand::RecordCompensated => match run.phase {
                Phase::Compensating { .. } => vec![SagaEvent::SagaCompensated],
                _ => vec![],
            },
            SagaCommand::RecordCompensationFailed {
                step,
                error,
                attempts,
            } => match run.phase {
                Phase::Compensating { .. } => vec![SagaEvent::CompensationFailed {
                    step,
                    error,
                    attempts,
                }],
                _ => vec![],
            },
            SagaCommand::Intervene {
                action,
                actor,
                reason,
            } => {
                let reason = required(&reason, SagaError::MissingReason)?;
                let allowed = match action {
                    // Take over a saga whose driver seems gone.
                    OperatorAction::Resume => !run.phase.is_at_rest(),
                    // Run a failed compensation again.
                    OperatorAction::Retry => {
                        matches!(run.phase, Phase::CompensationFailed { .. })
                    }
                    // Give up on the order: undo whatever was done.
                    OperatorAction::Compensate => matches!(
                        run.phase,
                        Phase::Reserving { .. }
                            | Phase::Authorising { .. }
                            | Phase::Completing { .. }
                            | Phase::Compensating { .. }
                            | Phase::CompensationFailed { .. }
                    ),
                };
                if !allowed {
                    return Err(SagaError::InterventionNotAllowed {
                        action,
                        phase: run.phase.as_str(),
                    });
                }
                vec![SagaEvent::OperatorIntervened {
                    action,
                    actor,
                    reason,
                }]
            }
        };
        Ok(events)
    }
}

fn start_saga(start: SagaStart) -> Result<Vec<SagaEvent>, SagaError> {
    if start.lines.is_empty() {
        return Err(SagaError::NoLines);
    }
    if !start.amount.is_positive() {
        return Err(SagaError::NonPositiveAmount);
    }
    let card_token = required(&start.card_token, SagaError::MissingCardToken)?;
    Ok(vec![SagaEvent::SagaStarted {
        order_id: start.order_id,
        customer_id: start.customer_id,
        lines: start.lines,
        amount: start.amount,
        card_token,
        payment_id: start.payment_id,
        trigger_position: start.trigger_position,
        deadline_at: start.deadline_at,
    }])
}

impl Aggregate for OrderSaga {
    const TYPE: &'static str = "order_saga";
    type Command = SagaCommand;
    type Event = SagaEvent;
    type Error = SagaError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SagaCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SagaError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: SagaEvent) {
        if let SagaEvent::SagaStarted {
            order_id,
            customer_id,
            lines,
            amount,
            card_token,
            payment_id,
            trigger_position,
            deadline_at,
        } = event
        {
            self.run = Some(Run {
                order_id,
                customer_id,
                lines,
                amount,
                card_token,
                payment_id,
                phase: Phase::Reserving { deadline_at },
                owner: Some(Owner::Trigger(trigger_position)),
                provider_reference: None,
                cancellation: None,
                compensation_rounds: 0,
            });
            return;
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        match event {
            SagaEvent::SagaStarted { .. } => {}
            SagaEvent::StockReserved { deadline_at } => {
                run.phase = Phase::Authorising { deadline_at };
            }
            SagaEvent::PaymentAuthorised {
                provider_reference,
                deadline_at,
            } => {
                run.provider_reference = Some(provider_reference);
                run.phase = Phase::Completing { deadline_at };
            }
            SagaEvent::SagaCompleted => run.phase = Phase::Completed,
            SagaEvent::StepFailed { reason, .. } => run.start_compensating(reason),
            SagaEvent::CancellationNoticed {
                by,
                reason,
                trigger_position,
                takes_over,
            } => {
                let why = format!("order cancelled by {}: {reason}", canceller_word(by));
                run.cancellation = Some(CancellationNote { by, reason });
                if takes_over {
                    run.owner = Some(Owner::Trigger(trigger_position));
                }
                if matches!(
                    run.phase,
                    Phase::Reserving { .. }
                        | Phase::Authorising { .. }
                        | Phase::Completing { .. }
                        | Phase::Completed
                ) {
                    run.start_compensating(why);
                }
            }
            SagaEvent::SagaCompensated => {
                let reason = match &run.phase {
                    Phase::Compensating { reason } => reason.clone(),
                    _ => String::new(),
                };
                run.phase = Phase::Compensated { reason };
            }
            SagaEvent::CompensationFailed { step, error, .. } => {
                let reason = match &run.phase {
                    Phase::Compensating { reason } => reason.clone(),
                    _ => String::new(),
                };
                run.phase = Phase::CompensationFailed {
                    reason,
                    step,
                    error,
                };
            }
            SagaEvent::OperatorIntervened { action, actor, .. } => {
                run.owner = Some(Owner::Operator(actor));
                match action {
                    OperatorAction::Resume => {}
                    OperatorAction::Retry => {
                        let reason = match &run.phase {
                            Phase::CompensationFailed { reason, .. } => reason.clone(),
                            _ => "retried by an operator".to_owned(),
                        };
                        run.start_compensating(reason);
                    }
                    OperatorAction::Compensate => {
                        if !matches!(run.phase, Phase::Compensating { .. }) {
                            run.start_compensating("compensated by an operator".to_owned());
                        }
                    }
                }
            }
        }
        if run.phase.is_at_rest() {
            run.owner = None;
        }
    }
}

impl Run {
    fn start_compensating(&mut self, reason: String) {
        self.phase = Phase::Compensating { reason };
        self.compensation_rounds += 1;
    }
}

fn canceller_word(by: Canceller) -> &'static str {
    match by {
        Canceller::Customer => "the customer",
        Canceller::System => "the system",
        Canceller::Admin => "an admin",
    }
}

/// Upcasters for stored saga events; none has changed shape yet.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}
