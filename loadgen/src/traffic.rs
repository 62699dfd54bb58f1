//! The requests: what each operation sends, and the open-loop scheduler that sends them.
//!
//! Request `n` is due at `start + n / rate`, whatever happened to the requests before
//! it, and its latency is measured from when it was due: a slow server does not lower
//! the offered rate, and its slowness shows in the percentiles instead of hiding in
//! fewer requests (coordinated omission).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{position, uuid_of, Failure, Graphql};
use super::mix::{Mix, Operation, Rng};
use super::record::{Entry, Line, Recorder};
use super::report::Collector;
use super::shop::{self, Account, Customer, Product};

const PRODUCTS: &str = "query Products($first: Int!, $filter: ProductFilter, $sortKey: ProductSortKeys!, $reverse: Boolean!) {
  products(first: $first, filter: $filter, sortKey: $sortKey, reverse: $reverse) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id name category price { amount currencyCode } available inStock } } }";
const PRODUCT: &str = "query Product($id: ID!) {
  product(id: $id) { id name description category price { amount currencyCode } available inStock
    variants { sku name price { amount currencyCode } available retired } } }";
const CART_ADD: &str = "mutation CartAdd($input: CartLinesInput!) {
  cartLinesAdd(input: $input) { cart { id lines { sku quantity available } } userErrors { code message } } }";
const CART_UPDATE: &str = "mutation CartUpdate($input: CartLinesInput!) {
  cartLinesUpdate(input: $input) { cart { id lines { sku quantity available } } userErrors { code message } } }";
const ORDER_PLACE: &str = "mutation Checkout($input: OrderPlaceInput!) {
  orderPlace(input: $input) { order { id status lines { sku quantity } } userErrors { code message } position } }";
const ORDER: &str = "query Order($id: ID!) { order(id: $id) { id status paymentState updatedAt } }";
const MY_ORDERS: &str = "query MyOrders { me { orders(first: 5) { nodes { id status } } } }";
const ORDER_CANCEL: &str = "mutation Cancel($input: OrderCancelInput!) {
  orderCancel(input: $input) { order { id status } userErrors { code message } position } }";

const SORT_KEYS: [&str; 3] = ["CREATED_AT", "PRICE", "TITLE"];
const CARDS_GOOD: [&str; 3] = ["tok_visa", "tok_mastercard", "tok_amex"];

/// Everything the requests share.
#[derive(Debug)]
pub struct Traffic {
    pub graphql: Graphql,
    pub products: Vec<Product>,
    pub skus: Vec<String>,
    /// Words of product names, for searches.
    pub words: Vec<String>,
    pub categories: Vec<String>,
    pub customers: Vec<Customer>,
    pub admin: Option<Account>,
    pub recorder: Recorder,
    pub collector: Collector,
    pub mix: Mix,
    pub seed: u64,
    /// The share of checkouts paid with `tok_declined`.
    pub declined: f64,
    /// Makes idempotency keys unique to the run.
    pub run_id: String,
}

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rate: f64,
    pub duration: Duration,
    pub concurrency: usize,
}

/// What the scheduler saw.
#[derive(Debug, Clone, Copy)]
pub struct Driven {
    pub elapsed: Duration,
    pub delayed_by_concurrency: u64,
}

/// Offers `schedule.rate` requests per second for `schedule.duration` (or until `stop`
/// completes), at most `schedule.concurrency` at once, then waits for those in flight.
pub async fn drive(
    traffic: Arc<Traffic>,
    schedule: Schedule,
    stop: impl std::future::Future<Output = ()>,
) -> Driven {
    let total = (schedule.rate * schedule.duration.as_secs_f64()).round() as u64;
    let slots = Arc::new(Semaphore::new(schedule.concurrency.max(1)));
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} requests sent {msg}",
    ) {
        bar.set_style(style);
    }
    let mut tasks = JoinSet::new();
    let mut delayed = 0u64;
    let start = Instant::now();
    tokio::pin!(stop);
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / schedule.rate);
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = &mut stop => break,
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                delayed += 1;
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        // The semaphore is never closed.
                        Err(_) => break,
                    },
                    () = &mut stop => break,
                }
            }
        };
        let shared = traffic.clone();
        tasks.spawn(async move {
            let (op, outcome) = shared.perform(n).await;
            shared
                .collector
                .observe(op, due.elapsed(), outcome.as_ref().map(|_| ()));
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
        bar.set_position(n + 1);
        if n % 64 == 0 {
            bar.set_message(format!("({} answered)", traffic.collector.completed()));
        }
    }
    bar.finish_and_clear();
    while tasks.join_next().await.is_some() {}
    Driven {
        elapsed: start.elapsed(),
        delayed_by_concurrency: delayed,
    }
}

impl Traffic {
    /// Performs request `n`: the operation its seeded draw picks (or a browse, when the
    /// pick needs an order and its customer has none yet).
    async fn perform(&self, n: u64) -> (Operation, Result<(), Failure>) {
        let mut rng = Rng::for_request(self.seed, n);
        let op = self.mix.pick(rng.next_u64());
        let outcome = match op {
            Operation::Browse => self.browse(&mut rng).await,
            Operation::Search => self.search(&mut rng).await,
            Operation::Detail => self.detail(&mut rng).await,
            Operation::CartAdd => self.cart_add(&mut rng).await,
            Operation::CartUpdate => self.cart_update(&mut rng).await,
            Operation::Checkout => self.checkout(&mut rng, n).await,
            Operation::OrderStatus => self.order_status(&mut rng).await,
            Operation::Cancel => match self.cancel(&mut rng).await {
                Some(outcome) => outcome,
                None => return (Operation::Browse, self.browse(&mut rng).await),
            },
            Operation::Restock => self.restock(&mut rng, n).await,
        };
        (op, outcome)
    }

    fn customer(&self, rng: &mut Rng) -> &Customer {
        rng.pick(&self.customers)
    }

    async fn products(&self, filter: Value, sort_key: &str, reverse: bool) -> Result<(), Failure> {
        self.graphql
            .request(
                None,
                PRODUCTS,
                json!({ "first": 20, "filter": filter, "sortKey": sort_key, "reverse": reverse }),
            )
            .await
            .map(drop)
    }

    async fn browse(&self, rng: &mut Rng) -> Result<(), Failure> {
        let category = rng.pick(&self.categories).clone();
        let filter = match rng.below(5) {
            0 => Value::Null,
            1 => json!({ "category": category }),
            2 => json!({ "inStock": true }),
            3 => json!({ "category": category, "inStock": true }),
            _ => json!({
                "minPrice": { "amount": "10.00", "currencyCode": "EUR" },
                "maxPrice": { "amount": "60.00", "currencyCode": "EUR" },
            }),
        };
        let sort_key = *rng.pick(&SORT_KEYS);
        let reverse = rng.chance(0.3);
        self.products(filter, sort_key, reverse).await
    }

    async fn search(&self, rng: &mut Rng) -> Result<(), Failure> {
        let word = rng.pick(&self.words).clone();
        let filter = if rng.chance(0.3) {
            json!({ "search": word, "inStock": true })
        } else {
            json!({ "search": word })
        };
        self.products(filter, "RELEVANCE", false).await
    }

    async fn detail(&self, rng: &mut Rng) -> Result<(), Failure> {
        let product = rng.pick(&self.products);
        self.graphql
            .request(None, PRODUCT, json!({ "id": product.id }))
            .await
            .map(drop)
    }

    async fn cart_add(&self, rng: &mut Rng) -> Result<(), Failure> {
        let customer = self.customer(rng);
        let sku = rng.pick(&self.skus).clone();
        let quantity = rng.between(1, 2);
        let token = customer.account.token(&self.graphql).await?;
        let payload = self
            .graphql
            .mutate(
                Some(&token),
                "cartLinesAdd",
                CART_ADD,
                json!({ "input": { "lines": [{ "sku": sku, "quantity": quantity }] } }),
            )
            .await?;
        remember_cart(customer, &payload);
        Ok(())
    }

    async fn cart_update(&self, rng: &mut Rng) -> Result<(), Failure> {
        let customer = self.customer(rng);
        let line = {
            let state = customer.state.lock().unwrap_or_else(|e| e.into_inner());
            let skus: Vec<&String> = state.cart.keys().collect();
            (!skus.is_empty()).then(|| skus[rng.below(skus.len())].clone())
        };
        // An empty cart gets a line first, as a shopper would.
        let Some(sku) = line else {
            return self.cart_add(rng).await;
        };
        let quantity = if rng.chance(0.2) {
            0
        } else {
            rng.between(1, 3)
        };
        let token = customer.account.token(&self.graphql).await?;
        let payload = self
            .graphql
            .mutate(
                Some(&token),
                "cartLinesUpdate",
                CART_UPDATE,
                json!({ "input": { "lines": [{ "sku": sku, "quantity": quantity }] } }),
            )
            .await?;
        remember_cart(customer, &payload);
        Ok(())
    }

    async fn checkout(&self, rng: &mut Rng, n: u64) -> Result<(), Failure> {
        let customer = self.customer(rng);
        let cart_id = {
            let state = customer.state.lock().unwrap_or_else(|e| e.into_inner());
            state.cart_id.clone().filter(|_| !state.cart.is_empty())
        };
        let payment_token = if rng.chance(self.declined) {
            "tok_declined"
        } else {
            *rng.pick(&CARDS_GOOD)
        };
        let mut input = json!({
            "paymentToken": payment_token,
            "shippingAddress": { "name": "Load Tester", "line1": "1 Test Street", "city": "Testville",
                                 "postalCode": "12345", "countryCode": "DE" },
            "idempotencyKey": format!("loadgen-{}-{n}", self.run_id),
        });
        match cart_id {
            Some(cart_id) if rng.chance(0.5) => input["cartId"] = json!(cart_id),
            _ => {
                let lines: Vec<Value> = (0..rng.between(1, 3))
                    .map(|_| json!({ "sku": rng.pick(&self.skus), "quantity": rng.between(1, 2) }))
                    .collect();
                // One line per SKU: the API refuses repeated SKUs.
                let mut seen = std::collections::BTreeSet::new();
                let lines: Vec<Value> = lines
                    .into_iter()
                    .filter(|l| seen.insert(l["sku"].to_string()))
                    .collect();
                input["lines"] = json!(lines);
            }
        }
        let from_cart = input.get("cartId").is_some();
        let token = customer.account.token(&self.graphql).await?;
        let payload = self
            .graphql
            .mutate(
                Some(&token),
                "orderPlace",
                ORDER_PLACE,
                json!({ "input": input }),
            )
            .await?;
        let order = &payload["order"];
        let (Some(id), Some(position)) = (order["id"].as_str(), position(&payload)) else {
            return Err(Failure::Error("NO_ORDER".to_owned()));
        };
        let order_id = uuid_of(id).ok_or_else(|| Failure::Error("BAD_ORDER_ID".to_owned()))?;
        let lines: Vec<Line> = order["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| Line {
                sku: l["sku"].as_str().unwrap_or_default().to_owned(),
                quantity: l["quantity"]
                    .as_u64()
                    .and_then(|q| u32::try_from(q).ok())
                    .unwrap_or(0),
            })
            .collect();
        {
            let mut state = customer.state.lock().unwrap_or_else(|e| e.into_inner());
            if from_cart {
                for line in &lines {
                    state.cart.remove(&line.sku);
                }
            }
            state.orders.push(id.to_owned());
            state.cancellable.push(id.to_owned());
        }
        self.recorder.record(Entry::Order {
            order_id,
            position,
            lines,
            payment_token: payment_token.to_owned(),
            customer: customer.account.email.clone(),
            at: Utc::now(),
        });
        self.collector.acknowledge(|a| a.orders += 1);
        Ok(())
    }

    /// One of the customer's orders, or their list of orders before they placed one.
    async fn order_status(&self, rng: &mut Rng) -> Result<(), Failure> {
        let customer = self.customer(rng);
        let order = {
            let state = customer.state.lock().unwrap_or_else(|e| e.into_inner());
            // Mostly the latest order: the one a shopper waits on.
            match state.orders.len() {
                0 => None,
                len if rng.chance(0.7) => Some(state.orders[len - 1].clone()),
                len => Some(state.orders[rng.below(len)].clone()),
            }
        };
        let token = customer.account.token(&self.graphql).await?;
        let request = match &order {
            Some(id) => self
                .graphql
                .request(Some(&token), ORDER, json!({ "id": id })),
            None => self.graphql.request(Some(&token), MY_ORDERS, json!({})),
        };
        request.await.map(drop)
    }

    /// `None` when the customer has no order left to cancel.
    async fn cancel(&self, rng: &mut Rng) -> Option<Result<(), Failure>> {
        let customer = self.customer(rng);
        let id = {
            let mut state = customer.state.lock().unwrap_or_else(|e| e.into_inner());
            let len = state.cancellable.len();
            if len == 0 {
                return None;
            }
            // Often the latest: its saga is likely still running.
            let at = if rng.chance(0.5) {
                len - 1
            } else {
                rng.below(len)
            };
            state.cancellable.remove(at)
        };
        let outcome = async {
            let token = customer.account.token(&self.graphql).await?;
            let payload = self
                .graphql
                .mutate(
                    Some(&token),
                    "orderCancel",
                    ORDER_CANCEL,
                    json!({ "input": { "id": id, "reason": "changed my mind" } }),
                )
                .await?;
            let position =
                position(&payload).ok_or_else(|| Failure::Error("NO_POSITION".to_owned()))?;
            let order_id = uuid_of(&id).ok_or_else(|| Failure::Error("BAD_ORDER_ID".to_owned()))?;
            self.recorder.record(Entry::Cancel {
                order_id,
                position,
                at: Utc::now(),
            });
            self.collector.acknowledge(|a| a.cancellations += 1);
            Ok(())
        }
        .await;
        Some(outcome)
    }

    async fn restock(&self, rng: &mut Rng, n: u64) -> Result<(), Failure> {
        let Some(admin) = &self.admin else {
            // `run` refuses a mix with restocks and no admin.
            return Err(Failure::Error("NO_ADMIN".to_owned()));
        };
        let sku = rng.pick(&self.skus).clone();
        let quantity = rng.between(20, 100);
        let token = admin.token(&self.graphql).await?;
        shop::receive(
            &self.graphql,
            &token,
            &sku,
            quantity,
            &format!("loadgen-restock-{n}"),
            Some(format!("loadgen-{}-restock-{n}", self.run_id)),
            &self.recorder,
            &self.collector,
        )
        .await
    }
}

/// Keeps the cart as the API last answered it.
fn remember_cart(customer: &Customer, payload: &Value) {
    let cart = &payload["cart"];
    let mut state = customer.state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = cart["id"].as_str() {
        state.cart_id = Some(id.to_owned());
    }
    if let Some(lines) = cart["lines"].as_array() {
        state.cart = lines
            .iter()
            .filter_map(|l| {
                let quantity = u32::try_from(l["quantity"].as_u64()?).ok()?;
                Some((l["sku"].as_str()?.to_owned(), quantity))
            })
            .collect();
    }
}
