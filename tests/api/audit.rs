//! Auditors read any aggregate's history and past state; customers may not.

use api::auth::Role;
use serde_json::{json, Value};

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

const ORDER_AS_OF: &str = "query($id: ID!, $p: String!) {
    orderAsOf(id: $id, position: $p) { position lastApplied commits order }
}";

/// `STOCK_RESERVED` and `stock_reserved` or `StockReserved` name the same status.
fn same_word(a: &Value, b: &Value) -> bool {
    let word = |v: &Value| {
        v.as_str()
            .unwrap_or_default()
            .replace('_', "")
            .to_lowercase()
    };
    word(a) == word(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_sees_an_order_as_the_read_model_showed_it_at_each_position() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("MUG-A", "8.50")], 5).await;
    let (_, alice) = shop.account(Role::Customer).await;
    let (auditor_id, auditor) = shop.account(Role::Auditor).await;
    // A declined card: the saga opens a payment the order never names, cancels the order,
    // and the view as of the end must still show the payment declined.
    let placed = shop
        .ok(
            Some(&alice),
            "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } } }",
            json!({ "input": { "lines": [{ "sku": "MUG-A", "quantity": 2 }], "paymentToken": "tok_declined",
                               "shippingAddress": address() } }),
        )
        .await;
    let order = placed["orderPlace"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = order_until(&shop, &alice, &order, |o| {
        o["status"] == "CANCELLED" && o["paymentState"] == "DECLINED"
    })
    .await;
    let timeline = live["statusTimeline"].as_array().unwrap();
    assert!(timeline.len() >= 2, "{live}");

    for (index, change) in timeline.iter().enumerate() {
        let position = change["position"].as_str().unwrap();
        let data = shop
            .ok(
                Some(&auditor),
                ORDER_AS_OF,
                json!({ "id": order, "p": position }),
            )
            .await;
        let view = &data["orderAsOf"];
        assert_eq!(view["position"], position, "{view}");
        assert_eq!(view["lastApplied"], position, "{view}");
        let past = &view["order"];
        assert!(
            same_word(&past["summary"]["status"], &change["status"]),
            "{view}"
        );
        let past_timeline = past["timeline"].as_array().unwrap();
        assert_eq!(past_timeline.len(), index + 1, "{view}");
        for (then, now) in past_timeline.iter().zip(timeline) {
            assert!(same_word(&then["status"], &now["status"]), "{view}");
            assert_eq!(
                then["position"].to_string(),
                now["position"].as_str().unwrap()
            );
        }
        assert_eq!(past["summary"]["total"]["amount_minor"], 1700, "{view}");
    }
    // As of the log's end, the view is the live one, payment state included (found
    // through the saga, since the order never names a declined payment).
    let last = timeline.last().unwrap()["position"].as_str().unwrap();
    let latest = shop
        .ok(
            Some(&auditor),
            ORDER_AS_OF,
            json!({ "id": order, "p": last }),
        )
        .await;
    assert!(
        same_word(
            &latest["orderAsOf"]["order"]["summary"]["payment_state"],
            &live["paymentState"]
        ),
        "{latest} vs {live}"
    );

    // Refusals: a customer, a position past the log's end, an unknown order.
    let refused = shop
        .gql(Some(&alice), ORDER_AS_OF, json!({ "id": order, "p": last }))
        .await;
    assert_eq!(codes(&refused), ["FORBIDDEN"], "{refused}");
    let past_end = shop
        .gql(
            Some(&auditor),
            ORDER_AS_OF,
            json!({ "id": order, "p": "999999999" }),
        )
        .await;
    assert_eq!(codes(&past_end), ["BAD_USER_INPUT"], "{past_end}");
    let unknown = shop
        .gql(
            Some(&auditor),
            ORDER_AS_OF,
            json!({ "id": format!("gid://shopstream/Order/{}", uuid::Uuid::new_v4()), "p": last }),
        )
        .await;
    assert_eq!(codes(&unknown), ["NOT_FOUND"], "{unknown}");

    // Every read the auditor made is on record.
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.access_log WHERE actor = $1 AND action = 'order_as_of'",
    )
    .bind(format!("user:{auditor_id}"))
    .fetch_one(&shop.db())
    .await
    .unwrap();
    assert_eq!(recorded as usize, timeline.len() + 3);
}
