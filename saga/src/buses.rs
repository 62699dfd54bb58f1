//! The command buses a saga sends its steps through: one per aggregate type.

use domain::inventory::Inventory;
use domain::order::Order;
use domain::payment::Payment;
use domain::saga::OrderSaga;
use infra_nats::{CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore, StoreError};

/// One bus per aggregate the saga touches, all on the same NATS connection.
pub struct SagaBuses {
    /// Orders: marked reserved, authorised, confirmed, or cancelled.
    pub orders: CommandBus<Order>,
    /// Inventory, one aggregate per SKU: reserve, commit, release, return.
    pub inventory: CommandBus<Inventory>,
    /// Payments: what the provider answered.
    pub payments: CommandBus<Payment>,
    /// The sagas themselves.
    pub sagas: CommandBus<OrderSaga>,
}

impl SagaBuses {
    /// Buses on a provisioned server.
    ///
    /// # Errors
    /// [`StoreError`] when the snapshot bucket is missing.
    pub async fn new(
        client: async_nats::Client,
        config: EventStoreConfig,
    ) -> Result<Self, StoreError> {
        // Hot SKUs see many concurrent reservations: allow more conflict retries there.
        let hot = ConflictPolicy { max_retries: 50 };
        Ok(Self {
            orders: CommandBus::new(
                JetStreamEventStore::new(client.clone(), config.clone()).await?,
                (),
                ConflictPolicy::default(),
            ),
            inventory: CommandBus::new(
                JetStreamEventStore::new(client.clone(), config.clone()).await?,
                (),
                hot,
            ),
            payments: CommandBus::new(
                JetStreamEventStore::new(client.clone(), config.clone()).await?,
                (),
                ConflictPolicy::default(),
            ),
            sagas: CommandBus::new(
                JetStreamEventStore::new(client, config).await?,
                (),
                ConflictPolicy::default(),
            ),
        })
    }
}
