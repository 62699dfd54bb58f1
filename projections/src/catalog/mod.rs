//! The catalog read model: products as the shop lists them, with prices, search and
//! availability.
//!
//! Schema `catalog` (migration `0003_catalog.sql`):
//! - `products`: one row per product, with its lowest active price, a weighted
//!   full-text `search` vector (name A, description B) and the sort keys of the listing;
//! - `variants`: every variant ever added, retired ones included;
//! - `sku_stock`: on hand and reserved per SKU, from inventory events. It is keyed by SKU
//!   alone because stock may be booked before the product naming the SKU exists;
//!   availability joins it to the active variants when read.
//!
//! A batch is applied in a few statements: the products and SKUs it touches are loaded,
//! folded in memory in stream order, and written back with `UNNEST` upserts. Events at
//! or below the version a row already reflects are skipped, so replaying a range of the
//! log changes nothing.

mod products;
mod query;
mod stock;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::inventory::Inventory;
use domain::product::Product;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::batch::distinct;
use crate::projection::{ApplyError, Delivery, Projection};

pub use query::{
    categories, product, products, products_by_ids, variants_by_sku, variants_for_products,
    CategoryCount, ProductDetail, ProductFilter, ProductSort, ProductSummary, VariantDetail,
};

use products::ProductFold;
use stock::StockFold;

/// Projects product and inventory commits into the `catalog` schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogProjection;

#[async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn schema(&self) -> &'static str {
        "catalog"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Product::TYPE, Inventory::TYPE]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        // Products and stock live in separate tables that neither fold reads from the
        // other, so each keeps stream order on its own.
        let product_upcasters = domain::product::upcasters();
        let inventory_upcasters = domain::inventory::upcasters();
        let mut product_commits = Vec::new();
        let mut inventory_commits = Vec::new();
        for delivery in batch {
            match delivery.aggregate_type() {
                Product::TYPE => {
                    let id = product_id(delivery)?;
                    let events = delivery.events::<Product>(&product_upcasters)?;
                    product_commits.push((id, delivery, events));
                }
                Inventory::TYPE => {
                    let events = delivery.events::<Inventory>(&inventory_upcasters)?;
                    inventory_commits.push((delivery, events));
                }
                other => {
                    return Err(ApplyError::Decode(
                        format!(
                            "commit at position {} is a `{other}` commit, which the catalog does \
                         not consume",
                            delivery.position()
                        )
                        .into(),
                    ));
                }
            }
        }

        if !product_commits.is_empty() {
            let ids = distinct(product_commits.iter().map(|(id, _, _)| *id));
            let new_skus: Vec<String> = product_commits
                .iter()
                .flat_map(|(_, _, events)| events.iter())
                .flat_map(|envelope| products::new_skus(&envelope.payload))
                .collect();
            let mut fold = ProductFold::load(conn, &ids, &new_skus).await?;
            for (id, delivery, events) in &product_commits {
                for envelope in events {
                    fold.apply(
                        *id,
                        envelope.sequence,
                        delivery.commit.envelope.timestamp,
                        &envelope.payload,
                    )?;
                }
            }
            fold.write(conn).await?;
        }

        if !inventory_commits.is_empty() {
            let skus = distinct(
                inventory_commits
                    .iter()
                    .map(|(delivery, _)| delivery.commit.envelope.aggregate_id.clone()),
            );
            let mut fold = StockFold::load(conn, &skus).await?;
            for (delivery, events) in &inventory_commits {
                for envelope in events {
                    fold.apply(
                        &delivery.commit.envelope.aggregate_id,
                        envelope.sequence,
                        &envelope.payload,
                    )?;
                }
            }
            fold.write(conn).await?;
        }
        Ok(())
    }
}

/// The product id a product commit is for: its aggregate id.
fn product_id(delivery: &Delivery<'_>) -> Result<Uuid, ApplyError> {
    let id = &delivery.commit.envelope.aggregate_id;
    Uuid::parse_str(id).map_err(|e| {
        ApplyError::Decode(
            format!(
                "product commit at position {} has aggregate id {id:?}, not a uuid: {e}",
                delivery.position()
            )
            .into(),
        )
    })
}
