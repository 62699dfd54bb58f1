//! The product aggregate: a catalog entry with its sellable variants and prices.
//!
//! A product has one currency, fixed by its first variants, and at least one active
//! variant once created. Retired variants keep their SKU, so a SKU names one variant
//! for ever.
//!
//! SKU uniqueness across the catalog is not decided here: an aggregate only sees its
//! own events. The edge claims each new SKU (see [`ProductCommand::new_skus`]) with a
//! create-only key in a JetStream KV bucket before sending the command; this aggregate
//! only keeps SKUs distinct within one product.

mod command;
mod error;
mod event;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use command::{NewVariant, ProductCommand};
pub use error::ProductError;
pub use event::{ProductEvent, VariantDetails};

use crate::ids::{ProductId, Sku};
use crate::money::{Currency, Money};
use crate::text::required;

/// One variant in the product's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The SKU.
    pub sku: Sku,
    /// The display name.
    pub name: String,
    /// The current unit price.
    pub price: Money,
    /// Whether the variant was retired from sale.
    pub retired: bool,
}

/// The state of a product, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    created: Option<Created>,
}

/// The state of a product that exists; a product that was never created has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Created {
    id: ProductId,
    name: String,
    description: String,
    category: String,
    currency: Currency,
    variants: Vec<Variant>,
    published: bool,
}

impl Product {
    /// The product id, once created.
    pub fn id(&self) -> Option<ProductId> {
        self.created.as_ref().map(|p| p.id)
    }

    /// The product name, once created.
    pub fn name(&self) -> Option<&str> {
        self.created.as_ref().map(|p| p.name.as_str())
    }

    /// The description, once created.
    pub fn description(&self) -> Option<&str> {
        self.created.as_ref().map(|p| p.description.as_str())
    }

    /// The catalog category, once created.
    pub fn category(&self) -> Option<&str> {
        self.created.as_ref().map(|p| p.category.as_str())
    }

    /// The currency of all prices, once created.
    pub fn currency(&self) -> Option<Currency> {
        self.created.as_ref().map(|p| p.currency)
    }

    /// Whether the product is visible in the shop.
    pub fn is_published(&self) -> bool {
        self.created.as_ref().is_some_and(|p| p.published)
    }

    /// All variants, retired ones included, in the order they were added.
    pub fn variants(&self) -> &[Variant] {
        self.created.as_ref().map_or(&[], |p| p.variants.as_slice())
    }

    /// The SKUs of all variants, retired ones included (they stay taken).
    pub fn skus(&self) -> Vec<&Sku> {
        self.variants().iter().map(|v| &v.sku).collect()
    }

    /// Decides which events a command causes, without changing the state.
    ///
    /// # Errors
    /// The [`ProductError`] naming the broken rule; a rejected command has no events.
    pub fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        let Some(product) = &self.created else {
            return match command {
                ProductCommand::CreateProduct {
                    product_id,
                    name,
                    description,
                    category,
                    variants,
                } => create(product_id, name, description, category, variants),
                _ => Err(ProductError::NotFound),
            };
        };
        let product_id = product.id;
        match command {
            ProductCommand::CreateProduct { .. } => Err(ProductError::AlreadyExists),
            ProductCommand::RenameProduct { name } => {
                let name = required(&name, ProductError::EmptyName)?;
                if name == product.name {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::ProductRenamed { product_id, name }])
            }
            ProductCommand::DescribeProduct { description } => {
                let description = description.trim().to_owned();
                if description == product.description {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::ProductDescriptionChanged {
                    product_id,
                    description,
                }])
            }
            ProductCommand::ChangeCategory { category } => {
                let category = required(&category, ProductError::EmptyCategory)?;
                if category == product.category {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::ProductCategoryChanged {
                    product_id,
                    category,
                }])
            }
            ProductCommand::ChangeVariantPrice { sku, price } => {
                check_price(&sku, price, product.currency)?;
                let variant = product.active_variant(&sku)?;
                if variant.price == price {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::VariantPriceChanged {
                    product_id,
                    sku,
                    price,
                }])
            }
            ProductCommand::AddVariant { variant } => {
                let variant = check_variant(variant, product.currency)?;
                if product.variant(&variant.sku).is_some() {
                    return Err(ProductError::DuplicateSku { sku: variant.sku });
                }
                Ok(vec![ProductEvent::VariantAdded {
                    product_id,
                    variant,
                }])
            }
            ProductCommand::RetireVariant { sku } => {
                let variant = product
                    .variant(&sku)
                    .ok_or_else(|| ProductError::UnknownVariant { sku: sku.clone() })?;
                // Retiring is idempotent: the variant is already where the caller wants it.
                if variant.retired {
                    return Ok(vec![]);
                }
                if product.active_variants().count() == 1 {
                    return Err(ProductError::LastActiveVariant { sku });
                }
                Ok(vec![ProductEvent::VariantRetired { product_id, sku }])
            }
            ProductCommand::PublishProduct => {
                if product.published {
                    return Ok(vec![]);
                }
                // Retiring the last active variant is refused, but histories written before
                // that rule may still hold a product with none.
                if product.active_variants().next().is_none() {
                    return Err(ProductError::NoActiveVariant);
                }
                Ok(vec![ProductEvent::ProductPublished { product_id }])
            }
            ProductCommand::UnpublishProduct => {
                if !product.published {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::ProductUnpublished { product_id }])
            }
        }
    }
}

impl Created {
    fn variant(&self, sku: &Sku) -> Option<&Variant> {
        self.variants.iter().find(|v| &v.sku == sku)
    }

    fn variant_mut(&mut self, sku: &Sku) -> Option<&mut Variant> {
        self.variants.iter_mut().find(|v| &v.sku == sku)
    }

    fn active_variants(&self) -> impl Iterator<Item = &Variant> {
        self.variants.iter().filter(|v| !v.retired)
    }

    fn active_variant(&self, sku: &Sku) -> Result<&Variant, ProductError> {
        match self.variant(sku) {
            None => Err(ProductError::UnknownVariant { sku: sku.clone() }),
            Some(variant) if variant.retired => {
                Err(ProductError::VariantRetired { sku: sku.clone() })
            }
            Some(variant) => Ok(variant),
        }
    }
}

fn create(
    product_id: ProductId,
    name: String,
    description: String,
    category: String,
    variants: Vec<NewVariant>,
) -> Result<Vec<ProductEvent>, ProductError> {
    let name = required(&name, ProductError::EmptyName)?;
    let category = required(&category, ProductError::EmptyCategory)?;
    let currency = variants
        .first()
        .ok_or(ProductError::NoVariants)?
        .price
        .currency;
    let mut checked: Vec<VariantDetails> = Vec::with_capacity(variants.len());
    for variant in variants {
        let variant = check_variant(variant, currency)?;
        if checked.iter().any(|v| v.sku == variant.sku) {
            return Err(ProductError::DuplicateSku { sku: variant.sku });
        }
        checked.push(variant);
    }
    Ok(vec![ProductEvent::ProductCreated {
        product_id,
        name,
        description: description.trim().to_owned(),
        category,
        currency,
        variants: checked,
    }])
}

fn check_price(sku: &Sku, price: Money, currency: Currency) -> Result<(), ProductError> {
    if price.currency != currency {
        return Err(ProductError::CurrencyMismatch {
            expected: currency,
            found: price.currency,
        });
    }
    if !price.is_positive() {
        return Err(ProductError::NonPositivePrice { sku: sku.clone() });
    }
    Ok(())
}

fn check_variant(variant: NewVariant, currency: Currency) -> Result<VariantDetails, ProductError> {
    let name = required(
        &variant.name,
        ProductError::EmptyVariantName {
            sku: variant.sku.clone(),
        },
    )?;
    check_price(&variant.sku, variant.price, currency)?;
    Ok(VariantDetails {
        sku: variant.sku,
        name,
        price: variant.price,
    })
}

impl Aggregate for Product {
    const TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ProductCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ProductError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ProductEvent) {
        if let ProductEvent::ProductCreated {
            product_id,
            name,
            description,
            category,
            currency,
            variants,
        } = event
        {
            self.created = Some(Created {
                id: product_id,
                name,
                description,
                category,
                currency,
                variants: variants.into_iter().map(Variant::from).collect(),
                published: false,
            });
            return;
        }
        // Every other event follows creation; one without it changes nothing.
        let Some(product) = self.created.as_mut() else {
            return;
        };
        match event {
            ProductEvent::ProductCreated { .. } => {}
            ProductEvent::ProductRenamed { name, .. } => product.name = name,
            ProductEvent::ProductDescriptionChanged { description, .. } => {
                product.description = description;
            }
            ProductEvent::ProductCategoryChanged { category, .. } => product.category = category,
            ProductEvent::VariantPriceChanged { sku, price, .. } => {
                if let Some(variant) = product.variant_mut(&sku) {
                    variant.price = price;
                }
            }
            ProductEvent::VariantAdded { variant, .. } => product.variants.push(variant.into()),
            ProductEvent::VariantRetired { sku, .. } => {
                if let Some(variant) = product.variant_mut(&sku) {
                    variant.retired = true;
                }
            }
            ProductEvent::ProductPublished { .. } => product.published = true,
            ProductEvent::ProductUnpublished { .. } => product.published = false,
        }
    }
}

impl From<VariantDetails> for Variant {
    fn from(details: VariantDetails) -> Self {
        Self {
            sku: details.sku,
            name: details.name,
            price: details.price,
            retired: false,
        }
    }
}

/// Upcasters for stored product events; no product event has changed shape yet.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

#[cfg(test)]
mod tests;
