//! The catalog: products, variants and categories for everyone; product changes for admins.

use std::sync::Arc;

use application::catalog::{CreateProduct, ProductChanged, ProductEdit};
use application::Refusal;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::product::NewVariant;
use domain::{ProductId, Sku};
use projections::catalog::{self as catalog, ProductDetail, ProductSort, ProductSummary};

use super::context::{ContextExt, Position};
use super::error::{ApiError, ApiResult};
use super::ids::GlobalId;
use super::loaders::ProductDetails;
use super::money::{MoneyInput, MoneyV2};
use super::outcome::decided;
use super::relay::{connection, page_request, UserError};
use super::text::{check_text, Limit};
use crate::auth::Role;
use crate::consistency::ReadModel;

/// A product of the catalog.
#[derive(Clone)]
pub struct Product {
    summary: ProductSummary,
}

impl From<ProductSummary> for Product {
    fn from(summary: ProductSummary) -> Self {
        Product { summary }
    }
}

impl From<ProductDetail> for Product {
    fn from(detail: ProductDetail) -> Self {
        Product {
            summary: ProductSummary {
                id: detail.id,
                name: detail.name,
                category: detail.category,
                price: detail.price,
                available: detail.available,
                published: detail.published,
                created_at: detail.created_at,
                updated_at: detail.updated_at,
            },
        }
    }
}

impl Product {
    async fn detail(&self, ctx: &Context<'_>) -> ApiResult<Arc<ProductDetail>> {
        ctx.data_unchecked::<DataLoader<ProductDetails>>()
            .load_one(self.summary.id)
            .await
            .map_err(super::loaders::field_error)?
            .ok_or(ApiError::NotFound("product"))
    }
}

/// A product of the catalog.
#[Object]
impl Product {
    /// The product's opaque id.
    async fn id(&self) -> ID {
        self.summary.id.to_global()
    }

    /// The display name.
    async fn name(&self) -> &str {
        &self.summary.name
    }

    /// The description.
    async fn description(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        Ok(self.detail(ctx).await?.description.clone())
    }

    /// The catalog category.
    async fn category(&self) -> &str {
        &self.summary.category
    }

    /// The lowest price of an active variant; null when every variant is retired.
    async fn price(&self) -> Option<MoneyV2> {
        self.summary.price.map(MoneyV2::from)
    }

    /// Units available to order over the active variants.
    async fn available(&self) -> i64 {
        self.summary.available
    }

    /// Whether any unit can be ordered now.
    async fn in_stock(&self) -> bool {
        self.summary.available > 0
    }

    /// Whether the product is visible in the shop.
    async fn published(&self) -> bool {
        self.summary.published
    }

    /// The variants, active and retired.
    async fn variants(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProductVariant>> {
        Ok(self
            .detail(ctx)
            .await?
            .variants
            .iter()
            .map(|variant| ProductVariant {
                sku: variant.sku.clone(),
                name: variant.name.clone(),
                price: variant.price.into(),
                retired: variant.retired,
                available: variant.available,
            })
            .collect())
    }

    /// When the product was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.summary.created_at
    }

    /// When the product last changed (stock movements aside).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.summary.updated_at
    }
}

/// One purchasable version of a product, identified by its SKU.
#[derive(Clone, SimpleObject)]
pub struct ProductVariant {
    /// The stock-keeping unit, unique across the catalog.
    pub sku: String,
    /// The variant's name (`Large`, `Blue`).
    pub name: String,
    /// The unit price.
    pub price: MoneyV2,
    /// Whether it can no longer be ordered.
    pub retired: bool,
    /// Units available to order.
    pub available: i64,
}

/// A category and how many published products it holds.
#[derive(Clone, SimpleObject)]
pub struct Category {
    /// The category's name.
    pub name: String,
    /// Its published products.
    pub product_count: i64,
}

connection!(ProductConnection, ProductEdge, Product);

/// Which products a listing holds.
#[derive(Debug, Default, InputObject)]
pub struct ProductFilter {
    /// Words in the name or description (`"quoted phrase"`, `or`, `-excluded`).
    pub search: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only products priced at least this (in the shop's currency).
    pub min_price: Option<MoneyInput>,
    /// Only products priced at most this.
    pub max_price: Option<MoneyInput>,
    /// Only products with stock to sell.
    pub in_stock: Option<bool>,
}

/// How a product listing is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ProductSortKeys {
    /// Best match of `search` first (needs a search).
    Relevance,
    /// Cheapest first.
    Price,
    /// By name.
    Title,
    /// Newest first.
    CreatedAt,
}

impl From<ProductSortKeys> for ProductSort {
    fn from(key: ProductSortKeys) -> Self {
        match key {
            ProductSortKeys::Relevance => ProductSort::Relevance,
            ProductSortKeys::Price => ProductSort::Price,
            ProductSortKeys::Title => ProductSort::Name,
            ProductSortKeys::CreatedAt => ProductSort::Newest,
        }
    }
}

/// Catalog reads.
#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// Products, 20 at a time unless asked otherwise (at most 100). Customers and
    /// visitors see published products; admins see every product.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::relay::page_cost(first, last, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<ProductFilter>,
        #[graphql(default_with = "ProductSortKeys::CreatedAt")] sort_key: ProductSortKeys,
        #[graphql(default)] reverse: bool,
    ) -> async_graphql::Result<ProductConnection> {
        let page = page_request(first, after.as_deref(), last, before.as_deref())?;
        let filter = filter.unwrap_or_default();
        let admin = ctx
            .viewer()
            .is_some_and(|viewer| viewer.role == Role::Admin);
        let search = filter
            .search
            .map(|search| check_text(&search, "filter.search", Limit::SEARCH))
            .transpose()?;
        let price = |money: Option<MoneyInput>, field: &str| {
            money
                .map(|money| money.to_money(field).map(|money| money.amount_minor))
                .transpose()
        };
        let read_filter = catalog::ProductFilter {
            search,
            category: filter.category,
            min_price: price(filter.min_price, "filter.minPrice")?,
            max_price: price(filter.max_price, "filter.maxPrice")?,
            in_stock: filter.in_stock.unwrap_or(false),
            published_only: !admin,
        };
        let db = ctx.read(ReadModel::Catalog).await?;
        let page = catalog::products(db, &read_filter, sort_key.into(), reverse, page)
            .await
            .map_err(ApiError::from)?;
        Ok(ProductConnection::from_page(page, Product::from))
    }

    /// One product; unpublished products only for admins.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let id = ProductId::from_global(&id)?;
        let admin = ctx
            .viewer()
            .is_some_and(|viewer| viewer.role == Role::Admin);
        let db = ctx.read(ReadModel::Catalog).await?;
        let product = catalog::product(db, id).await.map_err(ApiError::from)?;
        Ok(product
            .filter(|product| product.published || admin)
            .map(Product::from))
    }

    /// Categories with published products, by name.
    async fn categories(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Category>> {
        let db = ctx.read(ReadModel::Catalog).await?;
        Ok(catalog::categories(db)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|category| Category {
                name: category.category,
                product_count: category.product_count,
            })
            .collect())
    }
}

/// A new variant.
#[derive(Debug, InputObject)]
pub struct ProductVariantInput {
    /// Its SKU, unique across the catalog.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its unit price.
    pub price: MoneyInput,
}

/// A new product.
#[derive(Debug, InputObject)]
pub struct ProductCreateInput {
    /// The display name.
    pub name: String,
    /// The description.
    #[graphql(default)]
    pub description: String,
    /// The category.
    pub category: String,
    /// At least one variant, all priced in one currency.
    pub variants: Vec<ProductVariantInput>,
}

/// Changes to a product's texts; fields left out stay as they are.
#[derive(Debug, InputObject)]
pub struct ProductUpdateInput {
    /// The product.
    pub id: ID,
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new category.
    pub category: Option<String>,
}

/// A variant's new price.
#[derive(Debug, InputObject)]
pub struct ProductVariantPriceSetInput {
    /// The variant's SKU.
    pub sku: String,
    /// The new unit price, in the product's currency.
    pub price: MoneyInput,
}

/// A product to show or hide.
#[derive(Debug, InputObject)]
pub struct ProductPublicationInput {
    /// The product.
    pub id: ID,
}

/// The answer to a product mutation.
pub struct ProductPayload {
    product_id: Option<ProductId>,
    user_errors: Vec<UserError>,
    position: Option<u64>,
}

impl ProductPayload {
    fn rejected(error: UserError) -> Self {
        Self {
            product_id: None,
            user_errors: vec![error],
            position: None,
        }
    }
}

#[Object]
impl ProductPayload {
    /// The product as the catalog shows it once it reflects this change; null when the
    /// mutation was refused.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        let (Some(id), Some(position)) = (self.product_id, self.position) else {
            return Ok(None);
        };
        let services = ctx.services();
        services
            .positions
            .wait_for(ReadModel::Catalog, position)
            .await?;
        Ok(catalog::product(&services.db, id)
            .await
            .map_err(ApiError::from)?
            .map(Product::from))
    }

    /// Rules the input broke; empty when the change was made.
    async fn user_errors(&self) -> &[UserError] {
        &self.user_errors
    }

    /// Where the change was committed in the log; send it as `X-Min-Position` to read it.
    async fn position(&self) -> Option<Position> {
        self.position.map(Position)
    }
}

/// Catalog changes (admins).
#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Creates a product with its variants (unpublished).
    async fn product_create(
        &self,
        ctx: &Context<'_>,
        input: ProductCreateInput,
    ) -> async_graphql::Result<ProductPayload> {
        let admin = ctx.require(&[Role::Admin])?;
        let name = check_text(&input.name, "name", Limit::NAME)?;
        let description = check_text(&input.description, "description", Limit::DESCRIPTION)?;
        let category = check_text(&input.category, "category", Limit::NAME)?;
        if input.variants.len() > 100 {
            return Err(ApiError::bad_input("a product has at most 100 variants").into());
        }
        let mut variants = Vec::with_capacity(input.variants.len());
        for (index, variant) in input.variants.iter().enumerate() {
            let field = |name: &str| format!("variants.{index}.{name}");
            let sku = match Sku::parse(variant.sku.clone()) {
                Ok(sku) => sku,
                Err(error) => {
                    let index = index.to_string();
                    return Ok(ProductPayload::rejected(UserError::on(
                        &["variants", &index, "sku"],
                        Refusal::InvalidSku.code(),
                        error.to_string(),
                    )));
                }
            };
            variants.push(NewVariant {
                sku,
                name: check_text(&variant.name, &field("name"), Limit::NAME)?,
                price: variant.price.to_money(&field("price"))?,
            });
        }
        let create = CreateProduct {
            name,
            description,
            category,
            variants,
        };
        let created = ctx
            .services()
            .shop
            .create_product(admin.account_id, create)
            .await;
        Ok(payload(decided(created)?))
    }

    /// Renames, describes or recategorises a product; each given field is one change.
    async fn product_update(
        &self,
        ctx: &Context<'_>,
        input: ProductUpdateInput,
    ) -> async_graphql::Result<ProductPayload> {
        let admin = ctx.require(&[Role::Admin])?;
        let product_id = ProductId::from_global(&input.id)?;
        // Every field is checked before anything is sent, so bad input changes nothing.
        let mut edits = Vec::new();
        if let Some(name) = &input.name {
            edits.push(ProductEdit::Rename(check_text(name, "name", Limit::NAME)?));
        }
        if let Some(description) = &input.description {
            edits.push(ProductEdit::Describe(check_text(
                description,
                "description",
                Limit::DESCRIPTION,
            )?));
        }
        if let Some(category) = &input.category {
            edits.push(ProductEdit::Recategorise(check_text(
                category,
                "category",
                Limit::NAME,
            )?));
        }
        if edits.is_empty() {
            return Err(ApiError::bad_input("name nothing to change").into());
        }
        let edited = ctx
            .services()
            .shop
            .edit_product(admin.account_id, product_id, edits)
            .await
            .map_err(ApiError::from)?;
        Ok(match edited {
            Ok(last) => ProductPayload {
                product_id: Some(product_id),
                position: last.map(|changed| changed.outcome.position),
                user_errors: Vec::new(),
            },
            Err(partly) => ProductPayload {
                product_id: partly.committed.as_ref().map(|_| product_id),
                position: partly.committed.map(|changed| changed.outcome.position),
                user_errors: vec![partly.rejection.into()],
            },
        })
    }

    /// Sets a variant's price.
    async fn product_variant_price_set(
        &self,
        ctx: &Context<'_>,
        input: ProductVariantPriceSetInput,
    ) -> async_graphql::Result<ProductPayload> {
        let admin = ctx.require(&[Role::Admin])?;
        let price = input.price.to_money("price")?;
        let changed = ctx
            .services()
            .shop
            .set_variant_price(admin.account_id, &input.sku, price)
            .await;
        Ok(payload(decided(changed)?))
    }

    /// Shows a product in the shop.
    async fn product_publish(
        &self,
        ctx: &Context<'_>,
        input: ProductPublicationInput,
    ) -> async_graphql::Result<ProductPayload> {
        publication(ctx, &input.id, true).await
    }

    /// Hides a product from the shop.
    async fn product_unpublish(
        &self,
        ctx: &Context<'_>,
        input: ProductPublicationInput,
    ) -> async_graphql::Result<ProductPayload> {
        publication(ctx, &input.id, false).await
    }
}

async fn publication(
    ctx: &Context<'_>,
    id: &ID,
    published: bool,
) -> async_graphql::Result<ProductPayload> {
    let admin = ctx.require(&[Role::Admin])?;
    let product_id = ProductId::from_global(id)?;
    let changed = ctx
        .services()
        .shop
        .publish_product(admin.account_id, product_id, published)
        .await;
    Ok(payload(decided(changed)?))
}

fn payload(decided: Result<ProductChanged, UserError>) -> ProductPayload {
    match decided {
        Ok(changed) => ProductPayload {
            product_id: Some(changed.product_id),
            user_errors: Vec::new(),
            position: Some(changed.outcome.position),
        },
        Err(error) => ProductPayload::rejected(error),
    }
}
