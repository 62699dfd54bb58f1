//! Where a dead-letter entry stands, as the `status` column spells it.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The life of an entry in `public.dead_letters`: parked until an operator, a rebuild
/// or a later saga round resolves it. The strings are the ones the table's `CHECK`
/// constraint allows (migration 0002); a test holds the two together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterStatus {
    /// Waiting: the consumer passes over its aggregate from the head on.
    Parked,
    /// Applied by an operator's retry (for a saga: brought to rest by an operator).
    Applied,
    /// The head of a sequence an operator skipped: left unapplied on purpose.
    Skipped,
    /// Part of a sequence an operator discarded: left unapplied on purpose.
    Discarded,
    /// Replaced: the read model it described was rebuilt or dropped, or a later
    /// compensation round of the same saga was parked.
    Superseded,
}

impl DeadLetterStatus {
    /// Every status, in the order the migration lists them.
    pub const ALL: [DeadLetterStatus; 5] = [
        DeadLetterStatus::Parked,
        DeadLetterStatus::Applied,
        DeadLetterStatus::Skipped,
        DeadLetterStatus::Discarded,
        DeadLetterStatus::Superseded,
    ];

    /// The value stored in the `status` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Parked => "parked",
            DeadLetterStatus::Applied => "applied",
            DeadLetterStatus::Skipped => "skipped",
            DeadLetterStatus::Discarded => "discarded",
            DeadLetterStatus::Superseded => "superseded",
        }
    }
}

/// A `status` value this code does not know: the table and the enum disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dead-letter status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for DeadLetterStatus {
    type Err = UnknownStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| UnknownStatus(value.to_owned()))
    }
}

/// For decoding the column (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for DeadLetterStatus {
    type Error = UnknownStatus;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl fmt::Display for DeadLetterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialised as the column's string, so JSON output reads as the table does.
impl Serialize for DeadLetterStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_back_from_its_string() {
        for status in DeadLetterStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert_eq!(
            "retried".parse::<DeadLetterStatus>(),
            Err(UnknownStatus("retried".to_owned()))
        );
    }

    #[test]
    fn the_statuses_are_the_ones_the_table_allows() {
        // No later migration touches this constraint.
        let migration = include_str!("../../migrations/0002_projector_runtime.sql");
        let check = migration
            .split("CHECK (status IN (")
            .nth(1)
            .and_then(|rest| rest.split("))").next())
            .expect("the dead_letters status CHECK constraint");
        let allowed: Vec<&str> = check
            .split(',')
            .map(|value| value.trim().trim_matches('\''))
            .collect();
        let ours: Vec<&str> = DeadLetterStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(allowed, ours);
    }
}
