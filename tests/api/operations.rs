//! Operators handle dead letters over GraphQL; other roles are refused, and the refusal
//! is recorded.

use std::time::Duration;

use api::auth::Role;
use serde_json::json;

use crate::support::{codes, Shop};

const LIST: &str =
    "{ deadLetters(consumer: \"inventory\") { id consumer position aggregateId error attempts } }";
const ACT: &str = "mutation($id: ID!, $action: DeadLetterActionKind!, $reason: String!) {
    deadLetterAct(input: { id: $id, action: $action, reason: $reason }) {
        applied stillParked userErrors { code } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_parked_commit_after_the_fix_and_others_are_refused_on_record() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    let (_, operator) = shop.account(Role::Operator).await;
    let (customer_id, customer) = shop.account(Role::Customer).await;
    shop.product(&admin, &[("POISON-1", "1.00")], 0).await;
    // The inventory read model refuses this SKU's rows until the "fix".
    sqlx::raw_sql(
        "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.sku LIKE 'POISON-%' THEN RAISE EXCEPTION 'poisoned sku %', NEW.sku; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON inventory.stock_levels
           FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();",
    )
    .execute(&shop.db())
    .await
    .unwrap();
    shop.ok(
        Some(&admin),
        r#"mutation { inventoryReceive(input: { sku: "POISON-1", quantity: 7, reference: "PO-9" }) { position } }"#,
        json!({}),
    )
    .await;
    let parked = testkit::eventually(
        "the commit to be parked",
        Duration::from_secs(60),
        || async {
            let list = shop.ok(Some(&operator), LIST, json!({})).await;
            let entries = list["deadLetters"].as_array().cloned().unwrap_or_default();
            (!entries.is_empty()).then_some(entries)
        },
    )
    .await;
    assert_eq!(parked[0]["aggregateId"], "POISON-1");
    assert!(
        parked[0]["error"]
            .as_str()
            .unwrap()
            .contains("poisoned sku"),
        "{parked:?}"
    );
    let id = parked[0]["id"].as_str().unwrap().to_owned();

    // A customer and an admin may not act; each refusal is recorded, nothing changes.
    for token in [&customer, &admin] {
        let body = shop
            .gql(
                Some(token),
                ACT,
                json!({ "id": id, "action": "RETRY", "reason": "let me" }),
            )
            .await;
        assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");
    }
    let refusals: Vec<String> = sqlx::query_scalar(
        "SELECT actor FROM audit.access_log WHERE action = 'refused:deadLetterAct' ORDER BY access_id",
    )
    .fetch_all(&shop.db())
    .await
    .unwrap();
    assert_eq!(refusals.len(), 2);
    assert_eq!(refusals[0], format!("user:{customer_id}"));
    let customer_list = shop.gql(Some(&customer), LIST, json!({})).await;
    assert_eq!(codes(&customer_list), ["FORBIDDEN"]);

    // A retry before the fix leaves it parked; after the fix it applies, once.
    let early = shop
        .ok(
            Some(&operator),
            ACT,
            json!({ "id": id, "action": "RETRY", "reason": "try" }),
        )
        .await;
    assert_eq!(
        early["deadLetterAct"]["userErrors"][0]["code"], "STILL_FAILING",
        "{early}"
    );
    sqlx::raw_sql("DROP TRIGGER refuse_poison ON inventory.stock_levels")
        .execute(&shop.db())
        .await
        .unwrap();
    let retried = shop
        .ok(
            Some(&operator),
            ACT,
            json!({ "id": id, "action": "RETRY", "reason": "trigger fixed" }),
        )
        .await;
    assert_eq!(
        retried["deadLetterAct"]["userErrors"],
        json!([]),
        "{retried}"
    );
    assert_eq!(
        retried["deadLetterAct"]["applied"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let stock = shop
        .ok(
            Some(&admin),
            r#"{ inventory(sku: "POISON-1") { onHand } }"#,
            json!({}),
        )
        .await;
    assert_eq!(stock["inventory"]["onHand"], 7);
    let left = shop.ok(Some(&operator), LIST, json!({})).await;
    assert_eq!(left["deadLetters"], json!([]));
    let again = shop
        .gql(
            Some(&operator),
            ACT,
            json!({ "id": id, "action": "RETRY", "reason": "again" }),
        )
        .await;
    assert_eq!(codes(&again), ["NOT_FOUND"], "{again}");
}
