//! Opaque object ids: `gid://shopstream/<Type>/<uuid>`, as Shopify spells them.
//!
//! Clients must treat them as opaque strings; the type inside lets the API refuse an
//! order id where a product id belongs instead of looking up the wrong thing.

use domain::{OrderId, PaymentId, ProductId};
use uuid::Uuid;

use super::error::ApiError;

const PREFIX: &str = "gid://shopstream/";

/// An object type that has a global id.
pub trait GlobalId: Sized {
    /// The type name inside the id (`Order`).
    const TYPE: &'static str;
    /// The id's uuid.
    fn uuid(&self) -> Uuid;
    /// The id from its uuid.
    fn from_uuid(uuid: Uuid) -> Self;

    /// The opaque id clients see.
    fn to_global(&self) -> async_graphql::ID {
        async_graphql::ID(format!("{PREFIX}{}/{}", Self::TYPE, self.uuid()))
    }

    /// Parses an id a client sent.
    ///
    /// # Errors
    /// [`ApiError::BadUserInput`] when it is not a global id of this type.
    fn from_global(id: &async_graphql::ID) -> Result<Self, ApiError> {
        let malformed = || {
            ApiError::bad_input(format!(
                "`{}` is not a {} id",
                truncated(id.as_str()),
                Self::TYPE
            ))
        };
        let rest = id.as_str().strip_prefix(PREFIX).ok_or_else(malformed)?;
        let (kind, uuid) = rest.split_once('/').ok_or_else(malformed)?;
        if kind != Self::TYPE {
            return Err(malformed());
        }
        Uuid::parse_str(uuid)
            .map(Self::from_uuid)
            .map_err(|_| malformed())
    }
}

/// At most 64 characters of client input, for error messages.
pub use application::text::truncated;

macro_rules! global_id {
    ($type:ty, $name:literal) => {
        impl GlobalId for $type {
            const TYPE: &'static str = $name;
            fn uuid(&self) -> Uuid {
                self.0
            }
            fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

global_id!(ProductId, "Product");
global_id!(OrderId, "Order");
global_id!(PaymentId, "Payment");

/// A customer account's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountId(pub Uuid);
global_id!(AccountId, "Account");

/// A cart's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartId(pub Uuid);
global_id!(CartId, "Cart");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_back_as_the_same_object() {
        let order = OrderId(Uuid::from_u128(42));
        assert_eq!(OrderId::from_global(&order.to_global()).unwrap(), order);
    }

    #[test]
    fn an_id_of_another_type_or_shape_is_bad_input() {
        let product = ProductId(Uuid::from_u128(42)).to_global();
        for id in [
            product,
            async_graphql::ID("42".into()),
            async_graphql::ID("gid://shopstream/Order/not-a-uuid".into()),
            async_graphql::ID("gid://shopstream/Order".into()),
            async_graphql::ID("x".repeat(10_000)),
        ] {
            let error = OrderId::from_global(&id).unwrap_err();
            assert_eq!(error.code(), "BAD_USER_INPUT");
            assert!(error.message().len() < 120, "{}", error.message());
        }
    }
}
