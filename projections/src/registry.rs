//! Every projection the `project` role runs, by name.

use std::sync::Arc;

use crate::catalog::CatalogProjection;
use crate::inventory::InventoryProjection;
use crate::notifications::NotifierProjection;
use crate::orders::OrdersProjection;
use crate::payments::PaymentsProjection;
use crate::projection::Projection;
use crate::sagas::SagasProjection;
use crate::sales::SalesProjection;

/// All projections, in the order they are started.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(CatalogProjection),
        Arc::new(InventoryProjection),
        Arc::new(OrdersProjection),
        Arc::new(PaymentsProjection),
        Arc::new(SagasProjection),
        Arc::new(SalesProjection),
        Arc::new(NotifierProjection),
    ]
}

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
