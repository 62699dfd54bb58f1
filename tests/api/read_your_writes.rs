//! Read-your-writes: a read that carries a mutation's position waits (bounded) until
//! the read models it touches show the write.

use serde_json::json;

use crate::support::{api_settings, codes, Shop};

const CREATE: &str = r#"mutation { productCreate(input: { name: "Teapot", category: "Kitchen",
    variants: [{ sku: "POT-1", name: "White", price: { amount: "25.00", currencyCode: "EUR" } }] }) {
    userErrors { code } position } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_a_position_waits_for_the_read_model_to_show_the_write() {
    let shop = Shop::start_api(api_settings()).await;
    let admin = shop.admin().await;
    let created = shop.ok(Some(&admin), CREATE, json!({})).await;
    let position = created["productCreate"]["position"]
        .as_str()
        .unwrap()
        .to_owned();

    // No projector runs yet: a read without the position sees nothing, a read with it waits.
    let now = shop
        .ok(Some(&admin), "{ products { totalCount } }", json!({}))
        .await;
    assert_eq!(now["products"]["totalCount"], 0);
    let waiting = {
        let position = position.clone();
        let admin = admin.clone();
        let shop = &shop;
        async move {
            shop.gql_after(
                Some(&admin),
                "{ products { totalCount nodes { name } } }",
                json!({}),
                Some(&position),
            )
            .await
        }
    };
    let (answer, ()) = tokio::join!(waiting, async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        shop.start_projectors();
    });
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["products"]["nodes"][0]["name"], "Teapot");

    // A read model that does not project the written aggregate does not wait for it:
    // the orders model never sees a product commit.
    let orders = shop
        .gql_after(
            Some(&admin),
            "{ orders { totalCount } }",
            json!({}),
            Some(&position),
        )
        .await;
    assert!(orders.get("errors").is_none(), "{orders}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_that_stays_behind_answers_read_model_behind_after_the_bound() {
    let mut settings = api_settings();
    settings.read_your_writes_timeout_ms = 300;
    let shop = Shop::start_api(settings).await;
    let admin = shop.admin().await;
    let created = shop.ok(Some(&admin), CREATE, json!({})).await;
    let position = created["productCreate"]["position"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = shop
        .gql_after(
            Some(&admin),
            "{ products { totalCount } }",
            json!({}),
            Some(&position),
        )
        .await;
    assert_eq!(codes(&body), ["READ_MODEL_BEHIND"], "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["position"],
        position.as_str()
    );
}
