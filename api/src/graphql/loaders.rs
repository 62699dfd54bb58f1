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

use super::error::ApiError;

/// Why a batch could not be loaded, as clients will see it (the cause was logged when
/// it was converted); shared by every field of the batch.
pub type LoadError = Arc<ApiError>;

fn load_error(error: impl Into<ApiError>) -> LoadError {
    Arc::new(error.into())
}

/// The error a field answers when its batch failed.
pub fn field_error(error: LoadError) -> ApiError {
    (*error).clone()
}

/// Counts one batch of `loader` with its keys (`shopstream_graphql_loader_batches_total`
/// and `..._keys_total`): how well a page's nested fields are batched.
fn count_batch(loader: &'static str, keys: usize) {
    metrics::counter!("shopstream_graphql_loader_batches_total", "loader" => loader).increment(1);
    metrics::counter!("shopstream_graphql_loader_keys_total", "loader" => loader)
        .increment(keys as u64);
}

/// Declares a loader that reads a batch of keys with one read-model function and keeps
/// each value behind an `Arc` (a page shares what it loaded).
macro_rules! batch_loader {
    ($(#[$doc:meta])* $name:ident: $key:ty => $value:ty, $label:literal, $load:path) => {
        $(#[$doc])*
        pub struct $name(pub PgPool);

        impl Loader<$key> for $name {
            type Value = Arc<$value>;
            type Error = LoadError;

            async fn load(
                &self,
                keys: &[$key],
            ) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                count_batch($label, keys.len());
                let loaded = $load(&self.0, keys).await.map_err(load_error)?;
                Ok(loaded
                    .into_iter()
                    .map(|(key, value)| (key, Arc::new(value)))
                    .collect())
            }
        }
    };
}

batch_loader!(
    /// Products with their variants and descriptions, by id.
    ProductDetails: ProductId => ProductDetail, "product_details", projections::catalog::products_by_ids
);
batch_loader!(
    /// Orders with their detail (shipment, cancellation, refund, address), by order.
    OrderDetails: OrderId => OrderDetail, "order_details", projections::orders::details_by_ids
);
batch_loader!(
    /// Orders' lines, by order.
    OrderLines: OrderId => Vec<OrderLineView>, "order_lines", projections::orders::lines_for_orders
);
batch_loader!(
    /// Orders' status timelines, by order.
    OrderTimelines: OrderId => Vec<StatusChange>, "order_timelines", projections::orders::timelines_for_orders
);
batch_loader!(
    /// Orders' payments, by order.
    OrderPayments: OrderId => Vec<PaymentView>, "order_payments", projections::payments::payments_for_orders
);

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
