//! Auditors read any aggregate's history and past state; customers may not.

use api::auth::Role;
use serde_json::json;

use crate::support::{address, codes, order_until, Shop};

const HISTORY: &str = "query($t: String!, $id: String!) {
    aggregateHistory(aggregateType: $t, aggregateId: $id, first: 10) {
        position version eventType actor commandId correlationId eventId payload commitHash
    }
}";
const STATE: &str = "query($t: String!, $id: String!, $v: Int) {
    aggregateState(aggregateType: $t, aggregateId: $id, version: $v)
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_an_orders_history_and_past_state_and_a_customer_may_not() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("TEE-S", "15.00")], 5).await;
    let (alice_id, alice) = shop.account(Role::Customer).await;
    let (auditor_id, auditor) = shop.account(Role::Auditor).await;
    let placed = shop
        .ok(
            Some(&alice),
            "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } } }",
            json!({ "input": { "lines": [{ "sku": "TEE-S", "quantity": 1 }], "paymentToken": "tok_visa",
                               "shippingAddress": address() } }),
        )
        .await;
    let order = placed["orderPlace"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    order_until(&shop, &alice, &order, |o| o["status"] == "CONFIRMED").await;
    let order_id = order.rsplit('/').next().unwrap().to_owned();
    let vars = json!({ "t": "order", "id": order_id, "v": 1 });

    let history = shop.ok(Some(&auditor), HISTORY, vars.clone()).await;
    let events = history["aggregateHistory"].as_array().unwrap();
    assert!(events.len() >= 2, "{history}");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["eventType"], "OrderPlaced");
    assert_eq!(events[0]["actor"], format!("user:{alice_id}"));
    assert!(events[0]["commitHash"].is_string(), "{history}");

    let state = shop.ok(Some(&auditor), STATE, vars.clone()).await;
    assert_eq!(
        state["aggregateState"]["placed"]["status"], "Placed",
        "{state}"
    );

    for query in [HISTORY, STATE] {
        let refused = shop.gql(Some(&alice), query, vars.clone()).await;
        assert_eq!(codes(&refused), ["FORBIDDEN"], "{refused}");
    }

    // Both reads were recorded with the auditor as the actor.
    let recorded: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, action FROM audit.access_log ORDER BY access_id")
            .fetch_all(&shop.db())
            .await
            .unwrap();
    let auditor_actor = format!("user:{auditor_id}");
    assert_eq!(
        recorded,
        [
            (auditor_actor.clone(), "history".to_owned()),
            (auditor_actor, "state".to_owned())
        ]
    );
}
