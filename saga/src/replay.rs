//! The saga's replay mode: order events re-delivered by `shopstream replay --target saga`
//! go through the same pure reaction as the live trigger ([`reaction_to`]) and the
//! saga's own decision ([`OrderSaga::decide`]) on its state loaded from the log, and
//! nothing else: no command is sent, no provider is called, nothing is recorded on the
//! saga. What the saga would still do is reported, so an operator learns of an order the
//! live trigger never reached (a consumer recreated past it, say) without any effect
//! being repeated.

use domain::order::Order;
use domain::saga::{OrderSaga, SagaCommand};
use domain::OrderId;
use infra_nats::{EventStoreConfig, JetStreamEventStore, RecordedCommit, StoreError};
use serde::Serialize;

use crate::trigger::{reaction_to, Reaction};

/// What the saga makes of one re-delivered order event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The saga already reacted to it (started, or noted the cancellation): a live
    /// re-delivery would record nothing.
    Handled,
    /// The saga has not reacted to it and would now: the live trigger missed it.
    WouldAct,
    /// The saga refuses it (an order it cannot start, a cancellation before the start);
    /// the live trigger passes over such events too.
    Refused,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Handled => "handled",
            Verdict::WouldAct => "would_act",
            Verdict::Refused => "refused",
        }
    }
}

/// The saga's judgement of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub position: u64,
    pub order_id: String,
    /// `start` or `note_cancellation`.
    pub reaction: &'static str,
    pub verdict: Verdict,
    /// What it would record, or why it refuses.
    pub detail: String,
}

/// Judges re-delivered order commits against the sagas in the log; read-only.
pub struct SagaReplay {
    sagas: JetStreamEventStore<OrderSaga>,
}

impl SagaReplay {
    /// A judge reading sagas from a provisioned server.
    ///
    /// # Errors
    /// [`StoreError`] when the snapshot bucket is missing.
    pub async fn new(client: async_nats::Client) -> Result<Self, StoreError> {
        let sagas = JetStreamEventStore::new(
            client,
            EventStoreConfig {
                // Every load is fresh; nothing is worth keeping.
                cache_capacity: 0,
                ..EventStoreConfig::default()
            },
        )
        .await?;
        Ok(Self { sagas })
    }

    /// The judgement of every saga-relevant event in `commit` (none for other aggregate
    /// types and for order events the saga does not react to).
    ///
    /// # Errors
    /// [`StoreError`] when a saga cannot be loaded.
    pub async fn judge(&self, commit: &RecordedCommit) -> Result<Vec<Judgement>, StoreError> {
        if commit.envelope.aggregate_type != "order" {
            return Ok(Vec::new());
        }
        let events = match commit.into_event_envelopes::<Order>(&domain::order::upcasters()) {
            Ok(events) => events,
            // The live trigger skips a commit it cannot decode, and so does the replay.
            Err(_) => return Ok(Vec::new()),
        };
        let mut judgements = Vec::new();
        for envelope in events {
            // The deadline only matters to a saga that starts; none starts here.
            let Some(reaction) = reaction_to(envelope.payload, commit.position, chrono::Utc::now())
            else {
                continue;
            };
            let (order_id, kind, command) = match reaction {
                Reaction::Start(start) => (start.order_id, "start", SagaCommand::Start(start)),
                Reaction::NoteCancellation { order_id, note } => {
                    (order_id, "note_cancellation", note)
                }
            };
            let saga = self.load(order_id).await?;
            let (verdict, detail) = match saga.decide(command) {
                Ok(events) if events.is_empty() => {
                    (Verdict::Handled, "already recorded on the saga".to_owned())
                }
                Ok(events) => (
                    Verdict::WouldAct,
                    format!(
                        "the saga would record {}",
                        events
                            .iter()
                            .map(|e| {
                                use cqrs_es::DomainEvent;
                                e.event_type()
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Err(refusal) => (Verdict::Refused, refusal.to_string()),
            };
            judgements.push(Judgement {
                position: commit.position,
                order_id: order_id.to_string(),
                reaction: kind,
                verdict,
                detail,
            });
        }
        Ok(judgements)
    }

    async fn load(&self, order_id: OrderId) -> Result<OrderSaga, StoreError> {
        let context = self.sagas.load_fresh(&order_id.to_string()).await?;
        Ok(context.state().clone())
    }
}
