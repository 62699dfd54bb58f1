//! Role boundaries: who may read and change what, by every path.

use api::auth::Role;
use serde_json::json;

use crate::support::{address, codes, order_until, Shop};

const ORDER_BY_ID: &str =
    "query($id: ID!) { order(id: $id) { id lines { sku } payments { status } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_never_reads_another_customers_order_by_any_path() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("TEE-S", "15.00")], 5).await;
    let (alice_id, alice) = shop.account(Role::Customer).await;
    let (_, mallory) = shop.account(Role::Customer).await;
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

    // By id: not found (its existence does not leak), with nothing of it in `data`.
    let by_id = shop
        .gql(Some(&mallory), ORDER_BY_ID, json!({ "id": order }))
        .await;
    assert_eq!(codes(&by_id), ["NOT_FOUND"], "{by_id}");
    assert!(by_id["data"].is_null(), "{by_id}");
    // Through `me`: only her own (none).
    let mine = shop
        .ok(
            Some(&mallory),
            "{ me { orders(first: 50) { totalCount nodes { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["me"]["orders"]["totalCount"], 0);
    // Through the admin list, filtered by Alice: forbidden.
    let alice_gid = format!("gid://shopstream/Account/{alice_id}");
    let listed = shop
        .gql(
            Some(&mallory),
            "query($c: ID!) { orders(filter: { customer: $c }) { nodes { id } } }",
            json!({ "c": alice_gid }),
        )
        .await;
    assert_eq!(codes(&listed), ["FORBIDDEN"]);
    // Cancelling it: not found, and nothing changed.
    let cancel = shop
        .gql(
            Some(&mallory),
            r#"mutation($id: ID!) { orderCancel(input: { id: $id, reason: "mine now" }) { userErrors { code } } }"#,
            json!({ "id": order }),
        )
        .await;
    assert_eq!(codes(&cancel), ["NOT_FOUND"]);
    // Subscribing to it is refused the same way (tested in subscriptions).
    // Alice, an admin and an auditor see it.
    for token in [&alice, &admin, &shop.account(Role::Auditor).await.1] {
        let seen = shop
            .ok(Some(token), ORDER_BY_ID, json!({ "id": order }))
            .await;
        assert_eq!(seen["order"]["id"], order.as_str());
    }
    let still = order_until(&shop, &alice, &order, |o| o["status"] == "CONFIRMED").await;
    assert_eq!(still["status"], "CONFIRMED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_held_to_its_own_operations() {
    let shop = Shop::start().await;
    let customer = shop.customer().await;
    let auditor = shop.account(Role::Auditor).await.1;
    let operator = shop.account(Role::Operator).await.1;
    let create = r#"mutation { productCreate(input: { name: "X", category: "Y",
        variants: [{ sku: "X-1", name: "x", price: { amount: "1.00", currencyCode: "EUR" } }] }) { position } }"#;
    let cases: Vec<(Option<&str>, &str, &str)> = vec![
        (None, create, "UNAUTHENTICATED"),
        (Some(&customer), create, "FORBIDDEN"),
        (Some(&auditor), create, "FORBIDDEN"),
        (Some(&operator), create, "FORBIDDEN"),
        (None, "{ cart { id } }", "UNAUTHENTICATED"),
        (Some(&auditor), "{ cart { id } }", "FORBIDDEN"),
        (
            Some(&customer),
            r#"{ inventory(sku: "X-1") { onHand } }"#,
            "FORBIDDEN",
        ),
        (Some(&customer), "{ orders { totalCount } }", "FORBIDDEN"),
        (Some(&operator), "{ orders { totalCount } }", "FORBIDDEN"),
        (
            Some(&customer),
            "{ salesReport(from: \"2026-01-01\", to: \"2026-01-02\", groupBy: DAY) { key } }",
            "FORBIDDEN",
        ),
        (
            Some(&auditor),
            r#"mutation { inventoryReceive(input: { sku: "X-1", quantity: 1, reference: "r" }) { position } }"#,
            "FORBIDDEN",
        ),
        (
            Some(&customer),
            r#"mutation { orderShip(input: { id: "gid://shopstream/Order/00000000-0000-0000-0000-000000000001", carrier: "c", tracking: "t" }) { position } }"#,
            "FORBIDDEN",
        ),
    ];
    for (token, query, code) in cases {
        let body = shop.gql(token, query, json!({})).await;
        assert_eq!(codes(&body), [code], "{query}: {body}");
    }
    // Nothing was created by any of them.
    let admin = shop.admin().await;
    let products = shop
        .ok(Some(&admin), "{ products { totalCount } }", json!({}))
        .await;
    assert_eq!(products["products"]["totalCount"], 0);
    // Anonymous visitors may browse.
    let browse = shop
        .gql(
            None,
            "{ products { totalCount } categories { name } }",
            json!({}),
        )
        .await;
    assert!(browse.get("errors").is_none(), "{browse}");
}
