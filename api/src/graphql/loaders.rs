//! DataLoaders: one query per kind of nested field for a whole page, not one per row
//! (a page of 100 orders with their lines, timelines and payments costs four queries).
//! A fresh set is made per request, so nothing is cached across requests or callers.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use domain::{OrderId, ProductId};
use projections::catalog::ProductDetail;
use projections::orders::{OrderDetail, OrderLineView, StatusChange};
use projections::payments::PaymentView;
use sqlx::PgPool;

/// Why a batch could not be loaded (logged by the resolver, not sent).
pub type LoadError = Arc<String>;

fn load_error(error: impl std::fmt::Display) -> LoadError {
    Arc::new(error.to_string())
}

/// Counts one batch of `loader` with its keys (`shopstream_graphql_loader_batches_total`
/// and `..._keys_total`): how well a page's nested fields are batched.
fn count_batch(loader: &'static str, keys: usize) {
    metrics::counter!("shopstream_graphql_loader_batches_total", "loader" => loader).increment(1);
    metrics::counter!("shopstream_graphql_loader_keys_total", "loader" => loader)
        .increment(keys as u64);
}

/// Products with their variants and descriptions, by id.
pub struct ProductDetails(pub PgPool);

impl Loader<ProductId> for ProductDetails {
    type Value = Arc<ProductDetail>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProductId],
    ) -> Result<HashMap<ProductId, Self::Value>, Self::Error> {
        count_batch("product_details", keys.len());
        let details = projections::catalog::products_by_ids(&self.0, keys)
            .await
            .map_err(load_error)?;
        Ok(details
            .into_iter()
            .map(|(id, detail)| (id, Arc::new(detail)))
            .collect())
    }
}

/// Orders with their detail (shipment, cancellation, refund, address), by order.
pub struct OrderDetails(pub PgPool);

impl Loader<OrderId> for OrderDetails {
    type Value = Arc<OrderDetail>;
    type Error = LoadError;

    async fn load(&self, keys: &[OrderId]) -> Result<HashMap<OrderId, Self::Value>, Self::Error> {
        count_batch("order_details", keys.len());
        let details = projections::orders::details_by_ids(&self.0, keys)
            .await
            .map_err(load_error)?;
        Ok(details
            .into_iter()
            .map(|(id, detail)| (id, Arc::new(detail)))
            .collect())
    }
}

/// Orders' lines, by order.
pub struct OrderLines(pub PgPool);

impl Loader<OrderId> for OrderLines {
    type Value = Arc<Vec<OrderLineView>>;
    type Error = LoadError;

    async fn load(&self, keys: &[OrderId]) -> Result<HashMap<OrderId, Self::Value>, Self::Error> {
        count_batch("order_lines", keys.len());
        let lines = projections::orders::lines_for_orders(&self.0, keys)
            .await
            .map_err(load_error)?;
        Ok(lines
            .into_iter()
            .map(|(id, lines)| (id, Arc::new(lines)))
            .collect())
    }
}

/// Orders' status timelines, by order.
pub struct OrderTimelines(pub PgPool);

impl Loader<OrderId> for OrderTimelines {
    type Value = Arc<Vec<StatusChange>>;
    type Error = LoadError;

    async fn load(&self, keys: &[OrderId]) -> Result<HashMap<OrderId, Self::Value>, Self::Error> {
        count_batch("order_timelines", keys.len());
        let timelines = projections::orders::timelines_for_orders(&self.0, keys)
            .await
            .map_err(load_error)?;
        Ok(timelines
            .into_iter()
            .map(|(id, timeline)| (id, Arc::new(timeline)))
            .collect())
    }
}

/// Orders' payments, by order.
pub struct OrderPayments(pub PgPool);

impl Loader<OrderId> for OrderPayments {
    type Value = Arc<Vec<PaymentView>>;
    type Error = LoadError;

    async fn load(&self, keys: &[OrderId]) -> Result<HashMap<OrderId, Self::Value>, Self::Error> {
        count_batch("order_payments", keys.len());
        let payments = projections::payments::payments_for_orders(&self.0, keys)
            .await
            .map_err(load_error)?;
        Ok(payments
            .into_iter()
            .map(|(id, payments)| (id, Arc::new(payments)))
            .collect())
    }
}

/// Adds a fresh set of loaders to a subscription connection's data.
pub fn insert_into(data: &mut async_graphql::Data, pool: &PgPool) {
    data.insert(DataLoader::new(ProductDetails(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(OrderDetails(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(OrderLines(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(OrderTimelines(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(OrderPayments(pool.clone()), tokio::spawn));
}

/// Adds a fresh set of loaders to a request.
pub fn add_to(request: async_graphql::Request, pool: &PgPool) -> async_graphql::Request {
    request
        .data(DataLoader::new(ProductDetails(pool.clone()), tokio::spawn))
        .data(DataLoader::new(OrderDetails(pool.clone()), tokio::spawn))
        .data(DataLoader::new(OrderLines(pool.clone()), tokio::spawn))
        .data(DataLoader::new(OrderTimelines(pool.clone()), tokio::spawn))
        .data(DataLoader::new(OrderPayments(pool.clone()), tokio::spawn))
}
