//! The commit envelope: one JetStream message holding every event of one command.
//!
//! One message per command makes a multi-event command atomic (a reader sees all of its
//! events or none) while keeping the server's per-subject concurrency check; see
//! `docs/adr/0001-one-message-per-command.md`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use domain::metadata::keys;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::StoreError;

/// One event inside a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
}

/// What is stored in one message of the `EVENTS` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitEnvelope {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The aggregate version (cqrs-es sequence, from 1) of the first event.
    pub first_sequence: usize,
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub actor: String,
    pub timestamp: DateTime<Utc>,
    /// Caller metadata beyond the standard keys (trace context, client info).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
    pub events: Vec<StoredEvent>,
    /// SHA-256 (lower-case hex) chaining this commit to the previous commit of the same
    /// aggregate: see [`CommitEnvelope::chain_hash`]. `None` on commits written before
    /// the chain existed ("unchained").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// The content a commit's hash covers, in a fixed field order: every field of the
/// envelope except the hash itself.
#[derive(Serialize)]
struct HashedContent<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    first_sequence: usize,
    command_id: &'a str,
    correlation_id: &'a str,
    causation_id: &'a str,
    actor: &'a str,
    timestamp: &'a DateTime<Utc>,
    extra: &'a BTreeMap<String, String>,
    events: &'a [StoredEvent],
}

impl CommitEnvelope {
    /// Builds the envelope of a command's events.
    ///
    /// # Errors
    /// [`StoreError::Metadata`] when the command id is missing, [`StoreError::Encode`] when
    /// an event does not serialise.
    pub fn new<A: Aggregate>(
        aggregate_id: &str,
        first_sequence: usize,
        events: &[A::Event],
        metadata: &HashMap<String, String>,
        timestamp: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let command_id = metadata
            .get(keys::COMMAND_ID)
            .cloned()
            .ok_or_else(|| StoreError::Metadata(format!("missing `{}`", keys::COMMAND_ID)))?;
        let standard = |key: &str| {
            metadata
                .get(key)
                .cloned()
                .unwrap_or_else(|| command_id.clone())
        };
        let extra = metadata
            .iter()
            .filter(|(key, _)| !STANDARD_KEYS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let events = events
            .iter()
            .map(|event| {
                Ok(StoredEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(event).map_err(StoreError::Encode)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            first_sequence,
            correlation_id: standard(keys::CORRELATION_ID),
            causation_id: standard(keys::CAUSATION_ID),
            actor: metadata
                .get(keys::ACTOR)
                .cloned()
                .unwrap_or_else(|| "system:unknown".to_owned()),
            command_id,
            timestamp,
            extra,
            events,
            hash: None,
        })
    }

    /// The hash this commit must carry when `previous` is the hash of the aggregate's
    /// previous commit (`None` for its first commit, or when that one is unchained).
    ///
    /// SHA-256, as lower-case hex, over the previous hash's hex (empty when none), one
    /// newline, then the compact JSON of the envelope's content in a fixed field order:
    /// aggregate type and id, first sequence, command, correlation and causation ids,
    /// actor, timestamp (RFC 3339), extra metadata (sorted by key), and the events with
    /// their ids, types, versions and payloads. Payload objects serialise in the order
    /// they were read, which is the order they were written, so a stored commit hashes
    /// to the same value when read back.
    pub fn chain_hash(&self, previous: Option<&str>) -> String {
        let content = HashedContent {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            first_sequence: self.first_sequence,
            command_id: &self.command_id,
            correlation_id: &self.correlation_id,
            causation_id: &self.causation_id,
            actor: &self.actor,
            timestamp: &self.timestamp,
            extra: &self.extra,
            events: &self.events,
        };
        let mut hasher = Sha256::new();
        hasher.update(previous.unwrap_or_default().as_bytes());
        hasher.update(b"\n");
        // Serialising borrowed strings, numbers and JSON values into a Vec cannot fail:
        // there are no maps with non-string keys and no I/O.
        let json = serde_json::to_vec(&content).unwrap_or_default();
        hasher.update(&json);
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Sets [`CommitEnvelope::hash`], chaining this commit to `previous`.
    pub fn seal(&mut self, previous: Option<&str>) {
        self.hash = Some(self.chain_hash(previous));
    }

    /// The aggregate version after this commit.
    pub fn last_sequence(&self) -> usize {
        self.first_sequence + self.events.len() - 1
    }
}

const STANDARD_KEYS: [&str; 7] = [
    keys::EVENT_ID,
    keys::COMMAND_ID,
    keys::CORRELATION_ID,
    keys::CAUSATION_ID,
    keys::ACTOR,
    keys::TIMESTAMP,
    keys::POSITION,
];

/// A commit as read back from the stream, with its global position.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCommit {
    /// The stream sequence of the commit message.
    pub position: u64,
    pub envelope: CommitEnvelope,
}

impl RecordedCommit {
    /// Decodes a message payload.
    ///
    /// # Errors
    /// [`StoreError::Decode`] when the payload is not a commit envelope.
    pub fn decode(position: u64, payload: &[u8]) -> Result<Self, StoreError> {
        let envelope = serde_json::from_slice(payload)
            .map_err(|e| StoreError::decode(format!("commit at position {position}"), e))?;
        Ok(Self { position, envelope })
    }

    /// The metadata map of one event of this commit, as cqrs-es hands it to readers.
    pub fn event_metadata(&self, event: &StoredEvent) -> HashMap<String, String> {
        let envelope = &self.envelope;
        let mut metadata: HashMap<String, String> = envelope.extra.clone().into_iter().collect();
        metadata.extend([
            (keys::EVENT_ID.to_owned(), event.event_id.to_string()),
            (keys::COMMAND_ID.to_owned(), envelope.command_id.clone()),
            (
                keys::CORRELATION_ID.to_owned(),
                envelope.correlation_id.clone(),
            ),
            (keys::CAUSATION_ID.to_owned(), envelope.causation_id.clone()),
            (keys::ACTOR.to_owned(), envelope.actor.clone()),
            (keys::TIMESTAMP.to_owned(), envelope.timestamp.to_rfc3339()),
            (keys::POSITION.to_owned(), self.position.to_string()),
        ]);
        metadata
    }

    /// Upcasts and deserialises the events of this commit for aggregate `A`.
    ///
    /// # Errors
    /// [`StoreError::Decode`] when an event, after upcasting, does not fit `A::Event`.
    pub fn into_event_envelopes<A: Aggregate>(
        &self,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> Result<Vec<EventEnvelope<A>>, StoreError> {
        let envelope = &self.envelope;
        envelope
            .events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let sequence = envelope.first_sequence + index;
                let payload = upcast(
                    &envelope.aggregate_type,
                    &envelope.aggregate_id,
                    sequence,
                    event,
                    upcasters,
                );
                let payload: A::Event = serde_json::from_value(payload).map_err(|e| {
                    StoreError::decode(
                        format!(
                            "{} v{} of {}/{} at sequence {sequence}",
                            event.event_type,
                            event.event_version,
                            envelope.aggregate_type,
                            envelope.aggregate_id
                        ),
                        e,
                    )
                })?;
                Ok(EventEnvelope {
                    aggregate_id: envelope.aggregate_id.clone(),
                    sequence,
                    payload,
                    metadata: self.event_metadata(event),
                })
            })
            .collect()
    }
}

/// Runs the matching upcasters over one stored event, oldest first.
fn upcast(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: usize,
    event: &StoredEvent,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Value {
    let needs_upcast = upcasters
        .iter()
        .any(|u| u.can_upcast(&event.event_type, &event.event_version));
    if !needs_upcast {
        return event.payload.clone();
    }
    let mut serialized = SerializedEvent {
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        aggregate_type: aggregate_type.to_owned(),
        event_type: event.event_type.clone(),
        event_version: event.event_version.clone(),
        payload: event.payload.clone(),
        metadata: Value::Null,
    };
    for upcaster in upcasters {
        if upcaster.can_upcast(&serialized.event_type, &serialized.event_version) {
            serialized = upcaster.upcast(serialized);
        }
    }
    serialized.payload
}
