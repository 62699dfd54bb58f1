//! The whole shopping flow, as a customer and as an admin.

use serde_json::json;

use crate::support::{address, order_until, stock_until, Shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_browses_fills_a_cart_checks_out_and_the_admin_ships_and_refunds() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    let (product, position) = shop
        .product(&admin, &[("MUG-BLUE", "12.50"), ("MUG-RED", "9.99")], 10)
        .await;

    // Browsing: the published product, with prices, stock and variants.
    let customer = shop.customer().await;
    let page = shop
        .gql_after(
            Some(&customer),
            "{ products(first: 10, filter: { inStock: true }) { totalCount
                 nodes { id name price { amount currencyCode } available variants { sku price { amount } } }
                 pageInfo { hasNextPage } } }",
            json!({}),
            Some(&position),
        )
        .await;
    assert!(page.get("errors").is_none(), "{page}");
    let products = &page["data"]["products"];
    assert_eq!(products["totalCount"], 1, "{page}");
    assert_eq!(products["nodes"][0]["id"], product.as_str());
    assert_eq!(
        products["nodes"][0]["price"],
        json!({ "amount": "9.99", "currencyCode": "EUR" })
    );
    assert_eq!(products["nodes"][0]["available"], 20);

    // The cart.
    let cart = shop
        .ok(
            Some(&customer),
            r#"mutation { cartLinesAdd(input: { lines: [{ sku: "MUG-BLUE", quantity: 2 }, { sku: "MUG-RED", quantity: 1 }] }) {
                cart { id lines { sku quantity lineTotal { amount } available } } userErrors { code } } }"#,
            json!({}),
        )
        .await;
    let cart_id = cart["cartLinesAdd"]["cart"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        cart["cartLinesAdd"]["cart"]["lines"][0]["lineTotal"]["amount"],
        "25.00"
    );
    let updated = shop
        .ok(
            Some(&customer),
            r#"mutation { cartLinesUpdate(input: { lines: [{ sku: "MUG-RED", quantity: 3 }] }) {
                cart { lines { sku quantity } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        updated["cartLinesUpdate"]["cart"]["lines"],
        json!([{ "sku": "MUG-BLUE", "quantity": 2 }, { "sku": "MUG-RED", "quantity": 3 }])
    );

    // Checkout from the cart: placed, then driven by the saga to confirmed.
    let placed = shop
        .ok(
            Some(&customer),
            "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) {
                order { id status total { amount currencyCode } shippingAddress { city countryCode } }
                userErrors { code message } position } }",
            json!({ "input": { "cartId": cart_id, "paymentToken": "tok_visa", "shippingAddress": address() } }),
        )
        .await;
    assert_eq!(placed["orderPlace"]["userErrors"], json!([]), "{placed}");
    let order = &placed["orderPlace"]["order"];
    assert_eq!(
        order["total"],
        json!({ "amount": "54.97", "currencyCode": "EUR" })
    );
    let order_id = order["id"].as_str().unwrap().to_owned();
    // The orders and payments read models are projected separately: wait for both.
    let confirmed = order_until(&shop, &customer, &order_id, |o| {
        o["status"] == "CONFIRMED" && o["payments"][0]["captured"]["amount"] == "54.97"
    })
    .await;
    assert_eq!(confirmed["paymentState"], "CAPTURED");
    assert_eq!(confirmed["payments"][0]["captured"]["amount"], "54.97");
    let statuses: Vec<&str> = confirmed["statusTimeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "PLACED",
            "STOCK_RESERVED",
            "PAYMENT_AUTHORISED",
            "CONFIRMED"
        ]
    );

    // The ordered lines left the cart; the order is in the customer's history.
    let me = shop
        .ok(
            Some(&customer),
            "{ me { account { role } cart { lines { sku } } orders(first: 5) { totalCount nodes { id status } } } }",
            json!({}),
        )
        .await;
    assert_eq!(me["me"]["cart"]["lines"], json!([]));
    assert_eq!(me["me"]["orders"]["nodes"][0]["id"], order_id.as_str());

    // The admin sees stock committed, ships, delivers and refunds part of it.
    stock_until(
        &shop,
        &admin,
        "MUG-BLUE",
        json!({ "onHand": 8, "reserved": 0 }),
    )
    .await;
    let stock = shop
        .ok(
            Some(&admin),
            r#"{ inventory(sku: "MUG-BLUE") { onHand reserved available movements(first: 10) { totalCount nodes { kind quantity } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(stock["inventory"]["onHand"], 8, "{stock}");
    assert_eq!(stock["inventory"]["reserved"], 0);
    let shipped = shop
        .ok(
            Some(&admin),
            r#"mutation($id: ID!) { orderShip(input: { id: $id, carrier: "DHL", tracking: "JJD0001" }) {
                order { status shipment { carrier tracking } } userErrors { code } } }"#,
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(shipped["orderShip"]["order"]["status"], "SHIPPED");
    assert_eq!(
        shipped["orderShip"]["order"]["shipment"]["tracking"],
        "JJD0001"
    );
    shop.ok(
        Some(&admin),
        "mutation($id: ID!) { orderDeliver(input: { id: $id }) { userErrors { code } } }",
        json!({ "id": order_id }),
    )
    .await;
    let refunded = shop
        .ok(
            Some(&admin),
            r#"mutation($id: ID!) { paymentRefund(input: { orderId: $id, amount: { amount: "9.99", currencyCode: "EUR" },
                reason: "one mug arrived broken", idempotencyKey: "rma-1" }) {
                order { status refund { amount { amount } reason } payments { refunded { amount } } }
                userErrors { code message } } }"#,
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(
        refunded["paymentRefund"]["userErrors"],
        json!([]),
        "{refunded}"
    );
    let after = &refunded["paymentRefund"]["order"];
    assert_eq!(after["status"], "REFUNDED");
    assert_eq!(after["refund"]["amount"]["amount"], "9.99");
    assert_eq!(after["payments"][0]["refunded"]["amount"], "9.99");

    // The admin's order list and the analytics see it.
    let listed = shop
        .ok(
            Some(&admin),
            "{ orders(first: 10, filter: { status: REFUNDED }) { totalCount nodes { id lines { sku } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["orders"]["totalCount"], 1);
    // The sales read model is projected apart from the others: poll it.
    let today = chrono::Utc::now().date_naive().to_string();
    let report = testkit::eventually("the sales report", std::time::Duration::from_secs(30), || async {
        let report = shop
            .ok(
                Some(&admin),
                "query($day: NaiveDate!) { salesReport(from: $day, to: $day, groupBy: PRODUCT) { key unitsSold }
                    cancellationRate(from: $day, to: $day) { placed cancelled } }",
                json!({ "day": today }),
            )
            .await;
        (report["salesReport"].as_array().is_some_and(|rows| rows.len() == 2)).then_some(report)
    })
    .await;
    assert_eq!(report["cancellationRate"]["placed"], 1, "{report}");
    assert_eq!(
        report["salesReport"],
        json!([{ "key": "MUG-RED", "unitsSold": 3 }, { "key": "MUG-BLUE", "unitsSold": 2 }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_the_order_and_a_customer_can_cancel_before_shipping() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("CAP-1", "20.00")], 5).await;
    let customer = shop.customer().await;
    let place = |token: &'static str| {
        json!({ "input": { "lines": [{ "sku": "CAP-1", "quantity": 1 }], "paymentToken": token,
                           "shippingAddress": address() } })
    };
    let query = "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } userErrors { code } } }";

    let declined = shop.ok(Some(&customer), query, place("tok_declined")).await;
    let declined_id = declined["orderPlace"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = order_until(&shop, &customer, &declined_id, |o| {
        o["status"] == "CANCELLED"
    })
    .await;
    assert_eq!(cancelled["paymentState"], "DECLINED");

    let placed = shop.ok(Some(&customer), query, place("tok_visa")).await;
    let id = placed["orderPlace"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    order_until(&shop, &customer, &id, |o| o["status"] == "CONFIRMED").await;
    let cancel = shop
        .ok(
            Some(&customer),
            r#"mutation($id: ID!) { orderCancel(input: { id: $id, reason: "changed my mind" }) { userErrors { code } position } }"#,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(cancel["orderCancel"]["userErrors"], json!([]));
    let refunded = order_until(&shop, &customer, &id, |o| {
        o["status"] == "REFUNDED" && o["payments"][0]["refunded"]["amount"] == "20.00"
    })
    .await;
    assert_eq!(refunded["payments"][0]["refunded"]["amount"], "20.00");
    stock_until(
        &shop,
        &admin,
        "CAP-1",
        json!({ "onHand": 5, "reserved": 0 }),
    )
    .await;

    // Once cancelled, cancelling again is a rule broken, not an error.
    let again = shop
        .ok(
            Some(&customer),
            r#"mutation($id: ID!) { orderCancel(input: { id: $id, reason: "again" }) { userErrors { code field } } }"#,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        again["orderCancel"]["userErrors"][0]["code"],
        "INVALID_TRANSITION"
    );
}
