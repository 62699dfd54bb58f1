//! Why a product command was rejected.

use crate::ids::Sku;
use crate::money::Currency;

/// A broken product rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// The command needs a product, and this one was never created.
    #[error("product not found")]
    NotFound,
    /// `CreateProduct` was sent to a product that already exists.
    #[error("product already exists")]
    AlreadyExists,
    /// The product name is blank.
    #[error("a product name cannot be blank")]
    EmptyName,
    /// The category is blank.
    #[error("a product category cannot be blank")]
    EmptyCategory,
    /// `CreateProduct` came without variants.
    #[error("a product needs at least one variant")]
    NoVariants,
    /// A variant name is blank.
    #[error("variant {sku} needs a name")]
    EmptyVariantName {
        /// The variant.
        sku: Sku,
    },
    /// A price is zero or negative.
    #[error("variant {sku} needs a positive price")]
    NonPositivePrice {
        /// The variant.
        sku: Sku,
    },
    /// A price is not in the product's currency.
    #[error("prices of this product are in {expected}, not {found}")]
    CurrencyMismatch {
        /// The product's currency.
        expected: Currency,
        /// The currency given.
        found: Currency,
    },
    /// A SKU appears twice in the product.
    #[error("SKU {sku} is already used by this product")]
    DuplicateSku {
        /// The repeated SKU.
        sku: Sku,
    },
    /// No variant of this product has the SKU.
    #[error("this product has no variant {sku}")]
    UnknownVariant {
        /// The SKU asked for.
        sku: Sku,
    },
    /// The variant is retired and can no longer change.
    #[error("variant {sku} is retired")]
    VariantRetired {
        /// The retired variant.
        sku: Sku,
    },
    /// Retiring the variant would leave the product with nothing to sell.
    #[error("variant {sku} is the last active variant and cannot be retired")]
    LastActiveVariant {
        /// The variant.
        sku: Sku,
    },
    /// Publishing needs at least one active variant.
    #[error("a product without active variants cannot be published")]
    NoActiveVariant,
}
