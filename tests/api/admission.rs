//! Admission control: while the order saga is behind (its oldest unfinished order commit
//! older than `CHECKOUT_MAX_SAGA_LAG_MS`), `orderPlace` is refused with `OVERLOADED`
//! and a retry hint, and places nothing; once the saga catches up, checkouts are taken
//! again. Other operations are not refused.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::json;

use crate::support::{address, api_settings, codes, Shop};

const PLACE: &str = "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } userErrors { code } position } }";

fn order(key: &str) -> serde_json::Value {
    json!({ "input": { "lines": [{ "sku": "KETTLE-1", "quantity": 1 }], "paymentToken": "tok_visa",
                       "shippingAddress": address(), "idempotencyKey": key } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_are_refused_while_the_saga_is_behind_and_taken_once_it_catches_up() {
    let mut api = api_settings();
    api.checkout_max_saga_lag_ms = 1_000;
    let shop = Shop::start_api(api).await;
    shop.start_projectors();
    let admin = shop.admin().await;
    shop.product(&admin, &[("KETTLE-1", "40.00")], 10).await;
    let customer = shop.customer().await;

    // A saga consumer that has stopped consuming (its replicas are gone or swamped).
    let client = async_nats::connect(&shop.settings().nats_url)
        .await
        .unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream("EVENTS").await.unwrap();
    let saga = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("saga".to_owned()),
            filter_subject: "events.order.>".to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ..consumer::pull::Config::default()
        })
        .await
        .unwrap();

    let first = shop.ok(Some(&customer), PLACE, order("first")).await;
    assert_eq!(first["orderPlace"]["userErrors"], json!([]), "{first}");

    // The first order waits for a saga for longer than the bound (plus a sample period,
    // so that the API has seen it): checkouts are refused from the first attempt.
    testkit::eventually(
        "the first order to wait past the bound",
        Duration::from_secs(30),
        || async {
            let backlog = infra_nats::consumer_backlog(&js, "saga", "order")
                .await
                .ok()?;
            let waited = (chrono::Utc::now() - backlog.oldest?).to_std().ok()?;
            (waited > Duration::from_millis(1_600)).then_some(())
        },
    )
    .await;
    let refused = shop.gql(Some(&customer), PLACE, order("second")).await;
    assert_eq!(codes(&refused), ["OVERLOADED"], "{refused}");
    let retry_after = refused["errors"][0]["extensions"]["retryAfterMs"]
        .as_u64()
        .unwrap_or(0);
    assert!(retry_after > 0, "a retry hint: {refused}");
    assert!(
        refused["data"].is_null() || refused["data"]["orderPlace"].is_null(),
        "{refused}"
    );
    // Browsing is not refused.
    shop.ok(None, "{ products(first: 5) { totalCount } }", json!({}))
        .await;

    // The saga catches up: the first order's commit is finished.
    let mut messages = saga.fetch().max_messages(10).messages().await.unwrap();
    while let Some(message) = messages.next().await {
        message.unwrap().ack().await.unwrap();
    }
    let taken = testkit::eventually(
        "checkouts to be taken again",
        Duration::from_secs(30),
        || async {
            let body = shop.gql(Some(&customer), PLACE, order("second")).await;
            body["data"]["orderPlace"]["order"]["id"]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert_ne!(first["orderPlace"]["order"]["id"], taken.as_str());

    // The refused attempts placed nothing: the log holds exactly two orders.
    let placed = count_order_subjects(&js).await;
    assert_eq!(placed, 2, "two orders in the log");
}

/// How many order aggregates the log holds.
async fn count_order_subjects(js: &jetstream::Context) -> usize {
    let stream = js.get_stream("EVENTS").await.unwrap();
    let info = stream.info_with_subjects("events.order.>").await.unwrap();
    info.count().await
}
