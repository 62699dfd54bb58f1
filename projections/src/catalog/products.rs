//! Folds product events into the `products` and `variants` tables.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::product::{ProductEvent, VariantDetails};
use domain::{Money, ProductId};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::projection::ApplyError;

/// A product as the catalog holds it while a batch is folded.
#[derive(Debug, Clone)]
struct ProductRow {
    name: String,
    description: String,
    category: String,
    currency: String,
    published: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_sequence: i64,
    /// In the order they were added; the index is the `ordinal` column.
    variants: Vec<VariantRow>,
    changed: bool,
}

#[derive(Debug, Clone)]
struct VariantRow {
    sku: String,
    name: String,
    price_minor: i64,
    retired: bool,
}

impl ProductRow {
    /// The lowest price of an active variant.
    fn price_minor(&self) -> Option<i64> {
        self.variants
            .iter()
            .filter(|v| !v.retired)
            .map(|v| v.price_minor)
            .min()
    }

    fn variant_mut(&mut self, product_id: Uuid, sku: &str) -> Result<&mut VariantRow, ApplyError> {
        self.variants
            .iter_mut()
            .find(|v| v.sku == sku)
            .ok_or_else(|| {
                ApplyError::Inconsistent(format!("product {product_id} has no variant {sku}"))
            })
    }
}

/// The products a batch touches, loaded, then changed in stream order, then written.
#[derive(Debug, Default)]
pub(super) struct ProductFold {
    products: HashMap<Uuid, ProductRow>,
    /// The product owning each SKU that is loaded or claimed in the batch.
    sku_owners: HashMap<String, Uuid>,
}

impl ProductFold {
    /// Loads the products `product_ids` with their variants, and the owners of the SKUs
    /// `new_skus` that the batch creates.
    pub(super) async fn load(
        conn: &mut PgConnection,
        product_ids: &[Uuid],
        new_skus: &[String],
    ) -> Result<Self, ApplyError> {
        let mut fold = Self::default();
        let products = sqlx::query(
            "SELECT product_id, name, description, category, currency, published, created_at,
                    updated_at, last_sequence
             FROM products WHERE product_id = ANY($1)",
        )
        .bind(product_ids)
        .fetch_all(&mut *conn)
        .await?;
        for row in products {
            let product = ProductRow {
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                category: row.try_get("category")?,
                currency: row.try_get("currency")?,
                published: row.try_get("published")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                last_sequence: row.try_get("last_sequence")?,
                variants: Vec::new(),
                changed: false,
            };
            fold.products.insert(row.try_get("product_id")?, product);
        }
        let variants = sqlx::query(
            "SELECT sku, product_id, name, price_minor, retired
             FROM variants WHERE product_id = ANY($1) OR sku = ANY($2)
             ORDER BY product_id, ordinal",
        )
        .bind(product_ids)
        .bind(new_skus)
        .fetch_all(&mut *conn)
        .await?;
        for row in variants {
            let sku: String = row.try_get("sku")?;
            let product_id: Uuid = row.try_get("product_id")?;
            fold.sku_owners.insert(sku.clone(), product_id);
            // Variants of products outside the batch were loaded only for their owner.
            if let Some(product) = fold.products.get_mut(&product_id) {
                product.variants.push(VariantRow {
                    sku,
                    name: row.try_get("name")?,
                    price_minor: row.try_get("price_minor")?,
                    retired: row.try_get("retired")?,
                });
            }
        }
        Ok(fold)
    }

    /// Applies the event at aggregate version `sequence` of product `product_id`,
    /// committed at `timestamp`. An event at or below the version already applied (a
    /// replayed range) changes nothing.
    ///
    /// # Errors
    /// [`ApplyError::Inconsistent`] when the event skips a version, names another
    /// product, comes before the product was created, creates it twice, names a variant
    /// the product does not have, claims a SKU another variant has, or prices a variant
    /// in another currency.
    pub(super) fn apply(
        &mut self,
        product_id: Uuid,
        sequence: usize,
        timestamp: DateTime<Utc>,
        event: &ProductEvent,
    ) -> Result<(), ApplyError> {
        let inconsistent = |what: String| {
            ApplyError::Inconsistent(format!("product {product_id}, event {sequence}: {what}"))
        };
        let sequence = i64::try_from(sequence).map_err(|_| inconsistent("huge sequence".into()))?;
        if event_product(event).as_uuid() != product_id {
            return Err(inconsistent(format!(
                "the event names product {}",
                event_product(event)
            )));
        }
        let last_sequence = self
            .products
            .get(&product_id)
            .map_or(0, |p| p.last_sequence);
        if sequence <= last_sequence {
            return Ok(());
        }
        if sequence != last_sequence + 1 {
            return Err(inconsistent(format!("follows event {last_sequence}")));
        }

        // Taken out of the map while it changes, since a new variant also claims its SKU.
        let existing = self.products.remove(&product_id);
        let mut product = match (existing, event) {
            (
                None,
                ProductEvent::ProductCreated {
                    name,
                    description,
                    category,
                    currency,
                    variants,
                    ..
                },
            ) => {
                let created = ProductRow {
                    name: name.clone(),
                    description: description.clone(),
                    category: category.clone(),
                    currency: currency.code().to_owned(),
                    published: false,
                    created_at: timestamp,
                    updated_at: timestamp,
                    last_sequence: sequence,
                    variants: variants
                        .iter()
                        .map(|variant| self.claim(product_id, currency.code(), variant))
                        .collect::<Result<_, _>>()?,
                    changed: true,
                };
                self.products.insert(product_id, created);
                return Ok(());
            }
            (None, _) => {
                return Err(inconsistent(format!(
                    "{} for a product never created",
                    cqrs_es::DomainEvent::event_type(event)
                )));
            }
            (Some(product), _) => product,
        };
        match event {
            ProductEvent::ProductCreated { .. } => {
                return Err(inconsistent("the product was already created".into()));
            }
            ProductEvent::ProductRenamed { name, .. } => product.name.clone_from(name),
            ProductEvent::ProductDescriptionChanged { description, .. } => {
                product.description.clone_from(description);
            }
            ProductEvent::ProductCategoryChanged { category, .. } => {
                product.category.clone_from(category);
            }
            ProductEvent::VariantPriceChanged { sku, price, .. } => {
                let price_minor = price_in(&product.currency, *price)
                    .map_err(|found| inconsistent(format!("{sku} priced in {found}")))?;
                product.variant_mut(product_id, sku.as_str())?.price_minor = price_minor;
            }
            ProductEvent::VariantAdded { variant, .. } => {
                let row = self.claim(product_id, &product.currency, variant)?;
                product.variants.push(row);
            }
            ProductEvent::VariantRetired { sku, .. } => {
                product.variant_mut(product_id, sku.as_str())?.retired = true;
            }
            ProductEvent::ProductPublished { .. } => product.published = true,
            ProductEvent::ProductUnpublished { .. } => product.published = false,
        }
        product.updated_at = timestamp;
        product.last_sequence = sequence;
        product.changed = true;
        self.products.insert(product_id, product);
        Ok(())
    }

    /// Gives a new variant's SKU to `product_id`.
    fn claim(
        &mut self,
        product_id: Uuid,
        currency: &str,
        variant: &VariantDetails,
    ) -> Result<VariantRow, ApplyError> {
        let sku = variant.sku.as_str();
        if let Some(owner) = self.sku_owners.get(sku) {
            return Err(ApplyError::Inconsistent(format!(
                "product {product_id} adds variant {sku}, which product {owner} already has"
            )));
        }
        let price_minor = price_in(currency, variant.price).map_err(|found| {
            ApplyError::Inconsistent(format!(
                "product {product_id} in {currency} prices variant {sku} in {found}"
            ))
        })?;
        self.sku_owners.insert(sku.to_owned(), product_id);
        Ok(VariantRow {
            sku: sku.to_owned(),
            name: variant.name.clone(),
            price_minor,
            retired: false,
        })
    }

    /// Upserts every product the batch changed, with all its variants.
    pub(super) async fn write(self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let mut products = ProductColumns::default();
        let mut variants = VariantColumns::default();
        for (id, product) in self.products {
            if !product.changed {
                continue;
            }
            products.push(id, &product);
            for (ordinal, variant) in product.variants.into_iter().enumerate() {
                variants.push(id, ordinal, variant);
            }
        }
        if products.id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO products (product_id, name, description, category, currency,
                                   price_minor, published, created_at, updated_at,
                                   last_sequence)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::bigint[], $7::boolean[], $8::timestamptz[],
                                  $9::timestamptz[], $10::bigint[])
             ON CONFLICT (product_id) DO UPDATE SET
                 name = EXCLUDED.name,
                 description = EXCLUDED.description,
                 category = EXCLUDED.category,
                 currency = EXCLUDED.currency,
                 price_minor = EXCLUDED.price_minor,
                 published = EXCLUDED.published,
                 created_at = EXCLUDED.created_at,
                 updated_at = EXCLUDED.updated_at,
                 last_sequence = EXCLUDED.last_sequence",
        )
        .bind(&products.id)
        .bind(&products.name)
        .bind(&products.description)
        .bind(&products.category)
        .bind(&products.currency)
        .bind(&products.price_minor)
        .bind(&products.published)
        .bind(&products.created_at)
        .bind(&products.updated_at)
        .bind(&products.last_sequence)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO variants (sku, product_id, ordinal, name, price_minor, retired)
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::integer[], $4::text[],
                                  $5::bigint[], $6::boolean[])
             ON CONFLICT (sku) DO UPDATE SET
                 name = EXCLUDED.name,
                 price_minor = EXCLUDED.price_minor,
                 retired = EXCLUDED.retired",
        )
        .bind(&variants.sku)
        .bind(&variants.product_id)
        .bind(&variants.ordinal)
        .bind(&variants.name)
        .bind(&variants.price_minor)
        .bind(&variants.retired)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// The SKUs an event gives to its product.
pub(super) fn new_skus(event: &ProductEvent) -> Vec<String> {
    match event {
        ProductEvent::ProductCreated { variants, .. } => {
            variants.iter().map(|v| v.sku.to_string()).collect()
        }
        ProductEvent::VariantAdded { variant, .. } => vec![variant.sku.to_string()],
        _ => Vec::new(),
    }
}

fn event_product(event: &ProductEvent) -> ProductId {
    match event {
        ProductEvent::ProductCreated { product_id, .. }
        | ProductEvent::ProductRenamed { product_id, .. }
        | ProductEvent::ProductDescriptionChanged { product_id, .. }
        | ProductEvent::ProductCategoryChanged { product_id, .. }
        | ProductEvent::VariantPriceChanged { product_id, .. }
        | ProductEvent::VariantAdded { product_id, .. }
        | ProductEvent::VariantRetired { product_id, .. }
        | ProductEvent::ProductPublished { product_id }
        | ProductEvent::ProductUnpublished { product_id } => *product_id,
    }
}

/// The minor units of `price` when it is in `currency`, else the currency it is in.
fn price_in(currency: &str, price: Money) -> Result<i64, String> {
    if price.currency.code() == currency {
        Ok(price.amount_minor)
    } else {
        Err(price.currency.code().to_owned())
    }
}

#[derive(Debug, Default)]
struct ProductColumns {
    id: Vec<Uuid>,
    name: Vec<String>,
    description: Vec<String>,
    category: Vec<String>,
    currency: Vec<String>,
    price_minor: Vec<Option<i64>>,
    published: Vec<bool>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    last_sequence: Vec<i64>,
}

impl ProductColumns {
    fn push(&mut self, id: Uuid, product: &ProductRow) {
        self.id.push(id);
        self.name.push(product.name.clone());
        self.description.push(product.description.clone());
        self.category.push(product.category.clone());
        self.currency.push(product.currency.clone());
        self.price_minor.push(product.price_minor());
        self.published.push(product.published);
        self.created_at.push(product.created_at);
        self.updated_at.push(product.updated_at);
        self.last_sequence.push(product.last_sequence);
    }
}

#[derive(Debug, Default)]
struct VariantColumns {
    sku: Vec<String>,
    product_id: Vec<Uuid>,
    ordinal: Vec<i32>,
    name: Vec<String>,
    price_minor: Vec<i64>,
    retired: Vec<bool>,
}

impl VariantColumns {
    fn push(&mut self, product_id: Uuid, ordinal: usize, variant: VariantRow) {
        self.sku.push(variant.sku);
        self.product_id.push(product_id);
        // A product's variants are added one command at a time: far fewer than 2^31.
        self.ordinal
            .push(i32::try_from(ordinal).expect("fewer than 2^31 variants"));
        self.name.push(variant.name);
        self.price_minor.push(variant.price_minor);
        self.retired.push(variant.retired);
    }
}
