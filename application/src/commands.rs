//! The command side: one bus per aggregate type, built once per process from one NATS
//! connection, shared by the use cases, the saga and the operator commands.

use std::sync::Arc;

use domain::inventory::Inventory;
use domain::order::Order;
use domain::payment::Payment;
use domain::saga::OrderSaga;
use infra_nats::{
    CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore, ProductCommands,
    SkuRegistry, StoreError,
};
use saga::SagaBuses;

/// Every aggregate's command bus, and the catalog's SKU registry.
pub struct CommandSide {
    /// Products, with catalog-wide SKU uniqueness.
    pub products: ProductCommands,
    /// Which product owns which SKU.
    pub skus: SkuRegistry,
    /// Orders, inventory, payments and the sagas: the buses the order saga drives too,
    /// shared with it rather than opened twice.
    pub buses: Arc<SagaBuses>,
}

impl CommandSide {
    /// Opens every bus on the provisioned event store (each store decodes through its
    /// aggregate's own upcasters).
    ///
    /// # Errors
    /// When the stream, the snapshot bucket or the SKU bucket cannot be opened.
    pub async fn open(
        client: async_nats::Client,
        config: EventStoreConfig,
    ) -> Result<Self, StoreError> {
        let jetstream = async_nats::jetstream::new(client.clone());
        let skus = SkuRegistry::open(&jetstream).await?;
        let products = ProductCommands::new(
            CommandBus::new(
                JetStreamEventStore::new(client.clone(), config.clone()).await?,
                (),
                ConflictPolicy::default(),
            ),
            skus.clone(),
        );
        let buses = SagaBuses::new(client, config).await?;
        Ok(Self {
            products,
            skus,
            buses: Arc::new(buses),
        })
    }

    /// Orders.
    pub fn orders(&self) -> &CommandBus<Order> {
        &self.buses.orders
    }

    /// Stock per SKU.
    pub fn inventory(&self) -> &CommandBus<Inventory> {
        &self.buses.inventory
    }

    /// Payments.
    pub fn payments(&self) -> &CommandBus<Payment> {
        &self.buses.payments
    }

    /// The order sagas.
    pub fn sagas(&self) -> &CommandBus<OrderSaga> {
        &self.buses.sagas
    }
}
