//! Event-store tests against a real nats-server (one per test, on a free port).

mod audit;
mod catalog;
mod cluster;
mod durability;
mod idempotency;
mod provisioning;
mod sku_registry;
mod store;
mod tally;
mod upcasting;

use domain::Upcasting;
use domain::{Actor, CommandMetadata};
use infra_nats::{
    provision, CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore, StreamSettings,
};
use testkit::NatsServer;

/// A provisioned server and a connected client.
pub async fn provisioned(server: &NatsServer) -> async_nats::Client {
    let client = infra_nats::connect(&server.url())
        .await
        .expect("connecting");
    let js = async_nats::jetstream::new(client.clone());
    provision(&js, &StreamSettings::default())
        .await
        .expect("provisioning");
    client
}

pub async fn store<A: Upcasting>(
    client: &async_nats::Client,
    config: EventStoreConfig,
) -> JetStreamEventStore<A> {
    JetStreamEventStore::new(client.clone(), config)
        .await
        .expect("opening store")
}

pub async fn bus<A: Upcasting>(
    client: &async_nats::Client,
    config: EventStoreConfig,
) -> CommandBus<A>
where
    A::Services: Default,
{
    CommandBus::new(
        store(client, config).await,
        A::Services::default(),
        ConflictPolicy::default(),
    )
}

pub fn uncached() -> EventStoreConfig {
    EventStoreConfig {
        cache_capacity: 0,
        snapshot_every: 0,
        ..Default::default()
    }
}

pub fn metadata() -> CommandMetadata {
    CommandMetadata::new(Actor::System("test".to_owned()))
}
