//! What happened to a product.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{ProductId, Sku};
use crate::money::{Currency, Money};

/// A variant as recorded when the product was created or the variant added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantDetails {
    /// The variant's SKU.
    pub sku: Sku,
    /// The display name.
    pub name: String,
    /// The unit price.
    pub price: Money,
}

/// An event of the product aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductEvent {
    /// A product was added to the catalog, unpublished.
    ProductCreated {
        /// The product.
        product_id: ProductId,
        /// The display name.
        name: String,
        /// The description.
        description: String,
        /// The catalog category.
        category: String,
        /// The currency of every price of this product.
        currency: Currency,
        /// The initial variants.
        variants: Vec<VariantDetails>,
    },
    /// The product was renamed.
    ProductRenamed {
        /// The product.
        product_id: ProductId,
        /// The new name.
        name: String,
    },
    /// The description was replaced.
    ProductDescriptionChanged {
        /// The product.
        product_id: ProductId,
        /// The new description.
        description: String,
    },
    /// The product moved to another category.
    ProductCategoryChanged {
        /// The product.
        product_id: ProductId,
        /// The new category.
        category: String,
    },
    /// A variant got a new price.
    VariantPriceChanged {
        /// The product.
        product_id: ProductId,
        /// The variant.
        sku: Sku,
        /// The new price.
        price: Money,
    },
    /// A variant was added.
    VariantAdded {
        /// The product.
        product_id: ProductId,
        /// The new variant.
        variant: VariantDetails,
    },
    /// A variant was retired from sale.
    VariantRetired {
        /// The product.
        product_id: ProductId,
        /// The variant.
        sku: Sku,
    },
    /// The product became visible in the shop.
    ProductPublished {
        /// The product.
        product_id: ProductId,
    },
    /// The product was hidden from the shop.
    ProductUnpublished {
        /// The product.
        product_id: ProductId,
    },
}

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> String {
        let name = match self {
            ProductEvent::ProductCreated { .. } => "ProductCreated",
            ProductEvent::ProductRenamed { .. } => "ProductRenamed",
            ProductEvent::ProductDescriptionChanged { .. } => "ProductDescriptionChanged",
            ProductEvent::ProductCategoryChanged { .. } => "ProductCategoryChanged",
            ProductEvent::VariantPriceChanged { .. } => "VariantPriceChanged",
            ProductEvent::VariantAdded { .. } => "VariantAdded",
            ProductEvent::VariantRetired { .. } => "VariantRetired",
            ProductEvent::ProductPublished { .. } => "ProductPublished",
            ProductEvent::ProductUnpublished { .. } => "ProductUnpublished",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
