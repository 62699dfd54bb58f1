//! The shop the load runs against: its products and SKUs (created by `--setup` or found
//! by browsing), the admin, and the customers (registered through the API).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::client::{position, Failure, Graphql};
use super::mix::Rng;
use super::record::{Entry, Recorder};
use super::report::Collector;

const SESSION_CREATE: &str = "mutation Login($input: SessionCreateInput!) {
  sessionCreate(input: $input) { session { accessToken accessTokenExpiresAt } userErrors { code message } } }";
const CUSTOMER_REGISTER: &str = "mutation Register($input: CustomerRegisterInput!) {
  customerRegister(input: $input) { account { id } userErrors { code message } } }";
const PRODUCT_CREATE: &str = "mutation Create($input: ProductCreateInput!) {
  productCreate(input: $input) { product { id } userErrors { code message } position } }";
const PRODUCT_PUBLISH: &str = "mutation Publish($input: ProductPublicationInput!) {
  productPublish(input: $input) { product { id } userErrors { code message } position } }";
pub const INVENTORY_RECEIVE: &str = "mutation Receive($input: InventoryReceiveInput!) {
  inventoryReceive(input: $input) { inventoryLevel { sku onHand } userErrors { code message } position } }";
const PRODUCTS_PAGE: &str = "query Discover($after: String) {
  products(first: 100, after: $after) { pageInfo { hasNextPage endCursor }
    nodes { id name category variants { sku retired } } } }";

const CATEGORIES: [&str; 6] = ["Kitchen", "Garden", "Books", "Toys", "Outdoor", "Office"];
const ADJECTIVES: [&str; 10] = [
    "Blue", "Oak", "Compact", "Classic", "Folding", "Ceramic", "Woollen", "Solar", "Copper",
    "Linen",
];
const NOUNS: [&str; 10] = [
    "Mug", "Table", "Lamp", "Kettle", "Chair", "Notebook", "Blanket", "Lantern", "Puzzle", "Bowl",
];
const VARIANTS: [&str; 4] = ["Small", "Medium", "Large", "Gift set"];

/// A product of the catalog.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub category: String,
    pub skus: Vec<String>,
}

/// A signed-in account whose access token is renewed before it expires.
#[derive(Debug)]
pub struct Account {
    pub email: String,
    password: String,
    token: tokio::sync::Mutex<(String, Instant)>,
}

impl Account {
    /// Signs in.
    ///
    /// # Errors
    /// When the API refuses the credentials or fails.
    pub async fn sign_in(graphql: &Graphql, email: &str, password: &str) -> anyhow::Result<Self> {
        let token = session(graphql, email, password).await?;
        Ok(Self {
            email: email.to_owned(),
            password: password.to_owned(),
            token: tokio::sync::Mutex::new(token),
        })
    }

    /// A valid access token, signing in again when the current one is about to expire.
    ///
    /// # Errors
    /// As [`Failure`], when signing in again fails.
    pub async fn token(&self, graphql: &Graphql) -> Result<String, Failure> {
        let mut token = self.token.lock().await;
        if Instant::now() >= token.1 {
            *token = session(graphql, &self.email, &self.password)
                .await
                .map_err(|_| Failure::Error("SESSION".to_owned()))?;
        }
        Ok(token.0.clone())
    }
}

/// An access token and when to renew it (a minute before it expires).
async fn session(
    graphql: &Graphql,
    email: &str,
    password: &str,
) -> anyhow::Result<(String, Instant)> {
    let payload = graphql
        .mutate(
            None,
            "sessionCreate",
            SESSION_CREATE,
            json!({ "input": { "email": email, "password": password } }),
        )
        .await
        .map_err(|f| anyhow::anyhow!("signing in as {email}: {}", f.code()))?;
    let session = &payload["session"];
    let token = session["accessToken"]
        .as_str()
        .context("sessionCreate answered without a token")?
        .to_owned();
    let lifetime = session["accessTokenExpiresAt"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            (t.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default()
        })
        .unwrap_or(Duration::from_secs(120));
    let renew_at = Instant::now() + lifetime.saturating_sub(Duration::from_secs(60));
    Ok((token, renew_at))
}

/// A customer's state as the load generator last saw it.
#[derive(Debug, Default)]
pub struct CustomerState {
    /// The cart's id, once a cart mutation answered.
    pub cart_id: Option<String>,
    /// Lines in the cart, by SKU.
    pub cart: BTreeMap<String, u32>,
    /// Orders the customer placed (opaque ids), oldest first.
    pub orders: Vec<String>,
    /// Orders the customer may still try to cancel.
    pub cancellable: Vec<String>,
}

/// A registered, signed-in customer.
#[derive(Debug)]
pub struct Customer {
    pub account: Account,
    pub state: Mutex<CustomerState>,
}

/// What `--setup` creates.
#[derive(Debug, Clone, Copy)]
pub struct SetupPlan {
    pub products: usize,
    pub stock: u32,
}

/// Creates `plan.products` published products with one to three variants each and
/// receives `plan.stock` units of every SKU, as the admin; every receipt is recorded.
///
/// # Errors
/// When the API refuses or fails a step (the error names it).
pub async fn set_up(
    graphql: &Graphql,
    admin: &Account,
    plan: SetupPlan,
    seed: u64,
    prefix: &str,
    recorder: &Recorder,
    collector: &Collector,
) -> anyhow::Result<Vec<Product>> {
    let mut rng = Rng::new(seed ^ 0x5e7u64);
    let specs: Vec<(usize, Value, String, String)> = (0..plan.products)
        .map(|p| {
            let name = format!("{} {} {}", rng.pick(&ADJECTIVES), rng.pick(&NOUNS), p + 1);
            let category = (*rng.pick(&CATEGORIES)).to_owned();
            let variants: Vec<Value> = (0..rng.between(1, 3))
                .map(|v| {
                    let cents = rng.between(199, 9_999);
                    json!({
                        "sku": format!("{prefix}-{p}-{v}"),
                        "name": VARIANTS[v as usize],
                        "price": { "amount": format!("{}.{:02}", cents / 100, cents % 100), "currencyCode": "EUR" },
                    })
                })
                .collect();
            let input = json!({
                "name": name,
                "description": format!("A {} for load tests, from the {} range.", name.to_lowercase(), category),
                "category": category,
                "variants": variants,
            });
            (p, input, name, category)
        })
        .collect();
    let products: Vec<Product> = stream::iter(specs)
        .map(|(p, input, name, category)| async move {
            let token = admin.token(graphql).await.map_err(step("signing in", p))?;
            let created = graphql
                .mutate(
                    Some(&token),
                    "productCreate",
                    PRODUCT_CREATE,
                    json!({ "input": input }),
                )
                .await
                .map_err(step("productCreate", p))?;
            let id = created["product"]["id"]
                .as_str()
                .context("productCreate answered without a product")?
                .to_owned();
            graphql
                .mutate(
                    Some(&token),
                    "productPublish",
                    PRODUCT_PUBLISH,
                    json!({ "input": { "id": id } }),
                )
                .await
                .map_err(step("productPublish", p))?;
            let skus: Vec<String> = input["variants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["sku"].as_str().map(str::to_owned))
                .collect();
            for sku in &skus {
                receive(
                    graphql, &token, sku, plan.stock, "setup", None, recorder, collector,
                )
                .await
                .map_err(step("inventoryReceive", p))?;
            }
            anyhow::Ok(Product {
                id,
                name,
                category,
                skus,
            })
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(products)
}

fn step(what: &'static str, product: usize) -> impl Fn(Failure) -> anyhow::Error {
    move |failure| anyhow::anyhow!("setup: {what} for product {product}: {}", failure.code())
}

/// Receives stock as the admin and records the receipt once acknowledged.
///
/// # Errors
/// The request's [`Failure`].
#[allow(clippy::too_many_arguments)]
pub async fn receive(
    graphql: &Graphql,
    token: &str,
    sku: &str,
    quantity: u32,
    reference: &str,
    idempotency_key: Option<String>,
    recorder: &Recorder,
    collector: &Collector,
) -> Result<(), Failure> {
    let payload = graphql
        .mutate(
            Some(token),
            "inventoryReceive",
            INVENTORY_RECEIVE,
            json!({ "input": { "sku": sku, "quantity": quantity, "reference": reference,
                               "idempotencyKey": idempotency_key } }),
        )
        .await?;
    let position = position(&payload).ok_or_else(|| Failure::Error("NO_POSITION".to_owned()))?;
    recorder.record(Entry::Receive {
        sku: sku.to_owned(),
        quantity,
        reference: reference.to_owned(),
        position,
        at: Utc::now(),
    });
    collector.acknowledge(|a| a.receipts += 1);
    Ok(())
}

/// Every product the catalog shows (at most `limit`), with its SKUs still on sale.
///
/// # Errors
/// When the API fails, or shows no product with a SKU on sale.
pub async fn discover(
    graphql: &Graphql,
    token: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Product>> {
    let mut products = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = graphql
            .request(token, PRODUCTS_PAGE, json!({ "after": after }))
            .await
            .map_err(|f| anyhow::anyhow!("listing products: {}", f.code()))?;
        let page = &data["products"];
        for node in page["nodes"].as_array().into_iter().flatten() {
            let skus: Vec<String> = node["variants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["retired"] != json!(true))
                .filter_map(|v| v["sku"].as_str().map(str::to_owned))
                .collect();
            if skus.is_empty() {
                continue;
            }
            products.push(Product {
                id: node["id"].as_str().unwrap_or_default().to_owned(),
                name: node["name"].as_str().unwrap_or_default().to_owned(),
                category: node["category"].as_str().unwrap_or_default().to_owned(),
                skus,
            });
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        if page["pageInfo"]["hasNextPage"] != json!(true) || products.len() >= limit {
            break;
        }
    }
    if products.is_empty() {
        bail!("the catalog shows no product with a SKU on sale: run with --setup (and an admin)");
    }
    products.truncate(limit);
    Ok(products)
}

/// Registers `count` customers (`<prefix>-<n>@loadgen.test`) and signs them in.
///
/// # Errors
/// When the API refuses a registration or sign-in.
pub async fn register_customers(
    graphql: &Graphql,
    count: usize,
    prefix: &str,
    password: &str,
) -> anyhow::Result<Vec<Customer>> {
    stream::iter(0..count)
        .map(|n| async move {
            let email = format!("{}-{n}@loadgen.test", prefix.to_lowercase());
            graphql
                .mutate(
                    None,
                    "customerRegister",
                    CUSTOMER_REGISTER,
                    json!({ "input": { "email": email, "password": password } }),
                )
                .await
                .map_err(|f| anyhow::anyhow!("registering {email}: {}", f.code()))?;
            let account = Account::sign_in(graphql, &email, password).await?;
            anyhow::Ok(Customer {
                account,
                state: Mutex::new(CustomerState::default()),
            })
        })
        .buffered(4)
        .try_collect()
        .await
}
