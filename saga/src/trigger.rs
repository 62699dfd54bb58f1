//! The saga role: a durable JetStream consumer on order events, shared by every replica.
//!
//! `OrderPlaced` starts an order's saga and its holder drives it; `OrderCancelled` by the
//! customer or an admin is noted on the saga (the owner compensates, or the noticing
//! trigger does when the saga had already completed). Each message stays unacknowledged
//! while its saga is driven, with progress acks as a heartbeat; if the replica dies, the
//! server redelivers it after `ack_wait` and the next holder resumes from the saga's
//! recorded state, so deadlines recorded in the saga fire at most `ack_wait` late.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use domain::order::{Canceller, Order, OrderCommand, OrderEvent};
use domain::payment::PaymentMethod;
use domain::saga::{Owner, SagaCommand, SagaLine, SagaStart};
use domain::OrderId;
use futures::StreamExt;
use infra_nats::subjects::{aggregate_type_filter, headers, EVENTS_STREAM};
use infra_nats::{BoxError, CommandError, ErrorChain, RecordedCommit, RemoteTrace};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, info, warn, Instrument};

use crate::driver::{DriveError, SagaDriver};
use crate::keys::{payment_id, step_metadata, SagaStep};

/// How the saga role consumes order events.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// The durable consumer's name, shared by every replica.
    pub consumer: String,
    /// How long an unacknowledged trigger waits before redelivery to another replica.
    pub ack_wait: Duration,
    /// Sagas one replica drives at once.
    pub max_in_flight: usize,
}

/// The durable consumer the saga role reads order commits with (shared by its replicas).
pub const CONSUMER: &str = "saga";

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            consumer: CONSUMER.to_owned(),
            ack_wait: Duration::from_secs(15),
            max_in_flight: 512,
        }
    }
}

/// Why the saga role stopped.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// NATS refused to create or read the consumer.
    #[error("NATS: {0}")]
    Nats(#[source] BoxError),
}

/// Consumes order events and drives their sagas until `shutdown` completes; sagas in
/// flight then finish their current phase (their triggers are redelivered otherwise).
///
/// # Errors
/// [`TriggerError`] when the consumer cannot be created at start-up; later, a consumer
/// that goes away is opened again.
pub async fn run(
    driver: Arc<SagaDriver>,
    js: jetstream::Context,
    config: TriggerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), TriggerError> {
    let mut messages = open_messages(&js, &config).await?;
    let slots = Arc::new(Semaphore::new(config.max_in_flight));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    info!(consumer = %config.consumer, "saga role started");
    loop {
        let message = tokio::select! {
            () = &mut shutdown => break,
            next = messages.next() => next,
        };
        while tasks.try_join_next().is_some() {}
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                warn!(error = %ErrorChain(&error), "reading order events failed; continuing");
                continue;
            }
            None => {
                // The consumer went away (deleted by hand, or its stream was recreated):
                // open it again (from where the server left it, or from the start of the
                // log, which is safe: every saga step is idempotent).
                warn!("the saga consumer's message stream ended; opening it again");
                let mut stopping = false;
                loop {
                    tokio::select! {
                        () = &mut shutdown => {
                            stopping = true;
                            break;
                        }
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    match open_messages(&js, &config).await {
                        Ok(reopened) => {
                            messages = reopened;
                            break;
                        }
                        Err(error) => {
                            warn!(error = %ErrorChain(&error), "opening the saga consumer failed; trying again");
                        }
                    }
                }
                if stopping {
                    break;
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let driver = driver.clone();
        let heartbeat = config.ack_wait / 3;
        tasks.spawn(async move {
            handle(&driver, message, heartbeat).await;
            drop(slot);
        });
    }
    info!(in_flight = tasks.len(), "saga role stopping");
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Creates the shared durable consumer if needed and opens its message stream.
async fn open_messages(
    js: &jetstream::Context,
    config: &TriggerConfig,
) -> Result<consumer::pull::Stream, TriggerError> {
    let nats = |e: BoxError| TriggerError::Nats(e);
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| nats(Box::new(e)))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.consumer,
            consumer::pull::Config {
                durable_name: Some(config.consumer.clone()),
                description: Some("shopstream order sagas (triggers: order events)".to_owned()),
                filter_subject: aggregate_type_filter("order"),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: i64::try_from(config.max_in_flight * 16).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| nats(Box::new(e)))?;
    consumer
        .stream()
        .max_messages_per_batch(config.max_in_flight)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| nats(Box::new(e)))
}

async fn handle(driver: &SagaDriver, message: jetstream::Message, heartbeat: Duration) {
    let work = drive_trigger(driver, &message);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(heartbeat.max(Duration::from_millis(100)));
    ticker.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = ticker.tick() => {
                // Still working on it: keeps the server from redelivering.
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    };
    let ack = match result {
        Ok(()) => message.ack().await,
        Err(error) => {
            warn!(error = %ErrorChain(&error), "saga trigger not finished; it will be redelivered");
            message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await
        }
    };
    if let Err(error) = ack {
        // The redelivery that follows finds the saga where this one left it.
        warn!(error = %ErrorChain(&*error), "acknowledging a saga trigger failed");
    }
}

async fn drive_trigger(
    driver: &SagaDriver,
    message: &jetstream::Message,
) -> Result<(), DriveError> {
    let relevant = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::EVENT_TYPES))
        .map(|types| may_react_to(types.as_str()))
        // Without the header, decode and see.
        .unwrap_or(true);
    if !relevant {
        return Ok(());
    }
    let info = message.info().map_err(DriveError::Store)?;
    let (position, published) = (info.stream_sequence, info.published);
    let correlation_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::CORRELATION_ID))
        .map(|value| value.as_str().to_owned());
    // The saga continues the trace of the commit that triggered it: every step, and
    // every command a step sends, is a descendant of that commit's span.
    let span = tracing::info_span!(
        "saga.trigger",
        position,
        correlation_id = correlation_id.as_deref(),
        otel.kind = "consumer"
    );
    if let Some(trace) = RemoteTrace::from_headers(message.headers.as_ref()) {
        trace.adopt(&span);
    }
    react(driver, message, position, published)
        .instrument(span)
        .await
}

async fn react(
    driver: &SagaDriver,
    message: &jetstream::Message,
    position: u64,
    published: chrono::DateTime<chrono::Utc>,
) -> Result<(), DriveError> {
    let events = match RecordedCommit::decode(position, &message.payload)
        .and_then(|commit| commit.into_event_envelopes::<Order>(&domain::order::upcasters()))
    {
        Ok(events) => events,
        Err(decode) => {
            // Not an order commit this code understands; nothing a retry could change.
            error!(position, error = %ErrorChain(&decode), "an order commit does not decode; the saga skips it");
            return Ok(());
        }
    };
    let reserve_deadline = chrono::Utc::now() + driver.config().reserve_timeout;
    for envelope in events {
        let Some(reaction) = reaction_to(envelope.payload, position, reserve_deadline) else {
            continue;
        };
        match reaction {
            Reaction::Start(start) => {
                let order_id = start.order_id;
                match driver
                    .record(order_id, SagaCommand::Start(start), &SagaStep::Start)
                    .await
                {
                    Ok(_) => {}
                    Err(DriveError::Refused(reason)) => {
                        warn!(%order_id, %reason, "the order cannot start a saga; cancelling it");
                        cancel_unstartable(driver, order_id, &reason).await?;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
                driver
                    .drive_since(order_id, &Owner::Trigger(position), Some(published))
                    .await?;
            }
            Reaction::NoteCancellation { order_id, note } => {
                match driver
                    .record(order_id, note, &SagaStep::NoteCancellation { position })
                    .await
                {
                    Ok(_) => {}
                    // Not started yet: the starting driver finds the order cancelled.
                    Err(DriveError::Refused(_)) => continue,
                    Err(error) => return Err(error),
                }
                driver.drive(order_id, &Owner::Trigger(position)).await?;
            }
        }
    }
    Ok(())
}

/// Whether a commit whose events have these types (the commit header's comma-separated
/// list) may hold an event the saga reacts to ([`reaction_to`]): an `OrderPlaced` or an
/// `OrderCancelled`. Types are compared whole, as the order events name themselves, so
/// the many commits of other events are acknowledged without being decoded.
pub fn may_react_to(event_types: &str) -> bool {
    event_types.split(',').map(str::trim).any(|event_type| {
        event_type == OrderEvent::PLACED_TYPE || event_type == OrderEvent::CANCELLED_TYPE
    })
}

/// What the saga does about an order event, decided without I/O; the live trigger acts
/// on it and the replay mode ([`crate::replay`]) only asks the saga whether it would.
#[derive(Debug, Clone)]
pub enum Reaction {
    /// `OrderPlaced`: start the order's saga (owned by the trigger at this position).
    Start(SagaStart),
    /// `OrderCancelled` by the customer or an admin: note it on the saga.
    NoteCancellation {
        order_id: OrderId,
        note: SagaCommand,
    },
}

/// The saga's reaction to one order event at `position`, if it has one. A cancellation
/// by the system is the saga's own doing and needs none.
pub fn reaction_to(
    event: OrderEvent,
    position: u64,
    reserve_deadline: chrono::DateTime<chrono::Utc>,
) -> Option<Reaction> {
    match event {
        OrderEvent::OrderPlaced {
            order_id,
            customer_id,
            lines,
            total,
            payment_method,
            ..
        } => {
            let card_token = match payment_method {
                Some(PaymentMethod::Card { token }) => token,
                None => String::new(),
            };
            Some(Reaction::Start(SagaStart {
                order_id,
                customer_id,
                lines: lines
                    .into_iter()
                    .map(|line| SagaLine {
                        sku: line.sku,
                        quantity: line.quantity,
                    })
                    .collect(),
                amount: total,
                card_token,
                payment_id: payment_id(order_id),
                trigger_position: position,
                deadline_at: reserve_deadline,
            }))
        }
        OrderEvent::OrderCancelled {
            order_id,
            by,
            reason,
        } if by != Canceller::System => Some(Reaction::NoteCancellation {
            order_id,
            note: SagaCommand::NoteCancellation {
                by,
                reason,
                trigger_position: position,
            },
        }),
        _ => None,
    }
}

/// An order that cannot start a saga (no payment method on an old event) is cancelled.
async fn cancel_unstartable(
    driver: &SagaDriver,
    order_id: OrderId,
    reason: &str,
) -> Result<(), DriveError> {
    let command = OrderCommand::CancelOrder {
        reason: format!("the order cannot be processed: {reason}"),
        by: Canceller::System,
    };
    let metadata = step_metadata(order_id, &SagaStep::CancelUnstartable, order_id.as_uuid());
    match driver
        .buses()
        .orders
        .execute(&order_id.to_string(), command, &metadata)
        .await
    {
        Ok(_) | Err(CommandError::Rejected(_)) => Ok(()),
        Err(error) => Err(DriveError::Store(Box::new(error))),
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::DomainEvent;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn commits_with_a_placement_or_a_cancellation_may_start_or_note() {
        assert!(may_react_to("OrderPlaced"));
        assert!(may_react_to("OrderStockReserved,OrderCancelled"));
        assert!(may_react_to("OrderCancelled,OrderRefunded"));
        let cancelled = OrderEvent::OrderCancelled {
            order_id: OrderId(Uuid::from_u128(1)),
            reason: "changed my mind".to_owned(),
            by: Canceller::Customer,
        };
        assert!(may_react_to(&cancelled.event_type()));
    }

    #[test]
    fn commits_of_other_events_are_passed_over_without_decoding() {
        assert!(!may_react_to("OrderStockReserved"));
        assert!(!may_react_to("OrderPaymentAuthorised,OrderConfirmed"));
        assert!(!may_react_to(""));
        // Whole names: a type that merely contains `OrderPlaced` is another event.
        assert!(!may_react_to("OrderPlacedAgain,OrderCancelledNote"));
    }
}
