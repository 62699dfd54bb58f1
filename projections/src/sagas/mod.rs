//! The sagas read model: where each order's saga stands, who drives it, and every
//! decision it recorded, for operators.
//!
//! [`SagasProjection`] consumes the `order_saga` aggregate and keeps, in the `sagas`
//! schema:
//! - `instances`: one row per saga (its id is its order's id) with its phase, the reason
//!   it compensates, the compensation step that failed and its error, the deadline of a
//!   forward phase, its owner, who cancelled the order, how many compensation rounds it
//!   started, the amount, and the aggregate version and stream position last applied;
//! - `timeline`: one row per saga event, keyed by saga id and aggregate version, with
//!   the event's payload as JSON.
//!
//! The fold is the domain's own: each row keeps the saga's state as
//! [`OrderSaga`](domain::saga::OrderSaga) serialises it, and each event is applied with
//! `OrderSaga::apply`, so the read model cannot disagree with the aggregate. The card
//! token is withheld from the state and the timeline: it stays with the provider.
//!
//! Times are those of the commits. The query functions ([`list`], [`get`], [`timeline`],
//! [`counts`]) read the live schema for the admin API and CLI.

mod projection;
mod queries;

use std::fmt;
use std::str::FromStr;

use domain::order::Canceller;
use domain::saga::Owner;

pub use projection::SagasProjection;
pub use queries::{
    counts, get, list, timeline, SagaFilter, SagaSummary, SagaTimelineEntry, COMPENSATION_STALL,
};

use crate::orders::UnknownState;

/// Where a saga is: the words of [`Phase::as_str`](domain::saga::Phase::as_str), without
/// the data each phase carries (the summary has it in its own fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaPhase {
    /// Reserving stock for every line.
    Reserving,
    /// Waiting for the payment provider to authorise.
    Authorising,
    /// Capturing, committing the reservations, confirming the order.
    Completing,
    /// Confirmed, paid and committed. At rest.
    Completed,
    /// Undoing whatever may have been done.
    Compensating,
    /// Everything was undone and the order cancelled. At rest.
    Compensated,
    /// A compensation kept failing; parked for an operator. At rest.
    CompensationFailed,
}

impl SagaPhase {
    /// Every phase, in the order a saga goes through them.
    pub const ALL: [SagaPhase; 7] = [
        SagaPhase::Reserving,
        SagaPhase::Authorising,
        SagaPhase::Completing,
        SagaPhase::Completed,
        SagaPhase::Compensating,
        SagaPhase::Compensated,
        SagaPhase::CompensationFailed,
    ];

    /// The phase as stored and shown, the same word as the domain's `Phase::as_str`.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaPhase::Reserving => "reserving",
            SagaPhase::Authorising => "authorising",
            SagaPhase::Completing => "completing",
            SagaPhase::Completed => "completed",
            SagaPhase::Compensating => "compensating",
            SagaPhase::Compensated => "compensated",
            SagaPhase::CompensationFailed => "compensation_failed",
        }
    }

    /// True when no driver works on the saga: completed, compensated or parked.
    pub fn is_at_rest(self) -> bool {
        matches!(
            self,
            SagaPhase::Completed | SagaPhase::Compensated | SagaPhase::CompensationFailed
        )
    }
}

impl fmt::Display for SagaPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SagaPhase {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|phase| phase.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// What operators list sagas by. Unlike [`SagaPhase`], the states overlap: a saga
/// waiting on the provider is also running, and may be stuck past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Not at rest: reserving, authorising, completing or compensating.
    Running,
    /// Authorising: waiting on the payment provider.
    Waiting,
    /// A forward phase whose deadline has passed, or compensating with no event for
    /// more than [`COMPENSATION_STALL`]: its driver may be gone.
    StuckPastDeadline,
    /// Parked for an operator after a compensation kept failing.
    CompensationFailed,
    /// Completed.
    Completed,
    /// Compensated.
    Compensated,
}

impl SagaState {
    /// Every state, in the order operators read them.
    pub const ALL: [SagaState; 6] = [
        SagaState::Running,
        SagaState::Waiting,
        SagaState::StuckPastDeadline,
        SagaState::CompensationFailed,
        SagaState::Completed,
        SagaState::Compensated,
    ];

    /// The state as a snake_case word, such as `stuck_past_deadline`.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Waiting => "waiting",
            SagaState::StuckPastDeadline => "stuck_past_deadline",
            SagaState::CompensationFailed => "compensation_failed",
            SagaState::Completed => "completed",
            SagaState::Compensated => "compensated",
        }
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SagaState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// An owner as stored: `trigger:<position>` or `operator:<actor>`.
pub(crate) fn owner_text(owner: &Owner) -> String {
    match owner {
        Owner::Trigger(position) => format!("trigger:{position}"),
        Owner::Operator(actor) => format!("operator:{actor}"),
    }
}

/// Parses an owner stored by [`owner_text`].
pub(crate) fn parse_owner(text: &str) -> Result<Owner, UnknownState> {
    if let Some(position) = text.strip_prefix("trigger:") {
        return position
            .parse()
            .map(Owner::Trigger)
            .map_err(|_| UnknownState(text.to_owned()));
    }
    text.strip_prefix("operator:")
        .map(|actor| Owner::Operator(actor.to_owned()))
        .ok_or_else(|| UnknownState(text.to_owned()))
}

/// Who cancelled, as stored (the words of the orders model).
pub(crate) fn canceller_text(by: Canceller) -> &'static str {
    match by {
        Canceller::Customer => "customer",
        Canceller::System => "system",
        Canceller::Admin => "admin",
    }
}

/// Parses a canceller stored by [`canceller_text`].
pub(crate) fn parse_canceller(text: &str) -> Result<Canceller, UnknownState> {
    [Canceller::Customer, Canceller::System, Canceller::Admin]
        .into_iter()
        .find(|by| canceller_text(*by) == text)
        .ok_or_else(|| UnknownState(text.to_owned()))
}
