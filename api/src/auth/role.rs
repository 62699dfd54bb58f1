//! Who a caller is once their access token checks out.

use std::fmt;
use std::str::FromStr;

use domain::Actor;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an account may do; stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Shops: places and pays for its own orders.
    Customer,
    /// Runs the shop: catalog, prices, stock.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
    /// Operates the system: dead letters, replays, stuck sagas.
    Operator,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 4] = [Role::Customer, Role::Admin, Role::Auditor, Role::Operator];

    /// The name stored in the database and carried in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected customer, admin, auditor or operator)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses the exact lowercase name, as stored and as carried in tokens.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| UnknownRole(name.to_owned()))
    }
}

/// The caller behind a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account the token was issued to.
    pub account_id: Uuid,
    /// The account's role when the token was issued.
    pub role: Role,
}

impl Principal {
    /// The actor recorded in the metadata of the commands this caller sends.
    pub fn actor(&self) -> Actor {
        Actor::User(self.account_id)
    }
}

#[cfg(test)]
mod tests;
