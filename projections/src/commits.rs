//! Decoding delivered commits, and where a commit stands relative to what a read model
//! already applied of its aggregate; shared by the orders, payments, sagas and sales
//! models.
//!
//! Read models keep the aggregate version they last applied per aggregate, which makes
//! `apply` idempotent (a replayed commit is skipped) and lets it notice a commit that
//! does not follow the previous one (a gap means a lost or misrouted commit).

use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use infra_nats::CommitEnvelope;
use uuid::Uuid;

use crate::projection::{ApplyError, Delivery};

/// A delivered commit with its events decoded.
pub(crate) struct Decoded<'a, E> {
    pub(crate) position: i64,
    pub(crate) aggregate_id: Uuid,
    pub(crate) envelope: &'a CommitEnvelope,
    pub(crate) events: Vec<E>,
}

impl<E> Decoded<'_, E> {
    /// When the commit was written: the time of each of its events.
    pub(crate) fn timestamp(&self) -> DateTime<Utc> {
        self.envelope.timestamp
    }

    /// The aggregate version of the event at `index`.
    pub(crate) fn sequence(&self, index: usize) -> i64 {
        // Versions are bounded by the stream's size; `continuity` rejected any beyond i64.
        i64::try_from(self.envelope.first_sequence + index).unwrap_or(i64::MAX)
    }
}

/// Decodes the events of one commit as events of `A`, with its aggregate id as a uuid.
///
/// # Errors
/// [`ApplyError::Decode`] when an event or the aggregate id does not decode.
pub(crate) fn decode_commit<'a, A: Aggregate>(
    delivery: &Delivery<'a>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<Decoded<'a, A::Event>, ApplyError> {
    let envelope = &delivery.commit.envelope;
    let aggregate_id = Uuid::parse_str(&envelope.aggregate_id).map_err(|e| {
        ApplyError::Decode(
            format!(
                "{} id `{}` is not a uuid: {e}",
                envelope.aggregate_type, envelope.aggregate_id
            )
            .into(),
        )
    })?;
    let events = delivery
        .events::<A>(upcasters)?
        .into_iter()
        .map(|envelope| envelope.payload)
        .collect();
    let position = i64::try_from(delivery.position()).map_err(|_| {
        ApplyError::Decode(format!("position {} too large", delivery.position()).into())
    })?;
    Ok(Decoded {
        position,
        aggregate_id,
        envelope,
        events,
    })
}

/// An index within a commit or an order as an `integer` column.
pub(crate) fn event_index(index: usize) -> Result<i32, ApplyError> {
    i32::try_from(index).map_err(|_| ApplyError::Inconsistent(format!("index {index} too large")))
}

/// What to do with a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Continuity {
    /// The commit follows what was applied: apply it.
    Apply,
    /// Every event of the commit was applied before: skip it.
    AlreadyApplied,
}

/// Decides whether `commit` of the aggregate described as `what` follows `applied`, the
/// last version the model applied of it (`None` when the model never saw it).
///
/// # Errors
/// [`ApplyError::Inconsistent`] when the model never saw the aggregate and the commit
/// is not its first, or when the commit leaves a gap after `applied`.
pub(crate) fn continuity(
    what: &str,
    applied: Option<i64>,
    commit: &CommitEnvelope,
) -> Result<Continuity, ApplyError> {
    if commit.events.is_empty() {
        return Ok(Continuity::AlreadyApplied);
    }
    let id = &commit.aggregate_id;
    let first = i64::try_from(commit.first_sequence)
        .map_err(|_| ApplyError::Inconsistent(format!("{what} {id}: version out of range")))?;
    let last = first + i64::try_from(commit.events.len() - 1).unwrap_or(i64::MAX);
    match applied {
        None if first == 1 => Ok(Continuity::Apply),
        None => Err(ApplyError::Inconsistent(format!(
            "{what} {id} is unknown to the read model, yet a commit of it starts at version {first}"
        ))),
        Some(applied) if last <= applied => Ok(Continuity::AlreadyApplied),
        Some(applied) if first == applied + 1 => Ok(Continuity::Apply),
        Some(applied) => Err(ApplyError::Inconsistent(format!(
            "{what} {id} is at version {applied} in the read model, yet the next commit \
             holds versions {first} to {last}"
        ))),
    }
}
