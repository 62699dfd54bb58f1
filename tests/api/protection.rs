//! The API protects itself: query depth and complexity, body size, batches, production
//! mode's closed introspection, rate limits.

use std::time::Instant;

use serde_json::json;

use crate::support::{api_settings, codes, Shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_and_complexity_bombs_are_rejected_before_anything_runs() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    // A legitimate deep read passes.
    let fine = shop
        .gql(
            Some(&admin),
            "{ me { orders { edges { node { payments { captured { amount } } lines { unitPrice { amount } } } } } } }",
            json!({}),
        )
        .await;
    assert!(fine.get("errors").is_none(), "{fine}");

    // Complexity: 100 aliases of a 100-item page with nested lists.
    let mut wide = String::from("{");
    for i in 0..100 {
        wide.push_str(&format!(
            " a{i}: products(first: 100) {{ nodes {{ id name variants {{ sku }} }} }}"
        ));
    }
    wide.push('}');
    let started = Instant::now();
    let body = shop.gql(Some(&admin), &wide, json!({})).await;
    assert_eq!(codes(&body), ["QUERY_TOO_COMPLEX"], "{body}");
    assert!(body["data"].is_null());
    // Refused by analysis, not by running 100 page queries (a loose bound, not a benchmark).
    assert!(started.elapsed().as_secs() < 5);

    // Depth: the one recursive part of the schema is introspection.
    let deep = format!(
        "{{ __schema {{ types {{ {}name{} }} }} }}",
        "fields { type { ofType { ".repeat(6),
        " } } }".repeat(6)
    );
    let body = shop.gql(Some(&admin), &deep, json!({})).await;
    assert_eq!(codes(&body), ["QUERY_TOO_COMPLEX"], "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("deep"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_huge_bodies_are_refused() {
    let shop = Shop::start().await;
    let (status, body) = shop
        .post(&[], &json!([{ "query": "{ categories { name } }" }, { "query": "{ categories { name } }" }]))
        .await;
    assert_eq!(status, 400, "{body}");
    let huge = "x".repeat(200 * 1024);
    let (status, _) = shop
        .post(
            &[],
            &json!({ "query": "{ categories { name } }", "variables": { "pad": huge } }),
        )
        .await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_mode_hides_the_schema_and_rate_limits_answer_429() {
    let mut settings = api_settings();
    settings.api_mode = shopstream::ApiMode::Production;
    settings.rate_limit_ip_per_second = 1;
    settings.rate_limit_ip_burst = 3;
    let shop = Shop::start_with(settings).await;
    let introspect = shop
        .gql(None, "{ __schema { types { name } } }", json!({}))
        .await;
    assert!(introspect["data"]["__schema"].is_null(), "{introspect}");
    let suggestion = shop
        .gql(None, "{ prodcts { totalCount } }", json!({}))
        .await;
    let message = suggestion["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(!message.contains("Did you mean"), "{message}");
    let mut limited = None;
    for _ in 0..10 {
        let (status, body) = shop
            .post(&[], &json!({ "query": "{ categories { name } }" }))
            .await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    let body = limited.expect("a burst past the limit is refused");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_the_configured_origins_only() {
    let mut settings = api_settings();
    settings.cors_origins = vec!["https://shop.example".to_owned()];
    let shop = Shop::start_with(settings).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("http://{}/graphql", shop.addr),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,x-min-position",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "https://shop.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
