//! Bad input answers with typed errors and changes nothing.

use serde_json::{json, Value};

use crate::support::{address, codes, Shop};

const PLACE: &str = "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) {
    order { id } userErrors { field code message } position } }";

fn place(lines: Value) -> Value {
    json!({ "input": { "lines": lines, "paymentToken": "tok_visa", "shippingAddress": address() } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_with_typed_errors_and_changes_nothing() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    let (_, position) = shop.product(&admin, &[("BOOK-1", "30.00")], 3).await;
    let customer = shop.customer().await;

    // Malformed ids: top-level BAD_USER_INPUT.
    for id in [
        "42",
        "gid://shopstream/Product/00000000-0000-0000-0000-000000000001",
        "gid://shopstream/Order/zzz",
    ] {
        let body = shop
            .gql(
                Some(&customer),
                "query($id: ID!) { order(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{id}: {body}");
    }
    // A well-formed id of no order: NOT_FOUND.
    let body = shop
        .gql(
            Some(&customer),
            "query($id: ID!) { order(id: $id) { id } }",
            json!({ "id": "gid://shopstream/Order/00000000-0000-0000-0000-000000000001" }),
        )
        .await;
    assert_eq!(codes(&body), ["NOT_FOUND"]);

    // Negative and zero quantities, too many units: BAD_USER_INPUT.
    for quantity in [-1, 0, 1_000_000] {
        let body = shop
            .gql(
                Some(&customer),
                PLACE,
                place(json!([{ "sku": "BOOK-1", "quantity": quantity }])),
            )
            .await;
        assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{quantity}: {body}");
    }
    // A wrong type of variable (a string for an Int): BAD_USER_INPUT from validation.
    let body = shop
        .gql(
            Some(&customer),
            PLACE,
            place(json!([{ "sku": "BOOK-1", "quantity": "two" }])),
        )
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body}");
    // Unknown SKUs: a user error on the line, no order.
    let data = shop
        .ok(
            Some(&customer),
            PLACE,
            place(json!([{ "sku": "BOOK-1", "quantity": 1 }, { "sku": "NOPE", "quantity": 1 }])),
        )
        .await;
    assert_eq!(data["orderPlace"]["order"], Value::Null);
    assert_eq!(data["orderPlace"]["userErrors"][0]["code"], "UNKNOWN_SKU");
    assert_eq!(
        data["orderPlace"]["userErrors"][0]["field"],
        json!(["input", "lines", "1", "sku"])
    );
    // Huge strings: BAD_USER_INPUT, before anything is sent.
    let huge = "x".repeat(10_000);
    let mut input = place(json!([{ "sku": "BOOK-1", "quantity": 1 }]));
    input["input"]["shippingAddress"]["name"] = json!(huge);
    let body = shop.gql(Some(&customer), PLACE, input).await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"]);
    let body = shop
        .gql(
            Some(&admin),
            "mutation($name: String!) { productCreate(input: { name: $name, category: \"c\", variants: [] }) { position } }",
            json!({ "name": huge }),
        )
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"]);
    // Bad money.
    let body = shop
        .gql(
            Some(&admin),
            r#"mutation { productVariantPriceSet(input: { sku: "BOOK-1", price: { amount: "1e9", currencyCode: "EUR" } }) { position } }"#,
            json!({}),
        )
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"]);
    // A domain rule: a negative price is refused as a user error.
    let data = shop
        .ok(
            Some(&admin),
            r#"mutation { productVariantPriceSet(input: { sku: "BOOK-1", price: { amount: "-1.00", currencyCode: "EUR" } }) {
                userErrors { code } position } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["productVariantPriceSet"]["userErrors"][0]["code"],
        "NON_POSITIVE_PRICE"
    );
    assert_eq!(data["productVariantPriceSet"]["position"], Value::Null);
    // Too much stock removed: a user error.
    let data = shop
        .ok(
            Some(&admin),
            r#"mutation { inventoryAdjust(input: { sku: "BOOK-1", delta: -50, reason: "count" }) { userErrors { code } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["inventoryAdjust"]["userErrors"][0]["code"],
        "NEGATIVE_STOCK"
    );
    // A page too large, a cursor not ours, a position past the end of the log.
    let body = shop
        .gql(None, "{ products(first: 101) { totalCount } }", json!({}))
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"]);
    let body = shop
        .gql(
            None,
            r#"{ products(after: "nonsense") { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"]);
    let body = shop
        .gql_after(
            None,
            "{ products { totalCount } }",
            json!({}),
            Some("99999999"),
        )
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body}");

    // An argument past its validator: the client's error, with its message.
    let body = shop
        .gql(
            Some(&admin),
            r#"{ topSellers(from: "2026-01-01", to: "2026-01-31", limit: 1000) { sku } }"#,
            json!({}),
        )
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body}");
    assert_ne!(body["errors"][0]["message"], "internal error");

    // Nothing changed: no order, stock and price as they were.
    let orders = shop
        .ok(Some(&admin), "{ orders { totalCount } }", json!({}))
        .await;
    assert_eq!(orders["orders"]["totalCount"], 0);
    let after = shop
        .gql_after(
            Some(&admin),
            r#"{ inventory(sku: "BOOK-1") { onHand } products { nodes { price { amount } } } }"#,
            json!({}),
            Some(&position),
        )
        .await;
    assert_eq!(after["data"]["inventory"]["onHand"], 3, "{after}");
    assert_eq!(
        after["data"]["products"]["nodes"][0]["price"]["amount"],
        "30.00"
    );
}
