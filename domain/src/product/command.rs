//! What callers may ask of a product.

use serde::{Deserialize, Serialize};

use crate::ids::{ProductId, Sku};
use crate::money::Money;

/// A variant as given when creating a product or adding to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVariant {
    /// The variant's SKU, unique within the product (and, at the edge, the catalog).
    pub sku: Sku,
    /// A display name such as "Red, M".
    pub name: String,
    /// The unit price; positive, in the product's currency.
    pub price: Money,
}

/// A command to the product aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductCommand {
    /// Adds a new product to the catalog, unpublished.
    CreateProduct {
        /// The new product's id.
        product_id: ProductId,
        /// The display name; not blank.
        name: String,
        /// Free text; may be empty.
        description: String,
        /// The catalog category; not blank.
        category: String,
        /// At least one variant, all in one currency, with distinct SKUs.
        variants: Vec<NewVariant>,
    },
    /// Gives the product a new name.
    RenameProduct {
        /// The new name; not blank.
        name: String,
    },
    /// Replaces the description.
    DescribeProduct {
        /// The new description; may be empty.
        description: String,
    },
    /// Moves the product to another category.
    ChangeCategory {
        /// The new category; not blank.
        category: String,
    },
    /// Sets the price of one active variant.
    ChangeVariantPrice {
        /// The variant to reprice.
        sku: Sku,
        /// The new price; positive, in the product's currency.
        price: Money,
    },
    /// Adds a variant to an existing product.
    AddVariant {
        /// The variant to add.
        variant: NewVariant,
    },
    /// Stops selling one variant; its SKU stays taken.
    RetireVariant {
        /// The variant to retire.
        sku: Sku,
    },
    /// Makes the product visible in the shop.
    PublishProduct,
    /// Hides the product from the shop.
    UnpublishProduct,
}

impl ProductCommand {
    /// The SKUs this command would introduce, which the edge must claim catalog-wide
    /// (in the JetStream KV bucket) before sending it.
    pub fn new_skus(&self) -> Vec<&Sku> {
        match self {
            ProductCommand::CreateProduct { variants, .. } => {
                variants.iter().map(|variant| &variant.sku).collect()
            }
            ProductCommand::AddVariant { variant } => vec![&variant.sku],
            _ => Vec::new(),
        }
    }
}
