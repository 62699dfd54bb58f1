//! The command side the API sends mutations through: one bus per aggregate type, the
//! catalog's SKU registry, and the payment provider for refunds.

use std::sync::Arc;

use domain::inventory::Inventory;
use domain::order::Order;
use domain::payment::Payment;
use infra_nats::{
    CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore, ProductCommands,
    SkuRegistry, StoreError,
};
use saga::provider::PaymentProvider;

/// Everything a mutation may change.
pub struct Commands {
    /// Products, with catalog-wide SKU uniqueness.
    pub products: ProductCommands,
    /// Stock per SKU.
    pub inventory: CommandBus<Inventory>,
    /// Orders.
    pub orders: CommandBus<Order>,
    /// Payments.
    pub payments: CommandBus<Payment>,
    /// Which product owns which SKU.
    pub skus: SkuRegistry,
    /// Where refunds are sent.
    pub provider: Arc<dyn PaymentProvider>,
}

impl Commands {
    /// Opens the buses on the provisioned event store.
    ///
    /// # Errors
    /// When the stream or the SKU bucket cannot be opened.
    pub async fn open(
        client: async_nats::Client,
        config: EventStoreConfig,
        provider: Arc<dyn PaymentProvider>,
    ) -> Result<Self, StoreError> {
        let jetstream = async_nats::jetstream::new(client.clone());
        let skus = SkuRegistry::open(&jetstream).await?;
        let product_store = JetStreamEventStore::new(client.clone(), config.clone())
            .await?
            .with_upcasters(domain::product::upcasters());
        Ok(Self {
            products: ProductCommands::new(
                CommandBus::new(product_store, (), ConflictPolicy::default()),
                skus.clone(),
            ),
            inventory: CommandBus::new(
                JetStreamEventStore::new(client.clone(), config.clone())
                    .await?
                    .with_upcasters(domain::inventory::upcasters()),
                (),
                // Restocks race with the sagas' reservations on hot SKUs.
                ConflictPolicy { max_retries: 50 },
            ),
            orders: CommandBus::new(
                JetStreamEventStore::new(client.clone(), config.clone())
                    .await?
                    .with_upcasters(domain::order::upcasters()),
                (),
                ConflictPolicy::default(),
            ),
            payments: CommandBus::new(
                JetStreamEventStore::new(client, config)
                    .await?
                    .with_upcasters(domain::payment::upcasters()),
                (),
                ConflictPolicy::default(),
            ),
            skus,
            provider,
        })
    }
}
