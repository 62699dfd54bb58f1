//! A shop with a real nats-server, a real PostgreSQL database, the simulated payment
//! provider and any number of saga replicas, for the saga tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::inventory::{Inventory, InventoryCommand};
use domain::order::{Canceller, OrderCommand, OrderLine, OrderStatus};
use domain::payment::{Payment, PaymentMethod};
use domain::saga::{OrderSaga, Phase};
use domain::{Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, Sku};
use infra_nats::{EventStoreConfig, StreamSettings};
use saga::provider::{SimulatedProvider, SimulatorConfig};
use saga::{SagaBuses, SagaConfig, SagaDriver, TriggerConfig};
use testkit::{eventually, NatsServer, TestDatabase};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Saga timeouts short enough for tests.
pub fn fast_saga() -> SagaConfig {
    SagaConfig {
        reserve_timeout: Duration::from_secs(5),
        authorise_timeout: Duration::from_secs(5),
        complete_timeout: Duration::from_secs(5),
        backoff: saga::retry::Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            compensation_attempts: 4,
        },
    }
}

/// A trigger consumer that redelivers quickly after a replica dies.
pub fn fast_trigger() -> TriggerConfig {
    TriggerConfig {
        ack_wait: Duration::from_secs(2),
        ..TriggerConfig::default()
    }
}

pub struct Harness {
    pub nats: NatsServer,
    pub db: TestDatabase,
    pub client: async_nats::Client,
    /// The test's own buses: like a separate API process.
    pub buses: SagaBuses,
    pub provider: Arc<SimulatedProvider>,
    pub simulator: SimulatorConfig,
    pub saga: SagaConfig,
    pub trigger: TriggerConfig,
    stop: watch::Sender<bool>,
    replicas: Vec<JoinHandle<()>>,
}

impl Harness {
    /// A shop with `replicas` saga replicas running.
    pub async fn start(replicas: usize, simulator: SimulatorConfig, saga: SagaConfig) -> Self {
        Self::start_with(replicas, simulator, saga, fast_trigger()).await
    }

    pub async fn start_with(
        replicas: usize,
        simulator: SimulatorConfig,
        saga: SagaConfig,
        trigger: TriggerConfig,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let nats = NatsServer::start();
        let db = TestDatabase::create().await.unwrap();
        projections::migrate(&db.pool).await.unwrap();
        let client = infra_nats::connect(&nats.url()).await.unwrap();
        infra_nats::provision(
            &async_nats::jetstream::new(client.clone()),
            &StreamSettings::default(),
        )
        .await
        .unwrap();
        let provider = Arc::new(
            SimulatedProvider::install(db.pool.clone(), simulator)
                .await
                .unwrap(),
        );
        let buses = SagaBuses::new(client.clone(), EventStoreConfig::default())
            .await
            .unwrap();
        let (stop, _) = watch::channel(false);
        let mut harness = Self {
            nats,
            db,
            client,
            buses,
            provider,
            simulator,
            saga,
            trigger,
            stop,
            replicas: Vec::new(),
        };
        for _ in 0..replicas {
            harness.start_replica().await;
        }
        harness
    }

    /// A driver of its own (own connection and caches), as another process would have.
    pub async fn driver(&self) -> Arc<SagaDriver> {
        let client = infra_nats::connect(&self.nats.url()).await.unwrap();
        let buses = SagaBuses::new(client, EventStoreConfig::default())
            .await
            .unwrap();
        Arc::new(SagaDriver::new(
            Arc::new(buses),
            self.provider.clone(),
            self.db.pool.clone(),
            self.saga.clone(),
        ))
    }

    /// Starts one more saga replica.
    pub async fn start_replica(&mut self) {
        let driver = self.driver().await;
        let js = async_nats::jetstream::new(self.client.clone());
        let mut stopped = self.stop.subscribe();
        let config = self.trigger.clone();
        self.replicas.push(tokio::spawn(async move {
            saga::run(driver, js, config, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
            .unwrap();
        }));
    }

    /// Kills every replica at once, mid-step (as SIGKILL would: nothing finishes).
    pub fn abort_replicas(&mut self) {
        for replica in self.replicas.drain(..) {
            replica.abort();
        }
    }

    pub fn metadata() -> CommandMetadata {
        CommandMetadata {
            command_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            causation_id: Uuid::new_v4(),
            actor: Actor::System("test".to_owned()),
        }
    }

    pub async fn receive(&self, sku: &str, quantity: u32) {
        self.buses
            .inventory
            .execute(
                sku,
                InventoryCommand::ReceiveStock {
                    sku: Sku::parse(sku).unwrap(),
                    quantity,
                    reference: "delivery".to_owned(),
                },
                &Self::metadata(),
            )
            .await
            .unwrap();
    }

    /// Places an order of `lines` (sku, quantity, unit price in cents) paid with `token`.
    pub async fn place(&self, lines: &[(&str, u32, i64)], token: &str) -> OrderId {
        let order_id = OrderId(Uuid::new_v4());
        self.buses
            .orders
            .execute(
                &order_id.to_string(),
                OrderCommand::PlaceOrder {
                    order_id,
                    customer_id: CustomerId(Uuid::from_u128(42)),
                    lines: lines
                        .iter()
                        .map(|(sku, quantity, cents)| OrderLine {
                            sku: Sku::parse(*sku).unwrap(),
                            quantity: *quantity,
                            unit_price: Money::new(*cents, Currency::EUR),
                        })
                        .collect(),
                    currency: Currency::EUR,
                    placed_at: Utc::now(),
                    shipping_address: None,
                    payment_method: PaymentMethod::Card {
                        token: token.to_owned(),
                    },
                },
                &Self::metadata(),
            )
            .await
            .unwrap();
        order_id
    }

    /// The customer cancels; `false` when the order refused (already shipped or cancelled).
    pub async fn cancel(&self, order_id: OrderId) -> bool {
        self.buses
            .orders
            .execute(
                &order_id.to_string(),
                OrderCommand::CancelOrder {
                    reason: "changed my mind".to_owned(),
                    by: Canceller::Customer,
                },
                &Self::metadata(),
            )
            .await
            .is_ok()
    }

    pub async fn saga(&self, order_id: OrderId) -> OrderSaga {
        self.buses
            .sagas
            .store()
            .load_fresh(&order_id.to_string())
            .await
            .unwrap()
            .state()
            .clone()
    }

    /// Waits until the order's saga is at rest and returns its phase.
    pub async fn rested(&self, order_id: OrderId) -> Phase {
        eventually("the saga to rest", Duration::from_secs(60), || async {
            let saga = self.saga(order_id).await;
            saga.phase().filter(|phase| phase.is_at_rest()).cloned()
        })
        .await
    }

    /// Waits until the order's saga is in a phase `wanted` accepts.
    pub async fn wait_for_phase(
        &self,
        order_id: OrderId,
        what: &str,
        wanted: impl Fn(&Phase) -> bool,
    ) -> Phase {
        eventually(what, Duration::from_secs(30), || async {
            let saga = self.saga(order_id).await;
            saga.phase().filter(|phase| wanted(phase)).cloned()
        })
        .await
    }

    /// The provider holds no authorised money and captured none.
    pub async fn assert_no_money_taken(&self) {
        let ledger = self.provider.ledger().await.unwrap();
        assert_eq!(
            (ledger.authorised_held_minor, ledger.captured_minor),
            (0, 0),
            "{ledger:?}"
        );
    }

    pub async fn order_status(&self, order_id: OrderId) -> Option<OrderStatus> {
        self.buses
            .orders
            .store()
            .load_fresh(&order_id.to_string())
            .await
            .unwrap()
            .state()
            .status()
    }

    pub async fn inventory(&self, sku: &str) -> Inventory {
        self.buses
            .inventory
            .store()
            .load_fresh(sku)
            .await
            .unwrap()
            .state()
            .clone()
    }

    pub async fn payment(&self, order_id: OrderId) -> Payment {
        let payment_id = saga::keys::payment_id(order_id);
        self.buses
            .payments
            .store()
            .load_fresh(&payment_id.to_string())
            .await
            .unwrap()
            .state()
            .clone()
    }

    /// How many commits the stream holds for `order_id`'s saga.
    pub async fn saga_commits(&self, order_id: OrderId) -> usize {
        self.buses
            .sagas
            .store()
            .history(&order_id.to_string())
            .await
            .unwrap()
            .len()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for replica in self.replicas.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), replica).await;
        }
    }
}
