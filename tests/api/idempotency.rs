//! Idempotency keys: the same key twice gives the same result and one effect; the same
//! key with other input is refused.

use serde_json::json;

use crate::support::{address, codes, order_until, stock_until, Shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_mutation_with_its_key_has_one_effect_and_the_same_answer() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("PEN-1", "2.00")], 0).await;

    let receive = r#"mutation($key: String!, $q: Int!) { inventoryReceive(input: { sku: "PEN-1", quantity: $q,
        reference: "PO-7", idempotencyKey: $key }) { inventoryLevel { onHand } userErrors { code } position } }"#;
    let first = shop
        .ok(Some(&admin), receive, json!({ "key": "po-7", "q": 40 }))
        .await;
    let second = shop
        .ok(Some(&admin), receive, json!({ "key": "po-7", "q": 40 }))
        .await;
    assert_eq!(first, second);
    assert_eq!(first["inventoryReceive"]["inventoryLevel"]["onHand"], 40);
    let reused = shop
        .gql(Some(&admin), receive, json!({ "key": "po-7", "q": 41 }))
        .await;
    assert_eq!(codes(&reused), ["CONFLICT"]);

    let customer = shop.customer().await;
    let place = "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } userErrors { code } position } }";
    let input = json!({ "input": { "lines": [{ "sku": "PEN-1", "quantity": 3 }], "paymentToken": "tok_visa",
                                   "shippingAddress": address(), "idempotencyKey": "checkout-1" } });
    let first = shop.ok(Some(&customer), place, input.clone()).await;
    let second = shop.ok(Some(&customer), place, input.clone()).await;
    assert_eq!(
        first["orderPlace"]["order"]["id"],
        second["orderPlace"]["order"]["id"]
    );
    assert_eq!(
        first["orderPlace"]["position"],
        second["orderPlace"]["position"]
    );
    let id = first["orderPlace"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    order_until(&shop, &customer, &id, |o| o["status"] == "CONFIRMED").await;
    // Another customer's same key is their own key.
    let other = shop.customer().await;
    let theirs = shop.ok(Some(&other), place, input).await;
    assert_ne!(
        theirs["orderPlace"]["order"]["id"],
        first["orderPlace"]["order"]["id"]
    );
    order_until(
        &shop,
        &other,
        theirs["orderPlace"]["order"]["id"].as_str().unwrap(),
        |o| o["status"] == "CONFIRMED",
    )
    .await;

    // One order per customer, each charged once; stock taken once per order.
    let orders = shop
        .ok(Some(&admin), "{ orders { totalCount } }", json!({}))
        .await;
    assert_eq!(orders["orders"]["totalCount"], 2);
    stock_until(
        &shop,
        &admin,
        "PEN-1",
        json!({ "onHand": 34, "reserved": 0 }),
    )
    .await;

    // A refund retried with its key refunds once.
    shop.ok(Some(&admin), r#"mutation($id: ID!) { orderShip(input: { id: $id, carrier: "c", tracking: "t" }) { position } }"#, json!({ "id": id })).await;
    shop.ok(
        Some(&admin),
        "mutation($id: ID!) { orderDeliver(input: { id: $id }) { position } }",
        json!({ "id": id }),
    )
    .await;
    let refund = r#"mutation($id: ID!) { paymentRefund(input: { orderId: $id, amount: { amount: "2.00", currencyCode: "EUR" },
        reason: "goodwill", idempotencyKey: "r-1" }) { order { payments { refunded { amount } } } userErrors { code } position } }"#;
    let first = shop.ok(Some(&admin), refund, json!({ "id": id })).await;
    let second = shop.ok(Some(&admin), refund, json!({ "id": id })).await;
    assert_eq!(first["paymentRefund"]["userErrors"], json!([]), "{first}");
    assert_eq!(
        first["paymentRefund"]["position"],
        second["paymentRefund"]["position"]
    );
    assert_eq!(
        second["paymentRefund"]["order"]["payments"][0]["refunded"]["amount"],
        "2.00"
    );
}
