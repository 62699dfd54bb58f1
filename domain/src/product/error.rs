//! Why a product command was rejected.

use crate::error_code::ErrorCode;
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

impl ErrorCode for ProductError {
    fn code(&self) -> &'static str {
        match self {
            ProductError::NotFound => "NOT_FOUND",
            ProductError::AlreadyExists => "ALREADY_EXISTS",
            ProductError::EmptyName => "EMPTY_NAME",
            ProductError::EmptyCategory => "EMPTY_CATEGORY",
            ProductError::NoVariants => "NO_VARIANTS",
            ProductError::EmptyVariantName { .. } => "EMPTY_VARIANT_NAME",
            ProductError::NonPositivePrice { .. } => "NON_POSITIVE_PRICE",
            ProductError::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            ProductError::DuplicateSku { .. } => "DUPLICATE_SKU",
            ProductError::UnknownVariant { .. } => "UNKNOWN_VARIANT",
            ProductError::VariantRetired { .. } => "VARIANT_RETIRED",
            ProductError::LastActiveVariant { .. } => "LAST_ACTIVE_VARIANT",
            ProductError::NoActiveVariant => "NO_ACTIVE_VARIANT",
        }
    }
}
