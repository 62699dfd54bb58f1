//! `/readyz` counts the read models the API serves: far behind the log, not ready.

use std::time::Duration;

use serde_json::json;

use crate::support::{api_settings, Shop};

async fn readyz(shop: &Shop) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("http://{}/readyz", shop.addr))
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_not_ready_while_its_read_models_lag_and_ready_once_they_catch_up() {
    let mut settings = api_settings();
    settings.readyz_max_projector_lag_secs = 0;
    let shop = Shop::start_api(settings).await;
    let admin = shop.admin().await;
    let (status, _) = readyz(&shop).await;
    assert_eq!(status, 200, "an empty log is no lag");
    shop.ok(
        Some(&admin),
        r#"mutation { productCreate(input: { name: "Kettle", category: "Kitchen",
            variants: [{ sku: "KET-1", name: "Steel", price: { amount: "30.00", currencyCode: "EUR" } }] }) { position } }"#,
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = readyz(&shop).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["projectors"]["ok"], false, "{body}");

    shop.start_projectors();
    testkit::eventually(
        "ready once the projectors catch up",
        Duration::from_secs(30),
        || async { (readyz(&shop).await.0 == 200).then_some(()) },
    )
    .await;
}
