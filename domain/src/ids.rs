//! Identifiers: `Uuid` newtypes for entities, and the validated `Sku`.
//!
//! The domain never creates ids itself; callers pass them in commands, so
//! decisions stay deterministic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Wraps an existing uuid.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The wrapped uuid.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies a product in the catalog.
    ProductId
);
uuid_id!(
    /// Identifies an order.
    OrderId
);
uuid_id!(
    /// Identifies a payment (one authorisation with the provider).
    PaymentId
);
uuid_id!(
    /// Identifies a customer.
    CustomerId
);
uuid_id!(
    /// Identifies one refund of a payment; repeating a refund id has no further effect.
    RefundId
);

/// The longest SKU accepted.
pub const SKU_MAX_LEN: usize = 64;

/// A stock keeping unit such as `TSHIRT-RED-M`: 1 to 64 characters of `[A-Za-z0-9._-]`.
///
/// It names one sellable variant, and it is the aggregate id of that variant's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

/// Why a text is not a SKU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkuError {
    /// The SKU is empty.
    #[error("a SKU cannot be empty")]
    Empty,
    /// The SKU is longer than [`SKU_MAX_LEN`].
    #[error("a SKU has at most {SKU_MAX_LEN} characters, this one has {0}")]
    TooLong(usize),
    /// The SKU holds a character outside `[A-Za-z0-9._-]`.
    #[error("a SKU may only hold ASCII letters, digits, `.`, `_` and `-`, not {0:?}")]
    InvalidCharacter(char),
}

impl Sku {
    /// Checks and wraps a SKU.
    ///
    /// # Errors
    /// [`SkuError`] names the first broken rule.
    pub fn parse(sku: impl Into<String>) -> Result<Self, SkuError> {
        let sku = sku.into();
        if sku.is_empty() {
            return Err(SkuError::Empty);
        }
        if let Some(bad) = sku
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(SkuError::InvalidCharacter(bad));
        }
        // Only ASCII is left, so the byte length is the character count.
        if sku.len() > SKU_MAX_LEN {
            return Err(SkuError::TooLong(sku.len()));
        }
        Ok(Self(sku))
    }

    /// The SKU text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Sku {
    type Err = SkuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Sku {
    type Error = SkuError;

    fn try_from(sku: String) -> Result<Self, Self::Error> {
        Self::parse(sku)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> Self {
        sku.0
    }
}

impl AsRef<str> for Sku {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_short_ascii_codes() {
        assert_eq!(Sku::parse("TSHIRT-RED-M").unwrap().as_str(), "TSHIRT-RED-M");
        assert!(Sku::parse("a.b_c-9").is_ok());
        assert_eq!(Sku::parse(""), Err(SkuError::Empty));
        assert_eq!(Sku::parse("RED M"), Err(SkuError::InvalidCharacter(' ')));
        assert_eq!(Sku::parse("CAFÉ"), Err(SkuError::InvalidCharacter('É')));
        assert!(Sku::parse("X".repeat(SKU_MAX_LEN)).is_ok());
        assert_eq!(
            Sku::parse("X".repeat(SKU_MAX_LEN + 1)),
            Err(SkuError::TooLong(SKU_MAX_LEN + 1))
        );
    }

    #[test]
    fn an_invalid_sku_does_not_deserialise() {
        assert!(serde_json::from_str::<Sku>(r#""bad sku""#).is_err());
        let sku: Sku = serde_json::from_str(r#""MUG-01""#).unwrap();
        assert_eq!(serde_json::to_string(&sku).unwrap(), r#""MUG-01""#);
    }

    #[test]
    fn ids_serialise_as_bare_uuids() {
        let id = OrderId(Uuid::nil());
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#""00000000-0000-0000-0000-000000000000""#
        );
        assert_eq!(id.to_string().parse::<OrderId>(), Ok(id));
    }
}
