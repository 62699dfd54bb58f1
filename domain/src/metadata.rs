//! Who asked for a command, and why: the metadata every stored event carries.
//!
//! The event store adds the per-event facts (event id, timestamp, global position);
//! this module holds what the caller knows when it sends a command.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Keys of the cqrs-es metadata map, shared by the event store and its readers.
pub mod keys {
    /// The id of one stored event.
    pub const EVENT_ID: &str = "event_id";
    /// The id of the command that caused the event; the idempotency key.
    pub const COMMAND_ID: &str = "command_id";
    /// The id shared by everything one user action caused.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// The id of the message that directly caused the command.
    pub const CAUSATION_ID: &str = "causation_id";
    /// Who caused the command, as `user:<uuid>` or `system:<name>`.
    pub const ACTOR: &str = "actor";
    /// When the event was stored.
    pub const TIMESTAMP: &str = "timestamp";
    /// The stream sequence of the commit that holds the event: its global position.
    pub const POSITION: &str = "position";
}

/// Who caused a command: a user, or the system itself (the saga, a projector).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// A signed-in user.
    User(Uuid),
    /// A named part of the system, such as `saga`.
    System(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::System(name) => write!(f, "system:{name}"),
        }
    }
}

impl std::str::FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("user", id)) => id
                .parse()
                .map(Actor::User)
                .map_err(|e| format!("bad user id in actor `{s}`: {e}")),
            Some(("system", name)) if !name.is_empty() => Ok(Actor::System(name.to_owned())),
            _ => Err(format!(
                "`{s}` is not an actor (user:<uuid> or system:<name>)"
            )),
        }
    }
}

/// The metadata a caller attaches to one command.
///
/// `command_id` is the idempotency key: the same id sent twice has its effect once.
/// `correlation_id` ties together everything one user action caused; `causation_id`
/// names the message (command or event) that directly caused this command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMetadata {
    /// The idempotency key of this command.
    pub command_id: Uuid,
    /// Shared by everything one user action caused.
    pub correlation_id: Uuid,
    /// The message that directly caused this command.
    pub causation_id: Uuid,
    /// Who caused the command.
    pub actor: Actor,
}

impl CommandMetadata {
    /// A command that starts a new flow: it is its own correlation and cause.
    pub fn new(actor: Actor) -> Self {
        let id = Uuid::now_v7();
        Self {
            command_id: id,
            correlation_id: id,
            causation_id: id,
            actor,
        }
    }

    /// Uses a client's idempotency key as the command id.
    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = command_id;
        self
    }

    /// A command caused by an earlier message of the same flow.
    pub fn caused_by(&self, causation_id: Uuid, command_id: Uuid) -> Self {
        Self {
            command_id,
            correlation_id: self.correlation_id,
            causation_id,
            actor: self.actor.clone(),
        }
    }

    /// The cqrs-es metadata map handed to `CqrsFramework::execute_with_metadata`.
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (keys::COMMAND_ID.to_owned(), self.command_id.to_string()),
            (
                keys::CORRELATION_ID.to_owned(),
                self.correlation_id.to_string(),
            ),
            (keys::CAUSATION_ID.to_owned(), self.causation_id.to_string()),
            (keys::ACTOR.to_owned(), self.actor.to_string()),
        ])
    }

    /// Reads the metadata back from a cqrs-es map.
    ///
    /// # Errors
    /// Names the missing or malformed key.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, String> {
        let uuid = |key: &str| -> Result<Uuid, String> {
            let value = map
                .get(key)
                .ok_or_else(|| format!("metadata lacks `{key}`"))?;
            value
                .parse()
                .map_err(|e| format!("metadata `{key}` is not a uuid: {e}"))
        };
        let actor = map
            .get(keys::ACTOR)
            .ok_or_else(|| format!("metadata lacks `{}`", keys::ACTOR))?
            .parse()?;
        Ok(Self {
            command_id: uuid(keys::COMMAND_ID)?,
            correlation_id: uuid(keys::CORRELATION_ID)?,
            causation_id: uuid(keys::CAUSATION_ID)?,
            actor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_survives_the_cqrs_es_map() {
        let meta = CommandMetadata::new(Actor::User(Uuid::now_v7()));
        assert_eq!(CommandMetadata::from_map(&meta.to_map()), Ok(meta));
    }

    #[test]
    fn a_caused_command_keeps_the_correlation() {
        let first = CommandMetadata::new(Actor::System("saga".into()));
        let event_id = Uuid::now_v7();
        let next = first.caused_by(event_id, Uuid::now_v7());
        assert_eq!(next.correlation_id, first.correlation_id);
        assert_eq!(next.causation_id, event_id);
        assert_ne!(next.command_id, first.command_id);
    }

    #[test]
    fn actors_round_trip_through_text() {
        for actor in [Actor::User(Uuid::nil()), Actor::System("saga".into())] {
            assert_eq!(actor.to_string().parse::<Actor>(), Ok(actor));
        }
        assert!("nobody".parse::<Actor>().is_err());
    }
}
