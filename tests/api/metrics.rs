//! `/metrics` after some shopping: the series operators and the dashboard rely on.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::support::{address, codes, order_until, Shop};

/// The metric names (with their labels) a Prometheus exposition holds.
fn series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn names(exposition: &str) -> BTreeSet<String> {
    series(exposition)
        .into_iter()
        .map(|series| series.split('{').next().unwrap_or_default().to_owned())
        .collect()
}

/// Every metric name the dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/grafana/shopstream.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut expressions = Vec::new();
    collect_expressions(&dashboard, &mut expressions);
    assert!(!expressions.is_empty(), "the dashboard has queries");
    let mut names = BTreeSet::new();
    for expression in expressions {
        let mut rest = expression.as_str();
        while let Some(start) = rest.find("shopstream_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            names.insert(name);
        }
    }
    names
}

fn collect_expressions(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(expr) if key == "expr" => into.push(expr.clone()),
                    other => collect_expressions(other, into),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_expressions(item, into);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_order_metrics_has_every_series_the_dashboard_queries() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("CUP-1", "4.00")], 5).await;
    let customer = shop.customer().await;
    let placed = shop
        .ok(
            Some(&customer),
            "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) {
                order { id } userErrors { code } } }",
            json!({ "input": { "lines": [{ "sku": "CUP-1", "quantity": 1 }],
                "paymentToken": "tok_visa", "shippingAddress": address() } }),
        )
        .await;
    assert_eq!(placed["orderPlace"]["userErrors"], json!([]), "{placed}");
    let order_id = placed["orderPlace"]["order"]["id"].as_str().unwrap();
    order_until(&shop, &customer, order_id, |o| o["status"] == "CONFIRMED").await;
    // A request that fails, counted by its code.
    let missing = shop
        .gql(
            Some(&customer),
            "query($id: ID!) { order(id: $id) { id } }",
            json!({ "id": "gid://shopstream/Order/00000000-0000-0000-0000-000000000001" }),
        )
        .await;
    assert_eq!(codes(&missing), ["NOT_FOUND"], "{missing}");
    let code = "NOT_FOUND";

    let wanted = dashboard_metrics();
    let exposition = testkit::eventually(
        "every dashboard metric on /metrics",
        Duration::from_secs(30),
        || async {
            let (status, body) = testkit::http_get(shop.addr, "/metrics").await.ok()?;
            assert_eq!(status, 200);
            let present = names(&body);
            // The sampler's gauges show the saga's consumer once it has run, and the
            // orders projector once it has applied the order.
            wanted.is_subset(&present).then_some(body)
        },
    )
    .await;
    let series = series(&exposition);
    for expected in [
        r#"shopstream_command_conflicts_total{aggregate_type="order"}"#.to_owned(),
        r#"shopstream_appends_total{aggregate_type="order"}"#.to_owned(),
        r#"shopstream_consumer_lag_events{consumer="saga"}"#.to_owned(),
        r#"shopstream_consumer_lag_seconds{consumer="orders"}"#.to_owned(),
        r#"shopstream_dead_letters{consumer="saga"}"#.to_owned(),
        r#"shopstream_dead_letters_oldest_age_seconds{consumer="inventory"}"#.to_owned(),
        r#"shopstream_saga_outcomes_total{outcome="completed"}"#.to_owned(),
        r#"shopstream_sagas{phase="completed"}"#.to_owned(),
        format!(r#"shopstream_graphql_errors_total{{code="{code}"}}"#),
    ] {
        assert!(
            series.contains(&expected),
            "{expected} missing:\n{exposition}"
        );
    }
    assert!(
        series
            .iter()
            .any(|s| s.starts_with("shopstream_command_seconds_count{")
                && s.contains(r#"aggregate_type="inventory""#)
                && s.contains(r#"outcome="committed""#)),
        "{exposition}"
    );
}
