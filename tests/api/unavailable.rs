//! A backing service out of reach: the API answers `UNAVAILABLE` (not `INTERNAL`), and
//! the same mutation retried with its idempotency key once the service is back has one
//! effect.

use std::time::Duration;

use serde_json::json;

use crate::support::{address, codes, order_until, Shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_while_nats_is_down_is_unavailable_and_its_retry_places_it_once() {
    let mut shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("LAMP-1", "30.00")], 5).await;
    let customer = shop.customer().await;
    let place = "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } userErrors { code } position } }";
    let input = json!({ "input": { "lines": [{ "sku": "LAMP-1", "quantity": 2 }], "paymentToken": "tok_visa",
                                   "shippingAddress": address(), "idempotencyKey": "lamp-order" } });

    shop.kill_nats();
    let down = shop.gql(Some(&customer), place, input.clone()).await;
    assert_eq!(codes(&down), ["UNAVAILABLE"], "{down}");
    assert!(
        !down.to_string().contains("nats"),
        "the cause is logged, not sent: {down}"
    );

    shop.restart_nats();
    let placed = testkit::eventually(
        "the retried order to be placed",
        Duration::from_secs(60),
        || async {
            let body = shop.gql(Some(&customer), place, input.clone()).await;
            body["data"]["orderPlace"]["order"]["id"]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    order_until(&shop, &customer, &placed, |o| o["status"] == "CONFIRMED").await;
    let again = shop.ok(Some(&customer), place, input).await;
    assert_eq!(again["orderPlace"]["order"]["id"], placed.as_str());
    let mine = shop
        .ok(
            Some(&customer),
            "{ me { orders(first: 10) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["me"]["orders"]["totalCount"], 1, "one order: {mine}");
}
