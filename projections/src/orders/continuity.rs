//! Where a commit stands relative to what a read model already applied of its aggregate.
//!
//! Read models keep the aggregate version they last applied per aggregate, which makes
//! `apply` idempotent (a replayed commit is skipped) and lets it notice a commit that
//! does not follow the previous one (a gap means a lost or misrouted commit).

use infra_nats::CommitEnvelope;

use crate::projection::ApplyError;

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
