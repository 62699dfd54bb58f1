//! Reads of the live catalog model, for the API.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{Currency, Money, ProductId};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::page::{encode_cursor, Edge, Page, PageRequest, QueryError};

/// Which products a listing holds; every field left empty matches all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// Words to find in the name or description (web search syntax: `"quoted phrase"`,
    /// `or`, `-excluded`).
    pub search: Option<String>,
    /// Only products of this category.
    pub category: Option<String>,
    /// Only products whose price is at least this, in minor units.
    pub min_price: Option<i64>,
    /// Only products whose price is at most this, in minor units.
    pub max_price: Option<i64>,
    /// Only products with available stock.
    pub in_stock: bool,
    /// Only products visible in the shop.
    pub published_only: bool,
}

/// The order of a product listing; `reverse` in [`products`] turns it around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProductSort {
    /// Best match of the search first; only with a search.
    Relevance,
    /// Cheapest first; products without an active variant last.
    Price,
    /// By name, ignoring case.
    Name,
    /// Most recently created first.
    Newest,
}

/// A product in a listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProductSummary {
    /// The product.
    pub id: ProductId,
    /// The display name.
    pub name: String,
    /// The catalog category.
    pub category: String,
    /// The lowest price of an active variant; none when every variant is retired.
    pub price: Option<Money>,
    /// Units available over the active variants.
    pub available: i64,
    /// Whether the product is visible in the shop.
    pub published: bool,
    /// When the product was created.
    pub created_at: DateTime<Utc>,
    /// When the product last changed (stock movements aside).
    pub updated_at: DateTime<Utc>,
}

/// A product with its variants.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProductDetail {
    /// The product.
    pub id: ProductId,
    /// The display name.
    pub name: String,
    /// The description.
    pub description: String,
    /// The catalog category.
    pub category: String,
    /// The currency of every price of the product.
    pub currency: Currency,
    /// The lowest price of an active variant; none when every variant is retired.
    pub price: Option<Money>,
    /// Units available over the active variants.
    pub available: i64,
    /// Whether the product is visible in the shop.
    pub published: bool,
    /// When the product was created.
    pub created_at: DateTime<Utc>,
    /// When the product last changed (stock movements aside).
    pub updated_at: DateTime<Utc>,
    /// Every variant, retired ones included, in the order they were added.
    pub variants: Vec<VariantDetail>,
}

/// A variant of a product.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VariantDetail {
    /// The SKU.
    pub sku: String,
    /// The display name.
    pub name: String,
    /// The unit price.
    pub price: Money,
    /// Whether the variant was retired from sale.
    pub retired: bool,
    /// Units on hand and not reserved.
    pub available: i64,
}

/// How many published products a category holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CategoryCount {
    /// The category.
    pub category: String,
    /// Its published products.
    pub product_count: i64,
}

/// The position of a product in a listing: its sort key and id. Tagged with the sort, so
/// that a cursor of one order is refused by another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ProductCursor {
    Relevance(f32, Uuid),
    Price(i64, Uuid),
    Name(String, Uuid),
    Newest(DateTime<Utc>, Uuid),
}

impl ProductSort {
    /// The SQL of the sort key, over `p` (products) and `q` (the search query).
    fn key(self) -> &'static str {
        match self {
            ProductSort::Relevance => "ts_rank(p.search, q.query)",
            ProductSort::Price => "p.price_key",
            ProductSort::Name => "p.name_key",
            ProductSort::Newest => "p.created_at",
        }
    }

    /// Whether the order runs from the largest key down, before `reverse`.
    fn descending(self) -> bool {
        matches!(self, ProductSort::Relevance | ProductSort::Newest)
    }

    fn cursor_of(self, row: &PgRow, id: Uuid) -> Result<ProductCursor, sqlx::Error> {
        Ok(match self {
            ProductSort::Relevance => ProductCursor::Relevance(row.try_get("sort_key")?, id),
            ProductSort::Price => ProductCursor::Price(row.try_get("sort_key")?, id),
            ProductSort::Name => ProductCursor::Name(row.try_get("sort_key")?, id),
            ProductSort::Newest => ProductCursor::Newest(row.try_get("sort_key")?, id),
        })
    }
}

/// Units available over a product's active variants, per product `p`.
const AVAILABILITY: &str = "CROSS JOIN LATERAL (
    SELECT COALESCE(sum(GREATEST(s.on_hand - s.reserved, 0)), 0)::bigint AS available
    FROM catalog.variants v
    JOIN catalog.sku_stock s ON s.sku = v.sku
    WHERE v.product_id = p.product_id AND NOT v.retired
) st";

/// A page of the products matching `filter`, in `sort` order (turned around with
/// `reverse`): the page `page` asks for (at most 100), each product with its cursor,
/// with the count of all matching products.
///
/// Going backward reads the same list from the other end: the cursors of either
/// direction work in both.
///
/// # Errors
/// [`QueryError::PageTooLarge`] for a page above 100, [`QueryError::InvalidArgument`]
/// for [`ProductSort::Relevance`] without a search, [`QueryError::InvalidCursor`] for a
/// cursor this function did not issue for `sort`, [`QueryError::Database`].
pub async fn products(
    pool: &PgPool,
    filter: &ProductFilter,
    sort: ProductSort,
    reverse: bool,
    page: PageRequest<'_>,
) -> Result<Page<ProductSummary>, QueryError> {
    let mut scan = page.scan::<ProductCursor>(sort.descending() != reverse)?;
    let search = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if sort == ProductSort::Relevance && search.is_none() {
        return Err(QueryError::InvalidArgument(
            "sorting by relevance needs a search".to_owned(),
        ));
    }

    let mut sql = QueryBuilder::new(format!(
        "SELECT p.product_id, p.name, p.category, p.currency, p.price_minor, p.published,
                p.created_at, p.updated_at, st.available, {} AS sort_key ",
        sort.key()
    ));
    push_from_where(&mut sql, filter, search, true);
    if let Some(cursor) = scan.cursor.take() {
        sql.push(format!(
            " AND ({}, p.product_id) {} (",
            sort.key(),
            scan.comparison()
        ));
        match (sort, cursor) {
            (ProductSort::Relevance, ProductCursor::Relevance(rank, id)) => {
                sql.push_bind(rank).push("::real, ").push_bind(id)
            }
            (ProductSort::Price, ProductCursor::Price(price, id)) => {
                sql.push_bind(price).push(", ").push_bind(id)
            }
            (ProductSort::Name, ProductCursor::Name(name, id)) => {
                sql.push_bind(name).push(", ").push_bind(id)
            }
            (ProductSort::Newest, ProductCursor::Newest(created_at, id)) => {
                sql.push_bind(created_at).push(", ").push_bind(id)
            }
            _ => return Err(QueryError::InvalidCursor),
        };
        sql.push(")");
    }
    let direction = scan.direction();
    sql.push(format!(
        " ORDER BY {} {direction}, p.product_id {direction} LIMIT ",
        sort.key()
    ))
    .push_bind(scan.limit);
    let rows = sql.build().fetch_all(pool).await?;
    let edges = rows
        .iter()
        .map(|row| {
            let node = summary_from(row)?;
            let cursor = encode_cursor(&sort.cursor_of(row, node.id.as_uuid())?);
            Ok(Edge { cursor, node })
        })
        .collect::<Result<Vec<_>, QueryError>>()?;

    let mut count = QueryBuilder::new("SELECT count(*) ");
    push_from_where(&mut count, filter, search, filter.in_stock);
    let total_count: i64 = count.build_query_scalar().fetch_one(pool).await?;

    Ok(Page::from_lookahead_edges(edges, page, Some(total_count)))
}

/// Appends the `FROM` and `WHERE` of a listing: products `p`, the search query `q` when
/// searching, their availability `st` when `with_availability`, and the filter.
fn push_from_where(
    sql: &mut QueryBuilder<'_, Postgres>,
    filter: &ProductFilter,
    search: Option<&str>,
    with_availability: bool,
) {
    sql.push(" FROM catalog.products p ");
    if let Some(search) = search {
        sql.push(" CROSS JOIN websearch_to_tsquery('english', ")
            .push_bind(search.to_owned())
            .push(") AS q(query) ");
    }
    if with_availability {
        sql.push(AVAILABILITY);
    }
    sql.push(" WHERE TRUE");
    if search.is_some() {
        sql.push(" AND p.search @@ q.query");
    }
    if let Some(category) = &filter.category {
        sql.push(" AND p.category = ").push_bind(category.clone());
    }
    if let Some(min_price) = filter.min_price {
        sql.push(" AND p.price_minor >= ").push_bind(min_price);
    }
    if let Some(max_price) = filter.max_price {
        sql.push(" AND p.price_minor <= ").push_bind(max_price);
    }
    if filter.in_stock {
        sql.push(" AND st.available > 0");
    }
    if filter.published_only {
        sql.push(" AND p.published");
    }
}

/// The product `id` with its variants, or `None` when the catalog has no such product.
///
/// # Errors
/// [`QueryError::Database`] when PostgreSQL fails or holds an invalid currency.
pub async fn product(pool: &PgPool, id: ProductId) -> Result<Option<ProductDetail>, QueryError> {
    Ok(products_by_ids(pool, &[id]).await?.remove(&id))
}

/// Each of `ids` with its variants, in two queries whatever their number: the loader
/// behind the descriptions and variants of a page of products. A product the catalog
/// does not know has no entry.
///
/// # Errors
/// [`QueryError::Database`] when PostgreSQL fails or holds an invalid currency.
pub async fn products_by_ids(
    pool: &PgPool,
    ids: &[ProductId],
) -> Result<HashMap<ProductId, ProductDetail>, QueryError> {
    let uuids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let rows = sqlx::query(
        "SELECT product_id, name, description, category, currency, price_minor, published,
                created_at, updated_at
         FROM catalog.products WHERE product_id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_all(pool)
    .await?;
    let mut variants = variants_for_products(pool, ids).await?;
    let mut products = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id = ProductId(row.try_get("product_id")?);
        let currency = currency_from(row)?;
        let variants = variants.remove(&id).unwrap_or_default();
        products.insert(
            id,
            ProductDetail {
                id,
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                category: row.try_get("category")?,
                currency,
                price: row
                    .try_get::<Option<i64>, _>("price_minor")?
                    .map(|amount| Money::new(amount, currency)),
                available: variants
                    .iter()
                    .filter(|v| !v.retired)
                    .map(|v| v.available)
                    .sum(),
                published: row.try_get("published")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                variants,
            },
        );
    }
    Ok(products)
}

/// The variants of each of `ids`, retired ones included, in the order they were added,
/// in one query: the loader behind the variants of a page of products. A product the
/// catalog does not know has no entry.
///
/// # Errors
/// [`QueryError::Database`] when PostgreSQL fails or holds an invalid currency.
pub async fn variants_for_products(
    pool: &PgPool,
    ids: &[ProductId],
) -> Result<HashMap<ProductId, Vec<VariantDetail>>, QueryError> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let rows = sqlx::query(&format!(
        "SELECT v.product_id, p.currency, {VARIANT_COLUMNS} {VARIANTS_WITH_STOCK}
         JOIN catalog.products p ON p.product_id = v.product_id
         WHERE v.product_id = ANY($1)
         ORDER BY v.product_id, v.ordinal"
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut variants: HashMap<ProductId, Vec<VariantDetail>> = HashMap::new();
    for row in &rows {
        let variant = variant_from(row, currency_from(row)?)?;
        let product_id = ProductId(row.try_get("product_id")?);
        variants.entry(product_id).or_default().push(variant);
    }
    Ok(variants)
}

/// The product and the variant of each of `skus`, retired variants included, in one
/// query: the loader behind items that name a SKU, such as order lines. A SKU no
/// product of the catalog has has no entry.
///
/// # Errors
/// [`QueryError::Database`] when PostgreSQL fails or holds an invalid currency.
pub async fn variants_by_sku(
    pool: &PgPool,
    skus: &[String],
) -> Result<HashMap<String, (ProductId, VariantDetail)>, QueryError> {
    let rows = sqlx::query(&format!(
        "SELECT v.product_id, p.currency, {VARIANT_COLUMNS} {VARIANTS_WITH_STOCK}
         JOIN catalog.products p ON p.product_id = v.product_id
         WHERE v.sku = ANY($1)"
    ))
    .bind(skus)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let variant = variant_from(row, currency_from(row)?)?;
            let product_id = ProductId(row.try_get("product_id")?);
            Ok((variant.sku.clone(), (product_id, variant)))
        })
        .collect()
}

/// The categories holding published products, by name, with how many each holds.
///
/// # Errors
/// [`QueryError::Database`] when PostgreSQL fails.
pub async fn categories(pool: &PgPool) -> Result<Vec<CategoryCount>, QueryError> {
    let rows = sqlx::query(
        "SELECT category, count(*) AS product_count
         FROM catalog.products WHERE published
         GROUP BY category ORDER BY category COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CategoryCount {
                category: row.try_get("category")?,
                product_count: row.try_get("product_count")?,
            })
        })
        .collect()
}

/// The columns of a [`VariantDetail`], over [`VARIANTS_WITH_STOCK`].
const VARIANT_COLUMNS: &str = "v.sku, v.name, v.price_minor, v.retired,
    COALESCE(GREATEST(s.on_hand - s.reserved, 0), 0) AS available";

/// Variants `v` with their stock `s`, if any was booked.
const VARIANTS_WITH_STOCK: &str =
    "FROM catalog.variants v LEFT JOIN catalog.sku_stock s ON s.sku = v.sku";

/// A variant from the [`VARIANT_COLUMNS`] of a row, priced in its product's `currency`.
fn variant_from(row: &PgRow, currency: Currency) -> Result<VariantDetail, sqlx::Error> {
    Ok(VariantDetail {
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        price: Money::new(row.try_get("price_minor")?, currency),
        retired: row.try_get("retired")?,
        available: row.try_get("available")?,
    })
}

fn summary_from(row: &PgRow) -> Result<ProductSummary, QueryError> {
    let currency = currency_from(row)?;
    Ok(ProductSummary {
        id: ProductId(row.try_get("product_id")?),
        name: row.try_get("name")?,
        category: row.try_get("category")?,
        price: row
            .try_get::<Option<i64>, _>("price_minor")?
            .map(|amount| Money::new(amount, currency)),
        available: row.try_get("available")?,
        published: row.try_get("published")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn currency_from(row: &PgRow) -> Result<Currency, sqlx::Error> {
    let code: String = row.try_get("currency")?;
    code.parse()
        .map_err(|e: domain::MoneyError| sqlx::Error::Decode(e.into()))
}
