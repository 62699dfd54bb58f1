//! The driver: performs a saga's steps and records their outcomes, until the saga rests.
//!
//! Each loop turn loads the saga, checks that this driver still owns it, performs the
//! current phase's effects (every one idempotent under a key derived from the saga and
//! the step) and records the outcome on the saga. A crash anywhere repeats at most the
//! current phase, whose effects then happen once; an outcome that no longer fits (the
//! saga moved on meanwhile) is ignored by the saga and the driver reloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, EventStore};
use domain::inventory::{InventoryCommand, InventoryError};
use domain::order::{Canceller, OrderCommand, OrderError, OrderStatus};
use domain::payment::{PaymentCommand, PaymentError, PaymentMethod, PaymentStatus};
use domain::saga::{FailedStep, OrderSaga, Owner, Phase, Run, SagaCommand};
use domain::{OrderId, RefundId};
use infra_nats::{BoxError, CommandBus, CommandError, CommitOutcome, ErrorChain};
use sqlx::PgPool;
use tracing::{debug, info, instrument, warn, Instrument};

use crate::buses::SagaBuses;
use crate::keys::{provider_key, step_id, step_metadata, ProviderStep, SagaStep};
use crate::parking;
use crate::provider::{
    AuthoriseRequest, CaptureRequest, PaymentProvider, ProviderError, RefundRequest, VoidOutcome,
    VoidRequest,
};
use crate::retry::{Backoff, Failure, GaveUp};

/// How long each phase may take, and how failures are retried.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// Reserving stock for every line.
    pub reserve_timeout: Duration,
    /// Getting an answer from the payment provider.
    pub authorise_timeout: Duration,
    /// Capturing, committing stock and confirming.
    pub complete_timeout: Duration,
    /// Backoff for transient failures and the attempts a compensation step gets.
    pub backoff: Backoff,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            reserve_timeout: Duration::from_secs(10),
            authorise_timeout: Duration::from_secs(10),
            complete_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}

/// Why driving a saga stopped before it rested or changed hands.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The saga's own log could not be read or written; the trigger should be redelivered.
    #[error("the saga's log is unavailable: {0}")]
    Store(#[source] BoxError),
    /// The saga could not be parked in the dead-letter queue; the trigger should be
    /// redelivered.
    #[error("parking in the dead-letter queue: {0}")]
    Park(#[source] sqlx::Error),
    /// The saga refused a recording in a way no retry fixes.
    #[error("the saga refused a recording: {0}")]
    Refused(String),
}

/// How driving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveOutcome {
    /// The saga is at rest in this phase (`completed`, `compensated`, `compensation_failed`).
    Rested(String),
    /// Somebody else owns the saga now (or it never started).
    NotOwned,
}

/// Drives sagas; cheap to share between tasks.
pub struct SagaDriver {
    buses: Arc<SagaBuses>,
    provider: Arc<dyn PaymentProvider>,
    db: PgPool,
    config: SagaConfig,
}

impl SagaDriver {
    /// A driver over the buses, the payment provider, and the database holding the
    /// dead-letter queue.
    pub fn new(
        buses: Arc<SagaBuses>,
        provider: Arc<dyn PaymentProvider>,
        db: PgPool,
        config: SagaConfig,
    ) -> Self {
        Self {
            buses,
            provider,
            db,
            config,
        }
    }

    /// The buses the driver sends through.
    pub fn buses(&self) -> &SagaBuses {
        &self.buses
    }

    /// The database holding the dead-letter queue.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// The driver's configuration.
    pub fn config(&self) -> &SagaConfig {
        &self.config
    }

    /// The saga of `order_id` as last known to this process.
    ///
    /// # Errors
    /// [`DriveError::Store`] when the log cannot be read.
    pub async fn load(&self, order_id: OrderId) -> Result<OrderSaga, DriveError> {
        let context = self
            .buses
            .sagas
            .store()
            .load_context(&order_id.to_string())
            .await
            .map_err(|e| DriveError::Store(Box::new(e)))?;
        Ok(context.state().clone())
    }

    async fn load_fresh(&self, order_id: OrderId) -> Result<OrderSaga, DriveError> {
        let context = self
            .buses
            .sagas
            .store()
            .load_fresh(&order_id.to_string())
            .await
            .map_err(|e| DriveError::Store(Box::new(e)))?;
        Ok(context.state().clone())
    }

    /// Records `command` on the saga, retrying while the log is unavailable.
    ///
    /// # Errors
    /// [`DriveError`] when the log stays unavailable or the saga refuses.
    pub async fn record(
        &self,
        order_id: OrderId,
        command: SagaCommand,
        step: &SagaStep,
    ) -> Result<CommitOutcome, DriveError> {
        let metadata = step_metadata(order_id, step, order_id.as_uuid());
        let id = order_id.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .buses
                .sagas
                .execute(&id, command.clone(), &metadata)
                .await
            {
                Ok(outcome) => return Ok(outcome),
                Err(CommandError::Rejected(error)) => {
                    return Err(DriveError::Refused(error.to_string()))
                }
                Err(error) if attempt < 8 => {
                    warn!(%order_id, attempt, error = %ErrorChain(&error), "recording on the saga failed, trying again");
                    tokio::time::sleep(self.config.backoff.pause(attempt)).await;
                }
                Err(error) => return Err(DriveError::Store(Box::new(error))),
            }
        }
    }

    /// Drives the saga of `order_id` while `owner` owns it and it is not at rest.
    ///
    /// # Errors
    /// [`DriveError`] when the saga's log is unavailable; the caller lets the trigger be
    /// redelivered, and the next driver resumes where this one stopped.
    pub async fn drive(
        &self,
        order_id: OrderId,
        owner: &Owner,
    ) -> Result<DriveOutcome, DriveError> {
        self.drive_since(order_id, owner, None).await
    }

    /// As [`SagaDriver::drive`]; when this call brings the saga to rest, the time since
    /// `placed_at` (the order's placement) is recorded as the saga's duration.
    ///
    /// # Errors
    /// See [`SagaDriver::drive`].
    #[instrument(name = "saga.drive", skip(self, placed_at), fields(order_id = %order_id, correlation_id = %order_id))]
    pub async fn drive_since(
        &self,
        order_id: OrderId,
        owner: &Owner,
        placed_at: Option<DateTime<Utc>>,
    ) -> Result<DriveOutcome, DriveError> {
        let mut saga = self.load(order_id).await?;
        // Whether a recording of this call moved the saga, so that a saga found at rest
        // (a redelivery, a second driver) is not counted twice.
        let mut moved_it = false;
        loop {
            let Some(run) = saga.run().cloned() else {
                return Ok(DriveOutcome::NotOwned);
            };
            let work = match &run.phase {
                Phase::Completed | Phase::Compensated { .. } => {
                    if moved_it {
                        rested(&run.phase, placed_at);
                    }
                    return Ok(DriveOutcome::Rested(run.phase.as_str().to_owned()));
                }
                Phase::CompensationFailed { step, error, .. } => {
                    // Parking is idempotent: a driver that died after recording the
                    // failure parks on its successor's turn.
                    self.park(&run, step, error).await?;
                    if moved_it {
                        rested(&run.phase, placed_at);
                    }
                    return Ok(DriveOutcome::Rested(run.phase.as_str().to_owned()));
                }
                _ if !saga.is_driven_by(owner) => return Ok(DriveOutcome::NotOwned),
                Phase::Reserving { deadline_at } => Work::Reserve(*deadline_at),
                Phase::Authorising { deadline_at } => Work::Authorise(*deadline_at),
                Phase::Completing { deadline_at } => Work::Complete(*deadline_at),
                Phase::Compensating { .. } => Work::Compensate,
            };
            let phase = run.phase.as_str();
            // One span per step: its effects, the commands they send and the recording
            // of the outcome on the saga are its children.
            let step_span = tracing::info_span!(
                "saga.step",
                phase,
                order_id = %order_id,
                correlation_id = %order_id
            );
            let started = Instant::now();
            let stepped = async {
                let (command, step) = match work {
                    Work::Reserve(deadline) => {
                        (self.reserve(&run, deadline).await, SagaStep::RecordReserve)
                    }
                    Work::Authorise(deadline) => (
                        self.authorise(&run, deadline).await,
                        SagaStep::RecordAuthorise,
                    ),
                    Work::Complete(deadline) => (
                        self.complete(&run, deadline).await,
                        SagaStep::RecordComplete,
                    ),
                    // Each compensation round (an operator may start another) records
                    // under its own key.
                    Work::Compensate => (
                        self.compensate(&run).await,
                        SagaStep::RecordCompensate {
                            round: run.compensation_rounds,
                        },
                    ),
                };
                let outcome = self.record(order_id, command.clone(), &step).await?;
                Ok::<_, DriveError>((command, outcome))
            }
            .instrument(step_span)
            .await;
            metrics::histogram!("shopstream_saga_phase_seconds", "phase" => phase)
                .record(started.elapsed().as_secs_f64());
            let (command, outcome) = stepped?;
            if outcome.events == 0 {
                // The saga moved on meanwhile (a cancellation noticed, an operator, another
                // driver): the outcome no longer fits and is ignored. Look again.
                info!(?command, "saga outcome ignored: the saga moved on");
                saga = self.load_fresh(order_id).await?;
            } else {
                moved_it = true;
                saga = self.load(order_id).await?;
            }
        }
    }

    async fn reserve(&self, run: &Run, deadline: DateTime<Utc>) -> SagaCommand {
        let order_id = run.order_id;
        let reservations = run.lines.iter().map(|line| {
            let step = SagaStep::Reserve(line.sku.clone());
            let command = InventoryCommand::ReserveStock {
                order_id,
                quantity: line.quantity,
            };
            async move {
                self.config
                    .backoff
                    .until(&step, deadline, || {
                        send(&self.buses.inventory, line.sku.as_str(), command.clone(), order_id, &step, |error| match error {
                            InventoryError::InsufficientStock { requested, available } => Err(Failure::Permanent(format!(
                                "not enough stock of {}: {requested} requested, {available} available",
                                line.sku
                            ))),
                            other => Err(Failure::Permanent(format!("cannot reserve {}: {other}", line.sku))),
                        })
                    })
                    .await
            }
        });
        for result in futures::future::join_all(reservations).await {
            if let Err(gave_up) = result {
                return failed(FailedStep::Reserve, gave_up.describe("reserving stock"));
            }
        }
        let marked = self
            .config
            .backoff
            .until(SagaStep::MarkStockReserved, deadline, || {
                send(
                    &self.buses.orders,
                    order_id.to_string(),
                    OrderCommand::MarkStockReserved,
                    order_id,
                    &SagaStep::MarkStockReserved,
                    |error| order_moved_on(error, OrderStatus::StockReserved),
                )
            })
            .await;
        if let Err(gave_up) = marked {
            return failed(
                FailedStep::Reserve,
                gave_up.describe("marking the order reserved"),
            );
        }
        SagaCommand::RecordStockReserved {
            deadline_at: Utc::now() + self.config.authorise_timeout,
        }
    }

    async fn authorise(&self, run: &Run, deadline: DateTime<Utc>) -> SagaCommand {
        let order_id = run.order_id;
        let request = AuthoriseRequest {
            idempotency_key: provider_key(order_id, ProviderStep::Authorise),
            payment_id: run.payment_id,
            order_id,
            card_token: run.card_token.clone(),
            amount: run.amount,
        };
        let answer = self
            .config
            .backoff
            .until(ProviderStep::Authorise, deadline, || async {
                match self.provider.authorise(&request).await {
                    Ok(authorisation) => Ok(Ok(authorisation)),
                    Err(ProviderError::Declined { reason, .. }) => Ok(Err(reason)),
                    Err(error) => Err(provider_failure(error)),
                }
            })
            .await;
        let authorisation = match answer {
            Ok(Ok(authorisation)) => authorisation,
            Ok(Err(reason)) => {
                // Record the decline on the payment for the customer's history; the
                // compensation does not depend on it.
                let decline = PaymentCommand::DeclinePayment {
                    payment_id: run.payment_id,
                    order_id,
                    amount: run.amount,
                    reason: reason.clone(),
                };
                let recorded = self
                    .config
                    .backoff
                    .bounded(SagaStep::RecordDecline, || {
                        send(
                            &self.buses.payments,
                            run.payment_id.to_string(),
                            decline.clone(),
                            order_id,
                            &SagaStep::RecordDecline,
                            |error| payment_done_or(error, &[PaymentError::AlreadyDeclined]),
                        )
                    })
                    .await;
                if let Err(gave_up) = recorded {
                    warn!(%order_id, error = gave_up.describe(SagaStep::RecordDecline), "the decline is not recorded on the payment");
                }
                return failed(FailedStep::Authorise, format!("payment declined: {reason}"));
            }
            Err(gave_up) => {
                return failed(
                    FailedStep::Authorise,
                    gave_up.describe("authorising the payment"),
                )
            }
        };
        let record = PaymentCommand::AuthorisePayment {
            payment_id: run.payment_id,
            order_id,
            amount: run.amount,
            method: PaymentMethod::Card {
                token: run.card_token.clone(),
            },
            provider_reference: authorisation.reference.clone(),
        };
        let recorded = self
            .config
            .backoff
            .until(SagaStep::RecordAuthorisation, deadline, || {
                send(
                    &self.buses.payments,
                    run.payment_id.to_string(),
                    record.clone(),
                    order_id,
                    &SagaStep::RecordAuthorisation,
                    |error| payment_done_or(error, &[PaymentError::AlreadyAuthorised]),
                )
            })
            .await;
        if let Err(gave_up) = recorded {
            return failed(
                FailedStep::Authorise,
                gave_up.describe("recording the authorisation"),
            );
        }
        // The order learns of the payment when it is confirmed (one commit for both): a
        // cancellation meanwhile is noticed on the saga, or refuses the confirmation.
        SagaCommand::RecordPaymentAuthorised {
            provider_reference: authorisation.reference,
            deadline_at: Utc::now() + self.config.complete_timeout,
        }
    }

    async fn complete(&self, run: &Run, deadline: DateTime<Utc>) -> SagaCommand {
        let order_id = run.order_id;
        let capture = CaptureRequest {
            idempotency_key: provider_key(order_id, ProviderStep::Capture),
            authorisation_key: provider_key(order_id, ProviderStep::Authorise),
            amount: run.amount,
        };
        let captured = self
            .config
            .backoff
            .until(ProviderStep::Capture, deadline, || async {
                self.provider
                    .capture(&capture)
                    .await
                    .map_err(provider_failure)
            })
            .await;
        if let Err(gave_up) = captured {
            return failed(
                FailedStep::Complete,
                gave_up.describe("capturing the payment"),
            );
        }
        let recorded = self
            .config
            .backoff
            .until(SagaStep::RecordCapture, deadline, || {
                send(
                    &self.buses.payments,
                    run.payment_id.to_string(),
                    PaymentCommand::CapturePayment { amount: run.amount },
                    order_id,
                    &SagaStep::RecordCapture,
                    |error| payment_done_or(error, &[PaymentError::AlreadyCaptured]),
                )
            })
            .await;
        if let Err(gave_up) = recorded {
            return failed(
                FailedStep::Complete,
                gave_up.describe("recording the capture"),
            );
        }
        for line in &run.lines {
            let step = SagaStep::Commit(line.sku.clone());
            let committed = self
                .config
                .backoff
                .until(&step, deadline, || {
                    send(
                        &self.buses.inventory,
                        line.sku.as_str(),
                        InventoryCommand::CommitReservation { order_id },
                        order_id,
                        &step,
                        |error| {
                            Err(Failure::Permanent(format!(
                                "cannot commit {}: {error}",
                                line.sku
                            )))
                        },
                    )
                })
                .await;
            if let Err(gave_up) = committed {
                return failed(FailedStep::Complete, gave_up.describe("committing stock"));
            }
        }
        let confirmed = self
            .config
            .backoff
            .until(SagaStep::Confirm, deadline, || {
                send(
                    &self.buses.orders,
                    order_id.to_string(),
                    OrderCommand::ConfirmPaidOrder {
                        payment_id: run.payment_id,
                    },
                    order_id,
                    &SagaStep::Confirm,
                    |error| order_moved_on(error, OrderStatus::Confirmed),
                )
            })
            .await;
        if let Err(gave_up) = confirmed {
            return failed(
                FailedStep::Complete,
                gave_up.describe("confirming the order"),
            );
        }
        SagaCommand::RecordCompleted
    }

    /// Undoes whatever may have been done, in reverse: the payment (void, or refund what
    /// was captured), the stock (return what was committed, release what is held), then
    /// the order (cancelled, and marked refunded when money went back). Every step is
    /// safe to run when its forward step never happened.
    async fn compensate(&self, run: &Run) -> SagaCommand {
        let reason = match &run.phase {
            Phase::Compensating { reason } => reason.clone(),
            _ => "compensating".to_owned(),
        };
        match self.compensate_steps(run, &reason).await {
            Ok(()) => SagaCommand::RecordCompensated,
            Err((step, gave_up)) => {
                let (error, attempts) = match &gave_up {
                    GaveUp::Exhausted { attempts, error } => (error.clone(), *attempts),
                    other => (other.describe(&step), 1),
                };
                warn!(order_id = %run.order_id, %step, %error, "compensation keeps failing; parking the saga");
                SagaCommand::RecordCompensationFailed {
                    step,
                    error,
                    attempts,
                }
            }
        }
    }

    async fn compensate_steps(&self, run: &Run, reason: &str) -> Result<(), (String, GaveUp)> {
        let order_id = run.order_id;
        let backoff = &self.config.backoff;
        let round = run.compensation_rounds;
        let refunded = self.settle_payment(run, reason).await?;
        for line in run.lines.iter().rev() {
            let step = SagaStep::Return(line.sku.clone());
            backoff
                .bounded(&step, || {
                    send(
                        &self.buses.inventory,
                        line.sku.as_str(),
                        InventoryCommand::ReturnCommittedStock {
                            order_id,
                            reason: reason.to_owned(),
                        },
                        order_id,
                        &step,
                        |error| match error {
                            InventoryError::NotCommitted { .. } => Ok(()),
                            other => Err(Failure::Permanent(other.to_string())),
                        },
                    )
                })
                .await
                .map_err(|gave_up| (step.name().into_owned(), gave_up))?;
            let step = SagaStep::Release(line.sku.clone());
            backoff
                .bounded(&step, || {
                    send(
                        &self.buses.inventory,
                        line.sku.as_str(),
                        InventoryCommand::ReleaseReservation {
                            order_id,
                            reason: reason.to_owned(),
                        },
                        order_id,
                        &step,
                        |error| Err(Failure::Permanent(error.to_string())),
                    )
                })
                .await
                .map_err(|gave_up| (step.name().into_owned(), gave_up))?;
        }
        let cancel = OrderCommand::CancelOrder {
            reason: reason.to_owned(),
            by: Canceller::System,
        };
        backoff
            .bounded(SagaStep::Cancel, || {
                send(
                    &self.buses.orders,
                    order_id.to_string(),
                    cancel.clone(),
                    order_id,
                    &SagaStep::Cancel,
                    |error| match error {
                        OrderError::AlreadyCancelled => Ok(()),
                        other => Err(Failure::Permanent(format!(
                            "cannot cancel the order: {other}"
                        ))),
                    },
                )
            })
            .await
            .map_err(|gave_up| (SagaStep::Cancel.name().into_owned(), gave_up))?;
        if refunded {
            let mark = OrderCommand::MarkRefunded {
                amount: run.amount,
                reason: reason.to_owned(),
            };
            backoff
                .bounded(SagaStep::MarkRefunded, || {
                    send(
                        &self.buses.orders,
                        order_id.to_string(),
                        mark.clone(),
                        order_id,
                        &SagaStep::MarkRefunded,
                        |error| match error {
                            OrderError::AlreadyRefunded | OrderError::NotPaid => Ok(()),
                            other => Err(Failure::Permanent(format!(
                                "cannot mark the order refunded: {other}"
                            ))),
                        },
                    )
                })
                .await
                .map_err(|gave_up| (SagaStep::MarkRefunded.name().into_owned(), gave_up))?;
        }
        debug!(%order_id, round, "compensated");
        Ok(())
    }

    /// Voids the authorisation, or refunds it when it was captured. Returns whether money
    /// was refunded.
    async fn settle_payment(&self, run: &Run, reason: &str) -> Result<bool, (String, GaveUp)> {
        let order_id = run.order_id;
        let backoff = &self.config.backoff;
        let payment = run.payment_id.to_string();
        let authorisation_key = provider_key(order_id, ProviderStep::Authorise);
        let void = VoidRequest {
            idempotency_key: provider_key(order_id, ProviderStep::Void),
            authorisation_key: authorisation_key.clone(),
        };
        // A payment recorded as captured needs a refund; anything else may be held (or
        // come late), and the void tells which.
        let recorded_captured = self
            .buses
            .payments
            .store()
            .load_aggregate(&payment)
            .await
            .is_ok_and(|context| context.state().status() == Some(PaymentStatus::Captured));
        let voided = if recorded_captured {
            VoidOutcome::AlreadyCaptured
        } else {
            backoff
                .bounded(ProviderStep::Void, || async {
                    self.provider.void(&void).await.map_err(provider_failure)
                })
                .await
                .map_err(|gave_up| (ProviderStep::Void.name().to_owned(), gave_up))?
        };
        match voided {
            VoidOutcome::NothingToVoid => Ok(false),
            VoidOutcome::Voided => {
                backoff
                    .bounded(SagaStep::RecordVoid, || {
                        send(
                            &self.buses.payments,
                            payment.as_str(),
                            PaymentCommand::VoidPayment,
                            order_id,
                            &SagaStep::RecordVoid,
                            |error| {
                                // Nothing recorded (the authorisation came late or the driver
                                // died before recording it) or already voided: nothing to do.
                                payment_done_or(
                                    error,
                                    &[PaymentError::NotFound, PaymentError::AlreadyVoided],
                                )
                            },
                        )
                    })
                    .await
                    .map_err(|gave_up| (SagaStep::RecordVoid.name().into_owned(), gave_up))?;
                Ok(false)
            }
            VoidOutcome::AlreadyCaptured => {
                backoff
                    .bounded(SagaStep::RecordCapture, || {
                        send(
                            &self.buses.payments,
                            payment.as_str(),
                            PaymentCommand::CapturePayment { amount: run.amount },
                            order_id,
                            &SagaStep::RecordCapture,
                            |error| payment_done_or(error, &[PaymentError::AlreadyCaptured]),
                        )
                    })
                    .await
                    .map_err(|gave_up| (SagaStep::RecordCapture.name().into_owned(), gave_up))?;
                let refund = RefundRequest {
                    idempotency_key: provider_key(order_id, ProviderStep::Refund),
                    authorisation_key,
                    amount: run.amount,
                };
                backoff
                    .bounded(SagaStep::Refund, || async {
                        self.provider
                            .refund(&refund)
                            .await
                            .map_err(provider_failure)
                    })
                    .await
                    .map_err(|gave_up| (SagaStep::Refund.name().into_owned(), gave_up))?;
                let record = PaymentCommand::RefundPayment {
                    refund_id: RefundId(step_id(order_id, &SagaStep::Refund)),
                    amount: run.amount,
                    reason: reason.to_owned(),
                };
                backoff
                    .bounded(SagaStep::RecordRefund, || {
                        send(
                            &self.buses.payments,
                            payment.as_str(),
                            record.clone(),
                            order_id,
                            &SagaStep::RecordRefund,
                            |error| {
                                Err(Failure::Permanent(format!(
                                    "cannot record the refund: {error}"
                                )))
                            },
                        )
                    })
                    .await
                    .map_err(|gave_up| (SagaStep::RecordRefund.name().into_owned(), gave_up))?;
                Ok(true)
            }
        }
    }

    async fn park(&self, run: &Run, step: &str, error: &str) -> Result<(), DriveError> {
        let id = run.order_id.to_string();
        let position = self
            .buses
            .sagas
            .store()
            .load_context(&id)
            .await
            .map_err(|e| DriveError::Store(Box::new(e)))?
            .position();
        parking::park(&self.db, run, step, error, position)
            .await
            .map_err(DriveError::Park)
    }
}

/// The effects of the phase a saga is in.
enum Work {
    Reserve(DateTime<Utc>),
    Authorise(DateTime<Utc>),
    Complete(DateTime<Utc>),
    Compensate,
}

/// Counts a saga this driver brought to rest, and times it from the order's placement.
fn rested(phase: &Phase, placed_at: Option<DateTime<Utc>>) {
    let outcome = phase.as_str();
    info!(outcome, "saga at rest");
    metrics::counter!("shopstream_saga_outcomes_total", "outcome" => outcome).increment(1);
    if let Some(placed_at) = placed_at {
        let seconds = (Utc::now() - placed_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("shopstream_saga_duration_seconds", "outcome" => outcome)
            .record(seconds);
    }
}

fn failed(step: FailedStep, reason: String) -> SagaCommand {
    SagaCommand::RecordStepFailed { step, reason }
}

/// Sends one step's command. `on_rejected` says what a rejection means: `Ok` when it
/// shows the step already happened, else the failure. The store's failures are transient
/// (the same command id makes a resend safe).
async fn send<A>(
    bus: &CommandBus<A>,
    aggregate_id: impl AsRef<str>,
    command: A::Command,
    order_id: OrderId,
    step: &SagaStep,
    on_rejected: impl Fn(A::Error) -> Result<(), Failure>,
) -> Result<(), Failure>
where
    A: Aggregate,
    A::Command: Clone,
{
    let metadata = step_metadata(order_id, step, order_id.as_uuid());
    let result = bus.execute(aggregate_id.as_ref(), command, &metadata).await;
    match result {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(error)) => on_rejected(error),
        Err(error) => Err(Failure::Transient(error.to_string())),
    }
}

fn provider_failure(error: ProviderError) -> Failure {
    if error.is_transient() {
        Failure::Transient(error.to_string())
    } else {
        Failure::Permanent(error.to_string())
    }
}

/// An order command refused because the order is already at or past `reached` is done (a
/// repeat); refused because the order was cancelled is a permanent failure.
fn order_moved_on(error: OrderError, reached: OrderStatus) -> Result<(), Failure> {
    let order = [
        OrderStatus::Placed,
        OrderStatus::StockReserved,
        OrderStatus::PaymentAuthorised,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ];
    let rank = |status| order.iter().position(|s| *s == status);
    match error {
        OrderError::AlreadyCancelled => {
            Err(Failure::Permanent("the order was cancelled".to_owned()))
        }
        OrderError::InvalidTransition { from, .. }
            if rank(from).is_some() && rank(from) >= rank(reached) =>
        {
            Ok(())
        }
        other => Err(Failure::Permanent(format!("the order refused: {other}"))),
    }
}

/// A payment command refused with one of `done` already happened.
fn payment_done_or(error: PaymentError, done: &[PaymentError]) -> Result<(), Failure> {
    if done.contains(&error) {
        Ok(())
    } else {
        Err(Failure::Permanent(format!("the payment refused: {error}")))
    }
}
