//! A page of orders with their lines, timelines and payments costs one loader batch per
//! kind of nested field, not one per order (the N+1 problem). Alone in its test binary,
//! so the process-wide metrics it reads count only its own requests.

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

use serde_json::json;

use support::{address, order_until, Shop};

fn counter(metrics: &str, name: &str, loader: &str) -> u64 {
    let prefix = format!("{name}{{loader=\"{loader}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_orders_loads_each_nested_field_in_one_batch() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("SOCK-1", "3.00"), ("SOCK-2", "4.00")], 100)
        .await;
    let customer = shop.customer().await;
    let mut last = String::new();
    for _ in 0..6 {
        let placed = shop
            .ok(
                Some(&customer),
                "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } } }",
                json!({ "input": { "lines": [{ "sku": "SOCK-1", "quantity": 1 }, { "sku": "SOCK-2", "quantity": 2 }],
                                   "paymentToken": "tok_visa", "shippingAddress": address() } }),
            )
            .await;
        last = placed["orderPlace"]["order"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    order_until(&shop, &customer, &last, |o| o["status"] == "CONFIRMED").await;

    let handle = api::metrics::prometheus().expect("the app installed the recorder");
    let before = handle.render();
    let page = shop
        .ok(
            Some(&admin),
            "{ orders(first: 6) { nodes { id lines { sku } statusTimeline { status } payments { status } subtotal { amount } shippingAddress { city } } } }",
            json!({}),
        )
        .await;
    assert_eq!(page["orders"]["nodes"].as_array().unwrap().len(), 6);
    assert!(
        page["orders"]["nodes"][5]["lines"][1]["sku"] == "SOCK-2",
        "{page}"
    );
    let after = handle.render();
    for loader in [
        "order_lines",
        "order_timelines",
        "order_payments",
        "order_details",
    ] {
        let batches = counter(&after, "shopstream_graphql_loader_batches_total", loader)
            - counter(&before, "shopstream_graphql_loader_batches_total", loader);
        let keys = counter(&after, "shopstream_graphql_loader_keys_total", loader)
            - counter(&before, "shopstream_graphql_loader_keys_total", loader);
        assert_eq!((batches, keys), (1, 6), "{loader}");
    }
}
