//! The catalog read model against a real PostgreSQL: commits built by the fixtures,
//! applied with `apply_directly`, checked against what the test computes itself.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::inventory::{Inventory, InventoryEvent};
use domain::product::{Product, ProductEvent, VariantDetails};
use domain::{Currency, Money, OrderId, ProductId, Sku};
use infra_nats::RecordedCommit;
use projections::catalog::{
    self, CatalogProjection, CategoryCount, ProductDetail, ProductFilter, ProductSort,
    ProductSummary, VariantDetail,
};
use projections::fixtures;
use projections::page::{Edge, PageRequest, QueryError};
use projections::runtime::apply_directly;
use projections::{ApplyError, Delivery, DeliveryMode};
use serde_json::{json, Value};
use sqlx::PgPool;
use testkit::TestDatabase;
use uuid::Uuid;

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minute)
}

fn product_id(n: u128) -> ProductId {
    ProductId(Uuid::from_u128(0x1000 + n))
}

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::EUR)
}

fn sku(sku: &str) -> Sku {
    Sku::parse(sku).unwrap()
}

fn created(
    id: ProductId,
    name: &str,
    description: &str,
    category: &str,
    variants: &[(&str, i64)],
) -> ProductEvent {
    ProductEvent::ProductCreated {
        product_id: id,
        name: name.to_owned(),
        description: description.to_owned(),
        category: category.to_owned(),
        currency: Currency::EUR,
        variants: variants
            .iter()
            .map(|(code, price)| VariantDetails {
                sku: sku(code),
                name: format!("{name} {code}"),
                price: eur(*price),
            })
            .collect(),
    }
}

fn received(code: &str, quantity: u32) -> InventoryEvent {
    InventoryEvent::StockReceived {
        sku: sku(code),
        quantity,
        reference: "PO".to_owned(),
    }
}

fn stock(code: &str, events: Vec<InventoryEvent>, minute: i64) -> Step {
    Step::Stock(code.to_owned(), events, minute)
}

fn reserved(code: &str, order: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::StockReserved {
        sku: sku(code),
        order_id: OrderId(Uuid::from_u128(order)),
        quantity,
    }
}

/// One command's events, on a product or on a SKU's inventory, at a minute of the day.
enum Step {
    Product(ProductId, Vec<ProductEvent>, i64),
    Stock(String, Vec<InventoryEvent>, i64),
}

/// The commits of a script, at consecutive positions and with each aggregate's next
/// versions.
fn commits(script: &[Step]) -> Vec<RecordedCommit> {
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut next = |id: String, events: usize| {
        let version = versions.entry(id).or_insert(0);
        *version += events;
        *version - events + 1
    };
    script
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let position = i as u64 + 1;
            match step {
                Step::Product(id, events, minute) => {
                    let id = id.to_string();
                    let first = next(id.clone(), events.len());
                    fixtures::commit::<Product>(position, &id, first, events, at(*minute))
                }
                Step::Stock(code, events, minute) => {
                    let first = next(code.clone(), events.len());
                    fixtures::commit::<Inventory>(position, code, first, events, at(*minute))
                }
            }
        })
        .collect()
}

async fn migrated() -> Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    projections::migrate(&db.pool).await?;
    Ok(db)
}

async fn apply(pool: &PgPool, commits: &[RecordedCommit]) -> Result<(), ApplyError> {
    let batch: Vec<Delivery<'_>> = commits
        .iter()
        .map(|commit| Delivery {
            commit,
            mode: DeliveryMode::Live,
        })
        .collect();
    apply_directly(pool, &CatalogProjection, &batch).await
}

/// Every row of every table of the schema, as JSON, in key order.
async fn dump(pool: &PgPool) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for (table, key) in [
        ("products", "product_id"),
        ("variants", "sku"),
        ("sku_stock", "sku"),
    ] {
        let table_rows: Vec<Value> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t) FROM catalog.{table} t ORDER BY {key}"
        ))
        .fetch_all(pool)
        .await?;
        rows.push(json!({ table: table_rows }));
    }
    Ok(rows)
}

/// A product as the test expects the catalog to hold it.
struct Expected {
    id: ProductId,
    name: String,
    description: String,
    category: String,
    published: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// SKU, name, price, retired.
    variants: Vec<(String, String, i64, bool)>,
}

/// The catalog computed by the test from the script alone.
struct Oracle {
    products: BTreeMap<ProductId, Expected>,
    /// On hand and reserved per SKU.
    stock: BTreeMap<String, (i64, i64)>,
}

impl Oracle {
    fn of(script: &[Step]) -> Self {
        let mut oracle = Oracle {
            products: BTreeMap::new(),
            stock: BTreeMap::new(),
        };
        for step in script {
            match step {
                Step::Product(id, events, minute) => {
                    for event in events {
                        oracle.product_event(*id, event, at(*minute));
                    }
                }
                Step::Stock(code, events, _) => {
                    let (on_hand, reserved) = oracle.stock.entry(code.clone()).or_default();
                    for event in events {
                        match event {
                            InventoryEvent::StockReceived { quantity, .. } => {
                                *on_hand += i64::from(*quantity);
                            }
                            InventoryEvent::StockAdjusted { delta, .. } => *on_hand += delta,
                            InventoryEvent::StockReserved { quantity, .. } => {
                                *reserved += i64::from(*quantity);
                            }
                            InventoryEvent::ReservationReleased { quantity, .. } => {
                                *reserved -= i64::from(*quantity);
                            }
                            InventoryEvent::ReservationCommitted { quantity, .. } => {
                                *reserved -= i64::from(*quantity);
                                *on_hand -= i64::from(*quantity);
                            }
                            InventoryEvent::CommittedStockReturned { quantity, .. } => {
                                *on_hand += i64::from(*quantity);
                            }
                        }
                    }
                }
            }
        }
        oracle
    }

    fn product_event(&mut self, id: ProductId, event: &ProductEvent, time: DateTime<Utc>) {
        if let ProductEvent::ProductCreated {
            name,
            description,
            category,
            variants,
            ..
        } = event
        {
            let variants = variants
                .iter()
                .map(|v| {
                    (
                        v.sku.to_string(),
                        v.name.clone(),
                        v.price.amount_minor,
                        false,
                    )
                })
                .collect();
            let product = Expected {
                id,
                name: name.clone(),
                description: description.clone(),
                category: category.clone(),
                published: false,
                created_at: time,
                updated_at: time,
                variants,
            };
            self.products.insert(id, product);
            return;
        }
        let product = self.products.get_mut(&id).unwrap();
        product.updated_at = time;
        let variant = |p: &mut Expected, code: &Sku| {
            let index = p.variants.iter().position(|v| v.0 == code.as_str());
            index.unwrap()
        };
        match event {
            ProductEvent::ProductCreated { .. } => unreachable!("handled above"),
            ProductEvent::ProductRenamed { name, .. } => product.name = name.clone(),
            ProductEvent::ProductDescriptionChanged { description, .. } => {
                product.description = description.clone();
            }
            ProductEvent::ProductCategoryChanged { category, .. } => {
                product.category = category.clone();
            }
            ProductEvent::VariantPriceChanged { sku, price, .. } => {
                let i = variant(product, sku);
                product.variants[i].2 = price.amount_minor;
            }
            ProductEvent::VariantAdded { variant, .. } => product.variants.push((
                variant.sku.to_string(),
                variant.name.clone(),
                variant.price.amount_minor,
                false,
            )),
            ProductEvent::VariantRetired { sku, .. } => {
                let i = variant(product, sku);
                product.variants[i].3 = true;
            }
            ProductEvent::ProductPublished { .. } => product.published = true,
            ProductEvent::ProductUnpublished { .. } => product.published = false,
        }
    }

    fn available(&self, code: &str) -> i64 {
        self.stock
            .get(code)
            .map_or(0, |(on_hand, reserved)| (on_hand - reserved).max(0))
    }

    fn detail(&self, id: ProductId) -> ProductDetail {
        let p = &self.products[&id];
        let variants: Vec<VariantDetail> = p
            .variants
            .iter()
            .map(|(code, name, price, retired)| VariantDetail {
                sku: code.clone(),
                name: name.clone(),
                price: eur(*price),
                retired: *retired,
                available: self.available(code),
            })
            .collect();
        let summary = self.summary(p);
        ProductDetail {
            id,
            name: p.name.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            currency: Currency::EUR,
            price: summary.price,
            available: summary.available,
            published: p.published,
            created_at: p.created_at,
            updated_at: p.updated_at,
            variants,
        }
    }

    fn summary(&self, p: &Expected) -> ProductSummary {
        let active = || p.variants.iter().filter(|v| !v.3);
        ProductSummary {
            id: p.id,
            name: p.name.clone(),
            category: p.category.clone(),
            price: active().map(|v| v.2).min().map(eur),
            available: active().map(|v| self.available(&v.0)).sum(),
            published: p.published,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }

    /// The listing `products` should return, sorted by the test's own comparison.
    fn listing(
        &self,
        filter: &ProductFilter,
        sort: ProductSort,
        reverse: bool,
    ) -> Vec<ProductSummary> {
        let mut items: Vec<ProductSummary> = self
            .products
            .values()
            .map(|p| self.summary(p))
            .filter(|s| {
                filter.category.as_ref().is_none_or(|c| &s.category == c)
                    && filter
                        .min_price
                        .is_none_or(|min| s.price.is_some_and(|p| p.amount_minor >= min))
                    && filter
                        .max_price
                        .is_none_or(|max| s.price.is_some_and(|p| p.amount_minor <= max))
                    && (!filter.in_stock || s.available > 0)
                    && (!filter.published_only || s.published)
            })
            .collect();
        items.sort_by(|a, b| match sort {
            ProductSort::Price => {
                let key = |s: &ProductSummary| (s.price.map_or(i64::MAX, |p| p.amount_minor), s.id);
                key(a).cmp(&key(b))
            }
            ProductSort::Name => (a.name.to_lowercase(), a.id).cmp(&(b.name.to_lowercase(), b.id)),
            ProductSort::Newest => (b.created_at, b.id).cmp(&(a.created_at, a.id)),
            ProductSort::Relevance => unreachable!("the oracle does not rank searches"),
        });
        if reverse {
            items.reverse();
        }
        items
    }
}

/// Walks every page of a listing, checking each page's size, flags and count: from its
/// start with `first/after`, or from its end with `last/before` when `backward`. Returns
/// the edges in list order.
async fn walk_edges(
    pool: &PgPool,
    filter: &ProductFilter,
    sort: ProductSort,
    reverse: bool,
    size: usize,
    backward: bool,
) -> Result<Vec<Edge<ProductSummary>>> {
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    loop {
        let request = if backward {
            PageRequest::Backward {
                last: size,
                before: cursor.as_deref(),
            }
        } else {
            PageRequest::Forward {
                first: size,
                after: cursor.as_deref(),
            }
        };
        let page = catalog::products(pool, filter, sort, reverse, request).await?;
        assert!(page.edges.len() <= size);
        assert_eq!(*total.get_or_insert(page.total_count), page.total_count);
        let (behind, ahead, next_cursor) = if backward {
            (
                page.has_next_page,
                page.has_previous_page,
                page.start_cursor(),
            )
        } else {
            (
                page.has_previous_page,
                page.has_next_page,
                page.end_cursor(),
            )
        };
        assert_eq!(
            behind,
            cursor.is_some(),
            "the flag behind a page is whether it has a cursor"
        );
        cursor = next_cursor.map(str::to_owned);
        if backward {
            walked.splice(0..0, page.edges);
        } else {
            walked.extend(page.edges);
        }
        if !ahead {
            break;
        }
        assert!(
            cursor.is_some(),
            "a page with more beyond it has a cursor on that side"
        );
    }
    assert_eq!(
        total,
        Some(Some(walked.len() as i64)),
        "total_count counts every item"
    );
    Ok(walked)
}

/// The products of a listing, walked forward `first` at a time.
async fn walk(
    pool: &PgPool,
    filter: &ProductFilter,
    sort: ProductSort,
    reverse: bool,
    first: usize,
) -> Result<Vec<ProductSummary>> {
    let edges = walk_edges(pool, filter, sort, reverse, first, false).await?;
    Ok(edges.into_iter().map(|edge| edge.node).collect())
}

/// The products of a listing, walked backward from its end `last` at a time.
async fn walk_backward(
    pool: &PgPool,
    filter: &ProductFilter,
    sort: ProductSort,
    reverse: bool,
    last: usize,
) -> Result<Vec<ProductSummary>> {
    let edges = walk_edges(pool, filter, sort, reverse, last, true).await?;
    Ok(edges.into_iter().map(|edge| edge.node).collect())
}

/// A product's life with its stock, interleaved; stock of `MUG-BLUE` is booked before
/// the product that sells it exists.
fn history() -> Vec<Step> {
    let mug = product_id(1);
    let pot = product_id(2);
    vec![
        stock("MUG-BLUE", vec![received("MUG-BLUE", 7)], 0),
        Step::Product(
            mug,
            vec![created(
                mug,
                "Blue Mug",
                "A sturdy stoneware mug.",
                "Kitchen",
                &[("MUG-BLUE", 1200), ("MUG-BLUE-XL", 1500)],
            )],
            1,
        ),
        Step::Product(
            mug,
            vec![ProductEvent::ProductPublished { product_id: mug }],
            2,
        ),
        Step::Product(
            pot,
            vec![created(
                pot,
                "Red Teapot",
                "Holds a litre.",
                "Kitchen",
                &[("POT-RED", 3500)],
            )],
            3,
        ),
        stock("MUG-BLUE-XL", vec![received("MUG-BLUE-XL", 3)], 4),
        stock("MUG-BLUE", vec![reserved("MUG-BLUE", 1, 2)], 5),
        Step::Product(
            mug,
            vec![ProductEvent::VariantPriceChanged {
                product_id: mug,
                sku: sku("MUG-BLUE"),
                price: eur(1000),
            }],
            6,
        ),
        Step::Product(
            mug,
            vec![ProductEvent::VariantAdded {
                product_id: mug,
                variant: VariantDetails {
                    sku: sku("MUG-BLUE-S"),
                    name: "Small".to_owned(),
                    price: eur(900),
                },
            }],
            7,
        ),
        // Two events in one commit: retiring the cheapest variant, then a rename.
        Step::Product(
            mug,
            vec![
                ProductEvent::VariantRetired {
                    product_id: mug,
                    sku: sku("MUG-BLUE-S"),
                },
                ProductEvent::ProductRenamed {
                    product_id: mug,
                    name: "Blue Stoneware Mug".to_owned(),
                },
            ],
            8,
        ),
        stock("MUG-BLUE-S", vec![received("MUG-BLUE-S", 50)], 9),
        Step::Product(
            pot,
            vec![
                ProductEvent::ProductCategoryChanged {
                    product_id: pot,
                    category: "Tea".to_owned(),
                },
                ProductEvent::ProductDescriptionChanged {
                    product_id: pot,
                    description: "Holds a litre of tea.".to_owned(),
                },
            ],
            10,
        ),
        Step::Product(
            pot,
            vec![ProductEvent::ProductPublished { product_id: pot }],
            11,
        ),
        Step::Product(
            pot,
            vec![ProductEvent::ProductUnpublished { product_id: pot }],
            12,
        ),
        stock("POT-RED", vec![received("POT-RED", 4)], 13),
        stock(
            "MUG-BLUE",
            vec![InventoryEvent::ReservationCommitted {
                sku: sku("MUG-BLUE"),
                order_id: OrderId(Uuid::from_u128(1)),
                quantity: 2,
            }],
            14,
        ),
    ]
}

#[tokio::test]
async fn a_scripted_history_gives_the_products_the_test_computes() -> Result<()> {
    let db = migrated().await?;
    let script = history();
    let oracle = Oracle::of(&script);

    apply(&db.pool, &commits(&script)).await?;

    let mug = catalog::product(&db.pool, product_id(1)).await?.unwrap();
    assert_eq!(mug, oracle.detail(product_id(1)));
    // By hand: MUG-BLUE 7 - 2 committed, MUG-BLUE-XL 3, the retired small one not counted;
    // the lowest active price is the changed 10.00.
    assert_eq!(mug.available, 5 + 3);
    assert_eq!(mug.price, Some(eur(1000)));
    assert_eq!(mug.name, "Blue Stoneware Mug");
    assert_eq!((mug.created_at, mug.updated_at), (at(1), at(8)));
    assert_eq!(mug.variants.len(), 3);
    let pot = catalog::product(&db.pool, product_id(2)).await?.unwrap();
    assert_eq!(pot, oracle.detail(product_id(2)));
    assert_eq!(
        (pot.category.as_str(), pot.published, pot.available),
        ("Tea", false, 4)
    );
    assert_eq!(catalog::product(&db.pool, product_id(99)).await?, None);
    Ok(())
}

#[tokio::test]
async fn one_batch_and_one_commit_at_a_time_build_the_same_rows() -> Result<()> {
    let batched = migrated().await?;
    let one_by_one = migrated().await?;
    let commits = commits(&history());

    apply(&batched.pool, &commits).await?;
    for commit in &commits {
        apply(&one_by_one.pool, std::slice::from_ref(commit)).await?;
    }

    let rows = dump(&batched.pool).await?;
    assert_eq!(rows, dump(&one_by_one.pool).await?);
    assert_eq!(rows[1]["variants"].as_array().map(Vec::len), Some(4));
    Ok(())
}

#[tokio::test]
async fn replaying_applied_commits_changes_nothing() -> Result<()> {
    let db = migrated().await?;
    let commits = commits(&history());
    apply(&db.pool, &commits).await?;
    let before = dump(&db.pool).await?;

    let replay: Vec<Delivery<'_>> = commits[2..]
        .iter()
        .map(|commit| Delivery {
            commit,
            mode: DeliveryMode::Replay,
        })
        .collect();
    apply_directly(&db.pool, &CatalogProjection, &replay).await?;

    assert_eq!(dump(&db.pool).await?, before);
    Ok(())
}

#[tokio::test]
async fn stock_booked_before_its_product_counts_once_the_product_exists() -> Result<()> {
    let db = migrated().await?;
    let lamp = product_id(5);
    let script = [
        stock("LAMP-1", vec![received("LAMP-1", 6)], 0),
        stock("LAMP-1", vec![reserved("LAMP-1", 7, 2)], 1),
    ];
    apply(&db.pool, &commits(&script)).await?;
    assert_eq!(catalog::product(&db.pool, lamp).await?, None);

    let creation = fixtures::commit::<Product>(
        3,
        &lamp.to_string(),
        1,
        &[created(
            lamp,
            "Lamp",
            "Warm light.",
            "Office",
            &[("LAMP-1", 4500)],
        )],
        at(2),
    );
    apply(&db.pool, &[creation]).await?;

    let lamp = catalog::product(&db.pool, lamp).await?.unwrap();
    assert_eq!(lamp.available, 4);
    assert_eq!(lamp.variants[0].available, 4);
    Ok(())
}

/// Twelve products: name, description, category, variant prices, whether the first
/// variant is retired, published, units received and reserved on the first active
/// variant, and the minute of creation (with ties).
#[allow(clippy::type_complexity)]
#[rustfmt::skip]
const SHOP: [(&str, &str, &str, &[i64], bool, bool, u32, u32, i64); 12] = [
    ("Blue Mug",     "Stoneware, holds 300 ml.",  "Kitchen", &[1200],       false, true,  5,   0,  0),
    ("red mug",      "Stoneware, holds 300 ml.",  "Kitchen", &[1200],       false, true,  0,   0,  1),
    ("Teapot",       "Pairs well with a mug.",    "Kitchen", &[2500, 3500], true,  true,  2,   0,  1),
    ("Garden Hose",  "Twenty metres of rubber.",  "Garden",  &[2500],       false, true,  10,  10, 2),
    ("Watering Can", "Galvanised steel.",         "Garden",  &[1800],       false, false, 3,   0,  3),
    ("Desk Lamp",    "Warm light for late work.", "Office",  &[4500, 3900], false, true,  1,   0,  4),
    ("Notebook",     "Dotted pages.",             "Office",  &[900],        false, true,  0,   0,  4),
    ("Mug Rack",     "Holds six cups.",           "Kitchen", &[900],        false, true,  8,   0,  5),
    ("Pen",          "Blue ink.",                 "Office",  &[150],        false, false, 100, 0,  6),
    ("Trowel",       "A hand tool.",              "Garden",  &[1200],       false, true,  4,   0,  6),
    ("blue mug",     "A second blue mug.",        "Kitchen", &[1500],       false, true,  0,   0,  7),
    ("Stapler",      "Staples paper.",            "Office",  &[2500],       false, true,  6,   3,  8),
];

fn shop() -> Vec<Step> {
    let mut script = Vec::new();
    for (i, (name, description, category, prices, retire_first, published, units, held, minute)) in
        SHOP.iter().enumerate()
    {
        let id = product_id(100 + i as u128);
        let skus: Vec<String> = (0..prices.len()).map(|v| format!("P{i}-V{v}")).collect();
        let variants: Vec<(&str, i64)> = skus
            .iter()
            .map(String::as_str)
            .zip(prices.iter().copied())
            .collect();
        let mut events = vec![created(id, name, description, category, &variants)];
        if *retire_first {
            events.push(ProductEvent::VariantRetired {
                product_id: id,
                sku: sku(&skus[0]),
            });
        }
        if *published {
            events.push(ProductEvent::ProductPublished { product_id: id });
        }
        script.push(Step::Product(id, events, *minute));
        let stocked = skus[usize::from(*retire_first)].as_str();
        if *units > 0 {
            script.push(stock(stocked, vec![received(stocked, *units)], *minute));
        }
        if *held > 0 {
            let order = 500 + i as u128;
            script.push(stock(
                stocked,
                vec![reserved(stocked, order, *held)],
                *minute,
            ));
        }
    }
    script
}

/// Filters that each leave a different part of `shop()`.
fn filters() -> [ProductFilter; 6] {
    [
        ProductFilter::default(),
        ProductFilter {
            published_only: true,
            ..ProductFilter::default()
        },
        ProductFilter {
            category: Some("Kitchen".to_owned()),
            ..ProductFilter::default()
        },
        ProductFilter {
            min_price: Some(1200),
            max_price: Some(2500),
            ..ProductFilter::default()
        },
        ProductFilter {
            in_stock: true,
            ..ProductFilter::default()
        },
        ProductFilter {
            category: Some("Office".to_owned()),
            in_stock: true,
            published_only: true,
            max_price: Some(4000),
            ..ProductFilter::default()
        },
    ]
}

#[tokio::test]
async fn every_filter_and_order_pages_through_each_product_once_in_order() -> Result<()> {
    let db = migrated().await?;
    let script = shop();
    let oracle = Oracle::of(&script);
    apply(&db.pool, &commits(&script)).await?;

    let filters = filters();
    for filter in &filters {
        for sort in [ProductSort::Price, ProductSort::Name, ProductSort::Newest] {
            for reverse in [false, true] {
                let expected = oracle.listing(filter, sort, reverse);
                let walked = walk(&db.pool, filter, sort, reverse, 4).await?;
                assert_eq!(
                    walked, expected,
                    "{filter:?} by {sort:?}, reverse {reverse}"
                );
            }
        }
    }

    // Hand-checked spots: Teapot's cheaper variant is retired, the hose is all reserved,
    // the Office filter leaves the stapler (3 of 6 free) and the lamp at 39.00.
    let cheapest = walk(
        &db.pool,
        &ProductFilter::default(),
        ProductSort::Price,
        false,
        4,
    )
    .await?;
    assert_eq!(cheapest[0].name, "Pen");
    let teapot = cheapest.iter().find(|s| s.name == "Teapot").unwrap();
    assert_eq!(teapot.price, Some(eur(3500)));
    let in_stock = oracle.listing(&filters[4], ProductSort::Name, false);
    assert!(in_stock.iter().all(|s| s.name != "Garden Hose"));
    let office = walk(&db.pool, &filters[5], ProductSort::Price, false, 1).await?;
    let office: Vec<(&str, i64)> = office
        .iter()
        .map(|s| (s.name.as_str(), s.available))
        .collect();
    assert_eq!(office, vec![("Stapler", 3), ("Desk Lamp", 1)]);
    Ok(())
}

#[tokio::test]
async fn a_search_ranks_name_matches_above_description_matches() -> Result<()> {
    let db = migrated().await?;
    let script = shop();
    let oracle = Oracle::of(&script);
    apply(&db.pool, &commits(&script)).await?;
    let filter = ProductFilter {
        search: Some("mugs".to_owned()),
        ..ProductFilter::default()
    };

    let ranked = walk(&db.pool, &filter, ProductSort::Relevance, false, 2).await?;
    let backwards = walk(&db.pool, &filter, ProductSort::Relevance, true, 3).await?;

    let mut names: Vec<&str> = ranked.iter().map(|s| s.name.as_str()).collect();
    // "mugs" stems to "mug": four names hold it, and Teapot's description.
    assert_eq!(names.len(), 5);
    assert_eq!(names.last(), Some(&"Teapot"));
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["Blue Mug", "Mug Rack", "Teapot", "blue mug", "red mug"]
    );
    let mut reversed = backwards.clone();
    reversed.reverse();
    assert_eq!(ranked, reversed);
    for summary in &ranked {
        assert_eq!(summary, &oracle.summary(&oracle.products[&summary.id]));
    }

    let by_price = walk(
        &db.pool,
        &ProductFilter {
            in_stock: true,
            ..filter.clone()
        },
        ProductSort::Price,
        false,
        2,
    )
    .await?;
    let by_price: Vec<&str> = by_price.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(by_price, vec!["Mug Rack", "Blue Mug", "Teapot"]);
    Ok(())
}

#[tokio::test]
async fn categories_count_published_products() -> Result<()> {
    let db = migrated().await?;
    let script = shop();
    let oracle = Oracle::of(&script);
    apply(&db.pool, &commits(&script)).await?;

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for product in oracle.products.values().filter(|p| p.published) {
        *expected.entry(product.category.clone()).or_default() += 1;
    }
    let expected: Vec<CategoryCount> = expected
        .into_iter()
        .map(|(category, product_count)| CategoryCount {
            category,
            product_count,
        })
        .collect();

    let counts = catalog::categories(&db.pool).await?;
    assert_eq!(counts, expected);
    let by_hand: Vec<(&str, i64)> = counts
        .iter()
        .map(|c| (c.category.as_str(), c.product_count))
        .collect();
    assert_eq!(by_hand, vec![("Garden", 2), ("Kitchen", 5), ("Office", 3)]);
    Ok(())
}

#[tokio::test]
async fn every_filter_and_order_walked_backward_from_the_end_gives_the_same_list() -> Result<()> {
    let db = migrated().await?;
    let script = shop();
    let oracle = Oracle::of(&script);
    apply(&db.pool, &commits(&script)).await?;

    for filter in &filters() {
        for sort in [ProductSort::Price, ProductSort::Name, ProductSort::Newest] {
            for reverse in [false, true] {
                let expected = oracle.listing(filter, sort, reverse);
                let walked = walk_backward(&db.pool, filter, sort, reverse, 3).await?;
                assert_eq!(
                    walked, expected,
                    "{filter:?} by {sort:?}, reverse {reverse}"
                );
            }
        }
    }
    let search = ProductFilter {
        search: Some("mugs".to_owned()),
        ..ProductFilter::default()
    };
    for reverse in [false, true] {
        let forward = walk(&db.pool, &search, ProductSort::Relevance, reverse, 2).await?;
        let backward = walk_backward(&db.pool, &search, ProductSort::Relevance, reverse, 2).await?;
        assert_eq!(forward.len(), 5);
        assert_eq!(backward, forward, "by relevance, reverse {reverse}");
    }
    Ok(())
}

#[tokio::test]
async fn every_products_cursor_continues_on_either_side_of_it() -> Result<()> {
    let db = migrated().await?;
    let script = shop();
    let oracle = Oracle::of(&script);
    apply(&db.pool, &commits(&script)).await?;
    let all = ProductFilter::default();

    for (sort, reverse) in [
        (ProductSort::Price, false),
        (ProductSort::Name, true),
        (ProductSort::Newest, true),
    ] {
        let expected = oracle.listing(&all, sort, reverse);
        let listed =
            catalog::products(&db.pool, &all, sort, reverse, PageRequest::first(100)).await?;
        assert_eq!(listed.nodes().cloned().collect::<Vec<_>>(), expected);
        for (i, edge) in listed.edges.iter().enumerate() {
            let after = PageRequest::Forward {
                first: 1,
                after: Some(&edge.cursor),
            };
            let next = catalog::products(&db.pool, &all, sort, reverse, after).await?;
            assert_eq!(
                next.into_nodes(),
                expected.get(i + 1).cloned().into_iter().collect::<Vec<_>>(),
                "after {i} by {sort:?}, reverse {reverse}"
            );
            let before = PageRequest::Backward {
                last: 1,
                before: Some(&edge.cursor),
            };
            let previous = catalog::products(&db.pool, &all, sort, reverse, before).await?;
            assert!(previous.has_next_page);
            assert_eq!(previous.has_previous_page, i > 1);
            assert_eq!(
                previous.into_nodes(),
                i.checked_sub(1)
                    .map(|j| expected[j].clone())
                    .into_iter()
                    .collect::<Vec<_>>(),
                "before {i} by {sort:?}, reverse {reverse}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_forward_cursor_used_as_before_gives_back_the_page_before_it() -> Result<()> {
    let db = migrated().await?;
    apply(&db.pool, &commits(&shop())).await?;
    let all = ProductFilter::default();
    let (sort, reverse) = (ProductSort::Name, true);
    let first = catalog::products(&db.pool, &all, sort, reverse, PageRequest::first(4)).await?;
    let after_first = PageRequest::Forward {
        first: 4,
        after: first.end_cursor(),
    };
    let second = catalog::products(&db.pool, &all, sort, reverse, after_first).await?;

    let before_second = PageRequest::Backward {
        last: 4,
        before: second.start_cursor(),
    };
    let back = catalog::products(&db.pool, &all, sort, reverse, before_second).await?;

    assert_eq!(second.edges.len(), 4);
    assert_eq!(back.edges, first.edges);
    assert!(!back.has_previous_page && back.has_next_page);
    assert_eq!(back.total_count, first.total_count);
    Ok(())
}

#[tokio::test]
async fn bad_listing_arguments_are_refused() -> Result<()> {
    let db = migrated().await?;
    apply(&db.pool, &commits(&shop())).await?;
    let all = ProductFilter::default();
    let five = PageRequest::first(5);

    let relevance = catalog::products(&db.pool, &all, ProductSort::Relevance, false, five).await;
    let page = catalog::products(&db.pool, &all, ProductSort::Price, false, five).await?;
    let foreign = page.end_cursor();
    let foreign_after = PageRequest::Forward {
        first: 5,
        after: foreign,
    };
    let foreign_before = PageRequest::Backward {
        last: 5,
        before: foreign,
    };
    let garbage_before = PageRequest::Backward {
        last: 5,
        before: Some("not-a-cursor"),
    };
    let too_many_last = PageRequest::Backward {
        last: 101,
        before: None,
    };
    let by_name = |request| catalog::products(&db.pool, &all, ProductSort::Name, false, request);

    assert!(matches!(relevance, Err(QueryError::InvalidArgument(_))));
    assert!(matches!(
        by_name(foreign_after).await,
        Err(QueryError::InvalidCursor)
    ));
    assert!(matches!(
        by_name(foreign_before).await,
        Err(QueryError::InvalidCursor)
    ));
    assert!(matches!(
        by_name(garbage_before).await,
        Err(QueryError::InvalidCursor)
    ));
    assert!(matches!(
        by_name(PageRequest::first(101)).await,
        Err(QueryError::PageTooLarge(101))
    ));
    assert!(matches!(
        by_name(too_many_last).await,
        Err(QueryError::PageTooLarge(101))
    ));
    Ok(())
}

#[tokio::test]
async fn the_variants_of_many_products_and_skus_are_read_at_once() -> Result<()> {
    let db = migrated().await?;
    let script = history();
    let oracle = Oracle::of(&script);
    apply(&db.pool, &commits(&script)).await?;
    let (mug, pot, unknown) = (product_id(1), product_id(2), product_id(9));

    let by_product = catalog::variants_for_products(&db.pool, &[pot, unknown, mug]).await?;
    let skus = ["POT-RED", "NO-SUCH-SKU", "MUG-BLUE-S", "MUG-BLUE"].map(str::to_owned);
    let by_sku = catalog::variants_by_sku(&db.pool, &skus).await?;

    assert_eq!(by_product.len(), 2);
    for id in [mug, pot] {
        assert_eq!(
            by_product.get(&id),
            Some(&oracle.detail(id).variants),
            "{id}"
        );
    }
    let mug_variants = &oracle.detail(mug).variants;
    // By hand: the mug's variants in the order added, the small one retired.
    let codes: Vec<(&str, bool)> = mug_variants
        .iter()
        .map(|v| (v.sku.as_str(), v.retired))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("MUG-BLUE", false),
            ("MUG-BLUE-XL", false),
            ("MUG-BLUE-S", true)
        ]
    );
    assert_eq!(by_sku.len(), 3);
    assert_eq!(
        by_sku.get("MUG-BLUE-S"),
        Some(&(mug, mug_variants[2].clone()))
    );
    assert_eq!(
        by_sku.get("MUG-BLUE"),
        Some(&(mug, mug_variants[0].clone()))
    );
    assert_eq!(
        by_sku.get("POT-RED"),
        Some(&(pot, oracle.detail(pot).variants[0].clone()))
    );
    // MUG-BLUE: 7 received, 2 reserved then committed.
    assert_eq!(by_sku["MUG-BLUE"].1.available, 5);
    assert!(catalog::variants_for_products(&db.pool, &[])
        .await?
        .is_empty());
    assert!(catalog::variants_by_sku(&db.pool, &[]).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn returned_stock_puts_a_sold_out_product_back_in_stock() -> Result<()> {
    let kettle = product_id(8);
    let order = OrderId(Uuid::from_u128(11));
    // Sold out by the commit, then the units come back.
    let script = vec![
        Step::Product(
            kettle,
            vec![created(
                kettle,
                "Kettle",
                "Boils water.",
                "Kitchen",
                &[("KETTLE-1", 3900)],
            )],
            0,
        ),
        stock("KETTLE-1", vec![received("KETTLE-1", 2)], 1),
        stock("KETTLE-1", vec![reserved("KETTLE-1", 11, 2)], 2),
        stock(
            "KETTLE-1",
            vec![InventoryEvent::ReservationCommitted {
                sku: sku("KETTLE-1"),
                order_id: order,
                quantity: 2,
            }],
            3,
        ),
        stock(
            "KETTLE-1",
            vec![InventoryEvent::CommittedStockReturned {
                sku: sku("KETTLE-1"),
                order_id: order,
                quantity: 2,
                reason: "cancelled before shipping".to_owned(),
            }],
            4,
        ),
    ];
    let all = commits(&script);
    let in_stock = ProductFilter {
        in_stock: true,
        ..ProductFilter::default()
    };
    let db = migrated().await?;
    apply(&db.pool, &all[..4]).await?;
    assert_eq!(
        catalog::product(&db.pool, kettle).await?.unwrap().available,
        0
    );
    assert_eq!(
        walk(&db.pool, &in_stock, ProductSort::Name, false, 4).await?,
        vec![]
    );

    apply(&db.pool, &all[4..]).await?;

    let oracle = Oracle::of(&script);
    let detail = catalog::product(&db.pool, kettle).await?.unwrap();
    assert_eq!(detail, oracle.detail(kettle));
    assert_eq!((detail.available, detail.variants[0].available), (2, 2));
    assert_eq!(
        walk(&db.pool, &in_stock, ProductSort::Name, false, 4).await?,
        oracle.listing(&in_stock, ProductSort::Name, false)
    );
    let one_batch = migrated().await?;
    apply(&one_batch.pool, &all).await?;
    assert_eq!(dump(&one_batch.pool).await?, dump(&db.pool).await?);
    Ok(())
}

#[tokio::test]
async fn a_version_1_adjustment_lowers_availability() -> Result<()> {
    let db = migrated().await?;
    let cup = product_id(7);
    let mut script = commits(&[
        Step::Product(
            cup,
            vec![created(cup, "Cup", "Small.", "Kitchen", &[("CUP-1", 500)])],
            0,
        ),
        stock("CUP-1", vec![received("CUP-1", 10)], 1),
        stock(
            "CUP-1",
            vec![InventoryEvent::StockAdjusted {
                sku: sku("CUP-1"),
                delta: -3,
                reason: "placeholder".to_owned(),
            }],
            2,
        ),
    ]);
    // Version 1.0 of `StockAdjusted` had no reason.
    let event = &mut script[2].envelope.events[0];
    event.event_version = "1.0".to_owned();
    event.payload = json!({ "StockAdjusted": { "sku": "CUP-1", "delta": -3 } });

    apply(&db.pool, &script).await?;

    assert_eq!(catalog::product(&db.pool, cup).await?.unwrap().available, 7);
    Ok(())
}

#[tokio::test]
async fn a_payload_of_the_wrong_shape_is_a_decode_error() -> Result<()> {
    let db = migrated().await?;
    let cup = product_id(7);
    let mut script = commits(&[Step::Product(
        cup,
        vec![created(cup, "Cup", "Small.", "Kitchen", &[("CUP-1", 500)])],
        0,
    )]);
    script[0].envelope.events[0].payload = json!({ "ProductCreated": { "product_id": 42 } });

    let result = apply(&db.pool, &script).await;

    assert!(matches!(result, Err(ApplyError::Decode(_))), "{result:?}");
    assert_eq!(catalog::product(&db.pool, cup).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_change_to_a_product_never_created_is_inconsistent() -> Result<()> {
    let db = migrated().await?;
    let ghost = product_id(8);
    let rename = fixtures::commit::<Product>(
        1,
        &ghost.to_string(),
        2,
        &[ProductEvent::ProductRenamed {
            product_id: ghost,
            name: "Ghost".to_owned(),
        }],
        at(0),
    );

    let result = apply(&db.pool, &[rename]).await;

    assert!(
        matches!(&result, Err(ApplyError::Inconsistent(m)) if m.contains("follows event 0")),
        "{result:?}"
    );
    let first = fixtures::commit::<Product>(
        1,
        &ghost.to_string(),
        1,
        &[ProductEvent::ProductPublished { product_id: ghost }],
        at(0),
    );
    let result = apply(&db.pool, &[first]).await;
    assert!(
        matches!(&result, Err(ApplyError::Inconsistent(m)) if m.contains("never created")),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_sku_claimed_by_two_products_is_inconsistent() -> Result<()> {
    let db = migrated().await?;
    let (mug, cup) = (product_id(1), product_id(2));
    apply(
        &db.pool,
        &commits(&[Step::Product(
            mug,
            vec![created(mug, "Mug", "", "Kitchen", &[("MUG-1", 900)])],
            0,
        )]),
    )
    .await?;
    let second = fixtures::commit::<Product>(
        2,
        &cup.to_string(),
        1,
        &[created(cup, "Cup", "", "Kitchen", &[("MUG-1", 500)])],
        at(1),
    );

    let result = apply(&db.pool, &[second]).await;

    assert!(
        matches!(&result, Err(ApplyError::Inconsistent(m)) if m.contains("already has")),
        "{result:?}"
    );
    Ok(())
}
