//! The inventory read model against a real PostgreSQL: commits built by the fixtures,
//! applied with `apply_directly`, checked against what the test computes itself.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::inventory::{Inventory, InventoryEvent, UNRECORDED_REASON};
use domain::{OrderId, Sku};
use infra_nats::RecordedCommit;
use projections::fixtures;
use projections::inventory::{self, InventoryProjection, Movement, MovementKind, StockLevel};
use projections::page::{encode_cursor, Page, PageRequest, QueryError};
use projections::runtime::apply_directly;
use projections::{ApplyError, Delivery, DeliveryMode};
use serde_json::{json, Value};
use sqlx::PgPool;
use testkit::TestDatabase;
use uuid::Uuid;

const BLUE: &str = "MUG-BLUE";
const RED: &str = "MUG-RED";

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minute)
}

fn sku(sku: &str) -> Sku {
    Sku::parse(sku).unwrap()
}

fn order(n: u128) -> OrderId {
    OrderId(Uuid::from_u128(n))
}

fn received(sku_text: &str, quantity: u32, reference: &str) -> InventoryEvent {
    InventoryEvent::StockReceived {
        sku: sku(sku_text),
        quantity,
        reference: reference.to_owned(),
    }
}

fn adjusted(sku_text: &str, delta: i64, reason: &str) -> InventoryEvent {
    InventoryEvent::StockAdjusted {
        sku: sku(sku_text),
        delta,
        reason: reason.to_owned(),
    }
}

fn reserved(sku_text: &str, order_id: OrderId, quantity: u32) -> InventoryEvent {
    InventoryEvent::StockReserved {
        sku: sku(sku_text),
        order_id,
        quantity,
    }
}

fn released(sku_text: &str, order_id: OrderId, quantity: u32, reason: &str) -> InventoryEvent {
    InventoryEvent::ReservationReleased {
        sku: sku(sku_text),
        order_id,
        quantity,
        reason: reason.to_owned(),
    }
}

fn committed(sku_text: &str, order_id: OrderId, quantity: u32) -> InventoryEvent {
    InventoryEvent::ReservationCommitted {
        sku: sku(sku_text),
        order_id,
        quantity,
    }
}

fn returned(sku_text: &str, order_id: OrderId, quantity: u32, reason: &str) -> InventoryEvent {
    InventoryEvent::CommittedStockReturned {
        sku: sku(sku_text),
        order_id,
        quantity,
        reason: reason.to_owned(),
    }
}

/// Builds the commits of a script: each entry is one command's events on one SKU, at the
/// next stream position and with the SKU's next aggregate versions.
fn commits(script: &[(&str, Vec<InventoryEvent>)]) -> Vec<RecordedCommit> {
    let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
    script
        .iter()
        .enumerate()
        .map(|(i, (sku, events))| {
            let version = versions.entry(sku).or_insert(0);
            let first_sequence = *version + 1;
            *version += events.len();
            let position = i as u64 + 1;
            fixtures::commit::<Inventory>(position, sku, first_sequence, events, at(i as i64))
        })
        .collect()
}

fn deliveries(commits: &[RecordedCommit], mode: DeliveryMode) -> Vec<Delivery<'_>> {
    commits
        .iter()
        .map(|commit| Delivery { commit, mode })
        .collect()
}

async fn migrated() -> Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    projections::migrate(&db.pool).await?;
    Ok(db)
}

async fn apply(pool: &PgPool, commits: &[RecordedCommit]) -> Result<(), ApplyError> {
    apply_directly(
        pool,
        &InventoryProjection,
        &deliveries(commits, DeliveryMode::Live),
    )
    .await
}

/// Every row of every table of the schema, as JSON, in key order.
async fn dump(pool: &PgPool) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for (table, key) in [
        ("stock_levels", "sku"),
        ("movements", "position, event_index"),
        ("reservations", "sku, order_id"),
    ] {
        let table_rows: Vec<Value> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t) FROM inventory.{table} t ORDER BY {key}"
        ))
        .fetch_all(pool)
        .await?;
        rows.push(json!({ table: table_rows }));
    }
    Ok(rows)
}

/// Two SKUs through every kind of movement, with a commit of two events, an order
/// reserving again after its first reservation was released, and an order whose
/// committed units come back.
fn script() -> Vec<(&'static str, Vec<InventoryEvent>)> {
    vec![
        (BLUE, vec![received(BLUE, 10, "PO-1")]),
        (RED, vec![received(RED, 5, "PO-2")]),
        (BLUE, vec![reserved(BLUE, order(1), 3)]),
        (BLUE, vec![reserved(BLUE, order(2), 2)]),
        (RED, vec![adjusted(RED, -1, "broken in transit")]),
        (BLUE, vec![committed(BLUE, order(1), 3)]),
        (BLUE, vec![released(BLUE, order(2), 2, "payment failed")]),
        (RED, vec![reserved(RED, order(3), 4)]),
        (
            BLUE,
            vec![received(BLUE, 4, "PO-3"), adjusted(BLUE, 1, "recount")],
        ),
        (BLUE, vec![reserved(BLUE, order(2), 5)]),
        (
            BLUE,
            vec![returned(BLUE, order(1), 3, "cancelled before shipping")],
        ),
    ]
}

/// The model the projection should build, computed here from the script alone.
struct Oracle {
    levels: BTreeMap<String, StockLevel>,
    movements: Vec<Movement>,
    reservations: BTreeMap<(String, OrderId), (i64, DateTime<Utc>)>,
}

fn oracle(commits: &[RecordedCommit], script: &[(&str, Vec<InventoryEvent>)]) -> Oracle {
    let mut oracle = Oracle {
        levels: BTreeMap::new(),
        movements: Vec::new(),
        reservations: BTreeMap::new(),
    };
    for (commit, (sku, events)) in commits.iter().zip(script) {
        let time = commit.envelope.timestamp;
        for (index, event) in events.iter().enumerate() {
            let (kind, quantity, on_hand, reserved, order_id, reference, reason) = match event {
                InventoryEvent::StockReceived {
                    quantity,
                    reference,
                    ..
                } => {
                    let q = i64::from(*quantity);
                    let reference = Some(reference.clone());
                    (MovementKind::Received, q, q, 0, None, reference, None)
                }
                InventoryEvent::StockAdjusted { delta, reason, .. } => {
                    let reason = Some(reason.clone());
                    (
                        MovementKind::Adjusted,
                        *delta,
                        *delta,
                        0,
                        None,
                        None,
                        reason,
                    )
                }
                InventoryEvent::StockReserved {
                    order_id, quantity, ..
                } => {
                    let q = i64::from(*quantity);
                    let key = (sku.to_string(), *order_id);
                    oracle.reservations.insert(key, (q, time));
                    (MovementKind::Reserved, q, 0, q, Some(*order_id), None, None)
                }
                InventoryEvent::ReservationReleased {
                    order_id,
                    quantity,
                    reason,
                    ..
                } => {
                    let q = i64::from(*quantity);
                    oracle.reservations.remove(&(sku.to_string(), *order_id));
                    let reason = Some(reason.clone());
                    (
                        MovementKind::Released,
                        q,
                        0,
                        -q,
                        Some(*order_id),
                        None,
                        reason,
                    )
                }
                InventoryEvent::ReservationCommitted {
                    order_id, quantity, ..
                } => {
                    let q = i64::from(*quantity);
                    oracle.reservations.remove(&(sku.to_string(), *order_id));
                    (
                        MovementKind::Committed,
                        q,
                        -q,
                        -q,
                        Some(*order_id),
                        None,
                        None,
                    )
                }
                InventoryEvent::CommittedStockReturned {
                    order_id,
                    quantity,
                    reason,
                    ..
                } => {
                    let q = i64::from(*quantity);
                    let reason = Some(reason.clone());
                    (
                        MovementKind::Returned,
                        q,
                        q,
                        0,
                        Some(*order_id),
                        None,
                        reason,
                    )
                }
            };
            let level = oracle
                .levels
                .entry(sku.to_string())
                .or_insert_with(|| StockLevel {
                    sku: sku.to_string(),
                    on_hand: 0,
                    reserved: 0,
                    available: 0,
                    last_movement_at: time,
                });
            level.on_hand += on_hand;
            level.reserved += reserved;
            level.available = level.on_hand - level.reserved;
            level.last_movement_at = time;
            oracle.movements.push(Movement {
                sku: sku.to_string(),
                kind,
                quantity,
                on_hand_change: on_hand,
                reserved_change: reserved,
                order_id,
                reference,
                reason,
                occurred_at: time,
                position: commit.position as i64,
                event_index: index as i32,
            });
        }
    }
    oracle
}

#[tokio::test]
async fn a_scripted_history_gives_the_stock_the_test_computes() -> Result<()> {
    let db = migrated().await?;
    let script = script();
    let commits = commits(&script);
    let expected = oracle(&commits, &script);

    apply(&db.pool, &commits).await?;

    // Hand-checked: BLUE 10 - 3 + 4 + 1 + 3 returned on hand with order 2's second
    // reservation of 5; RED 5 - 1 with order 3's 4.
    assert_eq!(
        (
            expected.levels[BLUE].on_hand,
            expected.levels[BLUE].reserved
        ),
        (15, 5)
    );
    assert_eq!(
        (expected.levels[RED].on_hand, expected.levels[RED].available),
        (4, 0)
    );
    for (sku, level) in &expected.levels {
        assert_eq!(
            inventory::stock_level(&db.pool, sku).await?.as_ref(),
            Some(level)
        );
    }
    let reservations: Vec<(String, Uuid, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT sku, order_id, quantity, reserved_at FROM inventory.reservations
         ORDER BY sku, order_id",
    )
    .fetch_all(&db.pool)
    .await?;
    let expected_reservations: Vec<_> = expected
        .reservations
        .iter()
        .map(|((sku, order_id), (quantity, at))| (sku.clone(), order_id.as_uuid(), *quantity, *at))
        .collect();
    assert_eq!(reservations, expected_reservations);
    assert_eq!(reservations.len(), 2);

    let all_blue = inventory::movements(&db.pool, BLUE, PageRequest::first(100)).await?;
    let mut expected_blue: Vec<Movement> = expected
        .movements
        .iter()
        .filter(|m| m.sku == BLUE)
        .cloned()
        .collect();
    expected_blue.reverse();
    assert_eq!(all_blue.total_count, Some(9));
    assert!(!all_blue.has_next_page);
    assert_eq!(all_blue.into_nodes(), expected_blue);
    Ok(())
}

#[tokio::test]
async fn one_batch_and_one_commit_at_a_time_build_the_same_rows() -> Result<()> {
    let batched = migrated().await?;
    let one_by_one = migrated().await?;
    let commits = commits(&script());

    apply(&batched.pool, &commits).await?;
    for commit in &commits {
        apply(&one_by_one.pool, std::slice::from_ref(commit)).await?;
    }

    let rows = dump(&batched.pool).await?;
    assert_eq!(rows, dump(&one_by_one.pool).await?);
    assert_eq!(rows[1]["movements"].as_array().map(Vec::len), Some(12));
    Ok(())
}

#[tokio::test]
async fn replaying_applied_commits_changes_nothing() -> Result<()> {
    let db = migrated().await?;
    let commits = commits(&script());
    apply(&db.pool, &commits).await?;
    let before = dump(&db.pool).await?;

    apply_directly(
        &db.pool,
        &InventoryProjection,
        &deliveries(&commits[3..], DeliveryMode::Replay),
    )
    .await?;

    assert_eq!(dump(&db.pool).await?, before);
    Ok(())
}

/// The movements of `BLUE` as the test computes them, newest first.
fn blue_newest_first(
    commits: &[RecordedCommit],
    script: &[(&str, Vec<InventoryEvent>)],
) -> Vec<Movement> {
    let mut expected: Vec<Movement> = oracle(commits, script)
        .movements
        .into_iter()
        .filter(|m| m.sku == BLUE)
        .collect();
    expected.reverse();
    expected
}

/// Asks for one page of `BLUE`'s movements, which are counted on every page.
async fn blue_page(pool: &PgPool, request: PageRequest<'_>) -> Result<Page<Movement>> {
    let page = inventory::movements(pool, BLUE, request).await?;
    assert_eq!(page.total_count, Some(9));
    Ok(page)
}

#[tokio::test]
async fn movements_are_paged_newest_first_each_exactly_once() -> Result<()> {
    let db = migrated().await?;
    let script = script();
    let commits = commits(&script);
    let expected = blue_newest_first(&commits, &script);
    apply(&db.pool, &commits).await?;

    let mut walked = Vec::new();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let request = PageRequest::Forward {
            first: 3,
            after: after.as_deref(),
        };
        let page = blue_page(&db.pool, request).await?;
        assert_eq!(page.has_previous_page, after.is_some());
        pages.push((page.edges.len(), page.has_next_page));
        after = page.end_cursor().map(str::to_owned);
        let has_next_page = page.has_next_page;
        walked.extend(page.into_nodes());
        if !has_next_page {
            break;
        }
    }

    assert_eq!(pages, vec![(3, true), (3, true), (3, false)]);
    assert_eq!(walked, expected);
    Ok(())
}

#[tokio::test]
async fn movements_walked_backward_from_the_oldest_end_come_in_the_same_order() -> Result<()> {
    let db = migrated().await?;
    let script = script();
    let commits = commits(&script);
    let expected = blue_newest_first(&commits, &script);
    apply(&db.pool, &commits).await?;

    // Pages of 4 over 9 movements: the first page read backward is the list's last.
    let mut walked: Vec<Movement> = Vec::new();
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let request = PageRequest::Backward {
            last: 4,
            before: before.as_deref(),
        };
        let page = blue_page(&db.pool, request).await?;
        assert_eq!(page.has_next_page, before.is_some());
        pages.push((page.edges.len(), page.has_previous_page));
        before = page.start_cursor().map(str::to_owned);
        let has_previous_page = page.has_previous_page;
        let mut earlier = page.into_nodes();
        earlier.append(&mut walked);
        walked = earlier;
        if !has_previous_page {
            break;
        }
    }

    assert_eq!(pages, vec![(4, true), (4, true), (1, false)]);
    assert_eq!(walked, expected);
    Ok(())
}

#[tokio::test]
async fn every_movements_cursor_continues_on_either_side_of_it() -> Result<()> {
    let db = migrated().await?;
    let script = script();
    let commits = commits(&script);
    let expected = blue_newest_first(&commits, &script);
    apply(&db.pool, &commits).await?;
    let all = inventory::movements(&db.pool, BLUE, PageRequest::first(100)).await?;
    assert_eq!(all.edges.len(), expected.len());

    for (i, edge) in all.edges.iter().enumerate() {
        let after = PageRequest::Forward {
            first: 2,
            after: Some(&edge.cursor),
        };
        let next = inventory::movements(&db.pool, BLUE, after).await?;
        assert_eq!(
            next.nodes().collect::<Vec<_>>(),
            expected.iter().skip(i + 1).take(2).collect::<Vec<_>>(),
            "after {i}"
        );
        assert!(next.has_previous_page);
        assert_eq!(next.has_next_page, i + 3 < expected.len(), "after {i}");

        let before = PageRequest::Backward {
            last: 2,
            before: Some(&edge.cursor),
        };
        let previous = inventory::movements(&db.pool, BLUE, before).await?;
        assert!(previous.has_next_page);
        assert_eq!(previous.has_previous_page, i > 2, "before {i}");
        let from = i.saturating_sub(2);
        assert_eq!(
            previous.into_nodes(),
            expected[from..i].to_vec(),
            "before {i}"
        );
    }
    // A cursor handed out going forward ends a backward page just before its movement.
    let second_page = PageRequest::Forward {
        first: 3,
        after: Some(&all.edges[2].cursor),
    };
    let second_page = inventory::movements(&db.pool, BLUE, second_page).await?;
    let first_page = PageRequest::Backward {
        last: 3,
        before: second_page.start_cursor(),
    };
    let first_page = inventory::movements(&db.pool, BLUE, first_page).await?;
    assert_eq!(first_page.edges, all.edges[..3].to_vec());
    assert!(!first_page.has_previous_page && first_page.has_next_page);
    Ok(())
}

#[tokio::test]
async fn a_page_of_no_movements_still_tells_whether_movements_exist() -> Result<()> {
    let db = migrated().await?;
    apply(&db.pool, &commits(&script())).await?;
    let none = PageRequest::Backward {
        last: 0,
        before: None,
    };

    let page = inventory::movements(&db.pool, BLUE, none).await?;
    let unknown = inventory::movements(&db.pool, "NEVER-STOCKED", none).await?;

    assert!(page.edges.is_empty());
    assert!(page.has_previous_page && !page.has_next_page);
    assert!(!unknown.has_previous_page && !unknown.has_next_page);
    Ok(())
}

#[tokio::test]
async fn oversized_pages_and_foreign_cursors_of_movements_are_refused() -> Result<()> {
    let db = migrated().await?;
    // The last is well formed, but of another list's key: the orders' (time, id).
    let foreign = [
        "not-a-cursor".to_owned(),
        "zz".to_owned(),
        encode_cursor(&(at(0), Uuid::nil())),
    ];
    for cursor in &foreign {
        let after = PageRequest::Forward {
            first: 3,
            after: Some(cursor),
        };
        let before = PageRequest::Backward {
            last: 3,
            before: Some(cursor),
        };
        for request in [after, before] {
            let result = inventory::movements(&db.pool, BLUE, request).await;
            assert!(
                matches!(result, Err(QueryError::InvalidCursor)),
                "{request:?}: {result:?}"
            );
        }
    }
    for request in [
        PageRequest::first(101),
        PageRequest::Backward {
            last: 101,
            before: None,
        },
    ] {
        let result = inventory::movements(&db.pool, BLUE, request).await;
        assert!(
            matches!(result, Err(QueryError::PageTooLarge(101))),
            "{result:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn stock_levels_are_read_in_one_call_and_unknown_skus_are_left_out() -> Result<()> {
    let db = migrated().await?;
    apply(&db.pool, &commits(&script())).await?;

    let levels = inventory::stock_levels(
        &db.pool,
        &[RED.to_owned(), "NEVER-STOCKED".to_owned(), BLUE.to_owned()],
    )
    .await?;

    let found: Vec<(&str, i64, i64, i64)> = levels
        .iter()
        .map(|l| (l.sku.as_str(), l.on_hand, l.reserved, l.available))
        .collect();
    assert_eq!(found, vec![(BLUE, 15, 5, 10), (RED, 4, 4, 0)]);
    assert_eq!(
        inventory::stock_level(&db.pool, "NEVER-STOCKED").await?,
        None
    );
    Ok(())
}

#[tokio::test]
async fn returned_stock_is_on_hand_again_as_a_returned_movement() -> Result<()> {
    let db = migrated().await?;
    let script = vec![
        (BLUE, vec![received(BLUE, 10, "PO-1")]),
        (BLUE, vec![reserved(BLUE, order(1), 4)]),
        (BLUE, vec![reserved(BLUE, order(2), 1)]),
        (BLUE, vec![committed(BLUE, order(1), 4)]),
        (
            BLUE,
            vec![returned(BLUE, order(1), 4, "cancelled before shipping")],
        ),
    ];
    let commits = commits(&script);
    let expected = oracle(&commits, &script);

    apply(&db.pool, &commits).await?;

    let level = inventory::stock_level(&db.pool, BLUE).await?.unwrap();
    assert_eq!(Some(&level), expected.levels.get(BLUE));
    // By hand: 10 - 4 committed + 4 returned, with order 2's 1 still held.
    assert_eq!((level.on_hand, level.reserved, level.available), (10, 1, 9));
    let newest = inventory::movements(&db.pool, BLUE, PageRequest::first(1))
        .await?
        .into_nodes();
    assert_eq!(newest[0], expected.movements[4]);
    assert_eq!(
        (
            newest[0].kind,
            newest[0].on_hand_change,
            newest[0].reserved_change
        ),
        (MovementKind::Returned, 4, 0)
    );
    assert_eq!(newest[0].order_id, Some(order(1)));
    assert_eq!(
        newest[0].reason.as_deref(),
        Some("cancelled before shipping")
    );
    // The commit closed order 1's reservation; the return opens none.
    let held: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT order_id, quantity FROM inventory.reservations ORDER BY order_id")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(held, vec![(order(2).as_uuid(), 1)]);
    Ok(())
}

#[tokio::test]
async fn a_version_1_adjustment_is_applied_with_the_upcast_reason() -> Result<()> {
    let db = migrated().await?;
    let mut legacy = commits(&[
        (BLUE, vec![received(BLUE, 10, "PO-1")]),
        (BLUE, vec![adjusted(BLUE, -3, "placeholder")]),
    ]);
    // Version 1.0 of `StockAdjusted` had no reason.
    let event = &mut legacy[1].envelope.events[0];
    event.event_version = "1.0".to_owned();
    event.payload = json!({ "StockAdjusted": { "sku": BLUE, "delta": -3 } });

    apply(&db.pool, &legacy).await?;

    let level = inventory::stock_level(&db.pool, BLUE).await?.unwrap();
    assert_eq!((level.on_hand, level.available), (7, 7));
    let newest = inventory::movements(&db.pool, BLUE, PageRequest::first(1))
        .await?
        .into_nodes();
    assert_eq!(newest[0].kind, MovementKind::Adjusted);
    assert_eq!(newest[0].on_hand_change, -3);
    assert_eq!(newest[0].reason.as_deref(), Some(UNRECORDED_REASON));
    Ok(())
}

#[tokio::test]
async fn a_payload_of_the_wrong_shape_is_a_decode_error_and_writes_nothing() -> Result<()> {
    let db = migrated().await?;
    let mut batch = commits(&[
        (BLUE, vec![received(BLUE, 10, "PO-1")]),
        (RED, vec![received(RED, 2, "PO-2")]),
    ]);
    batch[1].envelope.events[0].payload =
        json!({ "StockReceived": { "sku": RED, "quantity": "two", "reference": "PO-2" } });

    let result = apply(&db.pool, &batch).await;

    assert!(matches!(result, Err(ApplyError::Decode(_))), "{result:?}");
    assert_eq!(inventory::stock_level(&db.pool, BLUE).await?, None);
    Ok(())
}

#[tokio::test]
async fn releasing_a_reservation_never_made_is_inconsistent() -> Result<()> {
    let db = migrated().await?;
    let batch = commits(&[
        (BLUE, vec![received(BLUE, 10, "PO-1")]),
        (BLUE, vec![reserved(BLUE, order(1), 3)]),
        // Order 9 never reserved; the SKU's total reserved alone would not notice.
        (BLUE, vec![released(BLUE, order(9), 2, "cancelled")]),
    ]);

    let result = apply(&db.pool, &batch).await;

    assert!(
        matches!(&result, Err(ApplyError::Inconsistent(m)) if m.contains("which holds 0")),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_version_is_inconsistent() -> Result<()> {
    let db = migrated().await?;
    let first = fixtures::commit::<Inventory>(1, BLUE, 1, &[received(BLUE, 1, "PO-1")], at(0));
    let third = fixtures::commit::<Inventory>(2, BLUE, 3, &[received(BLUE, 1, "PO-2")], at(1));
    apply(&db.pool, &[first]).await?;

    let result = apply(&db.pool, &[third]).await;

    assert!(
        matches!(&result, Err(ApplyError::Inconsistent(m)) if m.contains("event 3 follows event 1")),
        "{result:?}"
    );
    Ok(())
}
