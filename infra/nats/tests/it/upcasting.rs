use async_nats::HeaderMap;
use cqrs_es::EventStore;
use domain::inventory::{
    upcasters, Inventory, InventoryCommand, InventoryEvent, UNRECORDED_REASON,
};
use domain::Sku;
use infra_nats::{subjects, CommandBus, EventStoreConfig, JetStreamEventStore};
use serde_json::json;
use testkit::NatsServer;

use crate::{metadata, provisioned};

/// Stores a commit as an older release wrote it: `StockAdjusted` version 1.0 had no reason.
async fn store_version_1_adjustment(client: &async_nats::Client, sku: &str) {
    let envelope = json!({
        "aggregate_type": "inventory",
        "aggregate_id": sku,
        "first_sequence": 2,
        "command_id": "0190b6c2-0000-7000-8000-0000000000aa",
        "correlation_id": "0190b6c2-0000-7000-8000-0000000000aa",
        "causation_id": "0190b6c2-0000-7000-8000-0000000000aa",
        "actor": "system:legacy",
        "timestamp": "2025-01-01T00:00:00Z",
        "events": [{
            "event_id": "0190b6c2-0000-7000-8000-0000000000ab",
            "event_type": "StockAdjusted",
            "event_version": "1.0",
            "payload": { "StockAdjusted": { "sku": sku, "delta": -3 } }
        }]
    });
    let mut headers = HeaderMap::new();
    headers.insert(subjects::headers::EXPECTED_LAST_SUBJECT_SEQUENCE, "1");
    async_nats::jetstream::new(client.clone())
        .publish_with_headers(
            subjects::aggregate_subject("inventory", sku),
            headers,
            serde_json::to_vec(&envelope).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// An inventory that received 10 units and then, in an older release, was adjusted by -3.
async fn inventory_with_a_legacy_adjustment(
    client: &async_nats::Client,
    sku: &str,
    upcasters: Vec<Box<dyn cqrs_es::persist::EventUpcaster>>,
) -> (CommandBus<Inventory>, Sku) {
    let store = JetStreamEventStore::<Inventory>::with_upcasters(
        client.clone(),
        EventStoreConfig::default(),
        upcasters,
    )
    .await
    .unwrap();
    let bus = CommandBus::new(store, (), Default::default());
    let sku = Sku::parse(sku).unwrap();
    let receive = InventoryCommand::ReceiveStock {
        sku: sku.clone(),
        quantity: 10,
        reference: "PO-1".into(),
    };
    bus.execute(sku.as_str(), receive, &metadata())
        .await
        .unwrap();
    store_version_1_adjustment(client, sku.as_str()).await;
    (bus, sku)
}

#[tokio::test]
async fn an_old_event_version_is_upcast_when_loaded() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let (bus, sku) = inventory_with_a_legacy_adjustment(&client, "MUG-BLUE", upcasters()).await;

    let events = bus.store().load_events(sku.as_str()).await.unwrap();
    assert_eq!(
        events[1].payload,
        InventoryEvent::StockAdjusted {
            sku: sku.clone(),
            delta: -3,
            reason: UNRECORDED_REASON.to_owned()
        }
    );
    let loaded = bus.store().load_fresh(sku.as_str()).await.unwrap();
    assert_eq!(loaded.state().on_hand(), 7);

    // New commands decide on the upcast state and append after the old event.
    let reserve = InventoryCommand::ReserveStock {
        order_id: domain::OrderId::from_uuid(uuid::Uuid::now_v7()),
        quantity: 7,
    };
    let outcome = bus
        .execute(sku.as_str(), reserve, &metadata())
        .await
        .unwrap();
    assert_eq!(outcome.version, 3);
}

#[tokio::test]
async fn without_the_upcaster_an_old_event_is_a_decode_error_not_a_silent_default() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let (bus, sku) = inventory_with_a_legacy_adjustment(&client, "MUG-RED", Vec::new()).await;
    let Err(error) = bus.store().load_fresh(sku.as_str()).await else {
        panic!("loading a version 1.0 event without its upcaster must fail");
    };
    assert!(error.to_string().contains("StockAdjusted v1.0"), "{error}");
}
