//! Helpers for folding a batch of commits: checks every projection makes the same way.

use std::collections::HashSet;
use std::hash::Hash;

use crate::projection::{ApplyError, Delivery};

/// Refuses a commit of another aggregate type than the projection consumes.
pub(crate) fn expect_aggregate_type(
    delivery: &Delivery<'_>,
    expected: &str,
) -> Result<(), ApplyError> {
    if delivery.aggregate_type() == expected {
        Ok(())
    } else {
        Err(ApplyError::Decode(
            format!(
                "commit at position {} is a `{}` commit, expected `{expected}`",
                delivery.position(),
                delivery.aggregate_type()
            )
            .into(),
        ))
    }
}

/// The stream position of a commit as the `bigint` it is stored as.
pub(crate) fn position_of(delivery: &Delivery<'_>) -> Result<i64, ApplyError> {
    i64::try_from(delivery.position()).map_err(|_| {
        ApplyError::Inconsistent(format!(
            "position {} does not fit a bigint",
            delivery.position()
        ))
    })
}

/// The distinct values, in first-seen order.
pub(crate) fn distinct<T: Clone + Eq + Hash>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    values.filter(|value| seen.insert(value.clone())).collect()
}
