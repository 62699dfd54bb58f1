//! The sagas read model against a real PostgreSQL (and, once, a real JetStream): saga
//! histories scripted through the domain's own decisions, checked against values the
//! test works out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_nats::jetstream;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use domain::ids::{OrderId, Sku};
use domain::order::Canceller;
use domain::saga::{
    FailedStep, OperatorAction, OrderSaga, Owner, Phase, SagaCommand, SagaEvent, SagaLine,
    SagaStart,
};
use domain::{Actor, CommandMetadata};
use infra_nats::{
    CommandBus, ConflictPolicy, EventStoreConfig, JetStreamEventStore, RecordedCommit,
    StreamSettings,
};
use projections::page::{PageRequest, QueryError};
use projections::runtime::{apply_directly, Projector, ProjectorConfig};
use projections::sagas::{
    self, SagaFilter, SagaPhase, SagaState, SagaSummary, SagaTimelineEntry, SagasProjection,
};
use projections::{fixtures, ApplyError};
use serde_json::json;
use testkit::{eventually, NatsServer};
use tokio::sync::oneshot;
use uuid::Uuid;

// The shared scripting kit: `Shop`, ids, money, dumps, the three-ways comparison.
mod support;
use support::*;

// Scripting histories

/// Saga commands decided by the real aggregate, recorded as commits in log order.
#[derive(Default)]
struct Sagas {
    shop: Shop,
    sagas: HashMap<OrderId, OrderSaga>,
}

impl Sagas {
    /// Records the events of `commands`, decided one after the other on saga `n`, as one
    /// commit written at `at`.
    fn commit(&mut self, n: u128, commands: Vec<SagaCommand>, at: DateTime<Utc>) {
        let id = order_id(n);
        let saga = self.sagas.entry(id).or_default();
        let mut events = Vec::new();
        for command in commands {
            let decided = saga
                .decide(command.clone())
                .unwrap_or_else(|e| panic!("saga {n} rejects {command:?}: {e}"));
            assert!(
                !decided.is_empty(),
                "{command:?} changes nothing on saga {n}"
            );
            for event in &decided {
                saga.apply(event.clone());
            }
            events.extend(decided);
        }
        self.shop.record::<OrderSaga>(id.as_uuid(), &events, at);
    }

    fn run(&mut self, n: u128, command: SagaCommand, at: DateTime<Utc>) {
        self.commit(n, vec![command], at);
    }

    fn log(&self) -> &[RecordedCommit] {
        &self.shop.log
    }
}

fn saga_id(n: u128) -> Uuid {
    order_id(n).as_uuid()
}

fn start(n: u128, trigger_position: u64, deadline_at: DateTime<Utc>) -> SagaCommand {
    SagaCommand::Start(SagaStart {
        order_id: order_id(n),
        customer_id: customer(n),
        lines: vec![SagaLine {
            sku: Sku::parse("MUG-01").unwrap(),
            quantity: 2,
        }],
        amount: eur(1700),
        card_token: "tok_secret_visa".to_owned(),
        payment_id: payment_id(n),
        trigger_position,
        deadline_at,
    })
}

fn reserved(deadline_at: DateTime<Utc>) -> SagaCommand {
    SagaCommand::RecordStockReserved { deadline_at }
}

fn authorised(deadline_at: DateTime<Utc>) -> SagaCommand {
    SagaCommand::RecordPaymentAuthorised {
        provider_reference: "sim_1".to_owned(),
        deadline_at,
    }
}

fn step_failed(step: FailedStep, reason: &str) -> SagaCommand {
    SagaCommand::RecordStepFailed {
        step,
        reason: reason.to_owned(),
    }
}

fn compensation_failed(step: &str, error: &str) -> SagaCommand {
    SagaCommand::RecordCompensationFailed {
        step: step.to_owned(),
        error: error.to_owned(),
        attempts: 5,
    }
}

fn cancel(by: Canceller, reason: &str, trigger_position: u64) -> SagaCommand {
    SagaCommand::NoteCancellation {
        by,
        reason: reason.to_owned(),
        trigger_position,
    }
}

fn intervene(action: OperatorAction, actor: &str, reason: &str) -> SagaCommand {
    SagaCommand::Intervene {
        action,
        actor: actor.to_owned(),
        reason: reason.to_owned(),
    }
}

fn minutes(at: DateTime<Utc>, n: i64) -> DateTime<Utc> {
    at + Duration::minutes(n)
}

/// Saga 1 runs to completion: started by the order event at position 7, one commit per
/// step.
fn completed_saga(sagas: &mut Sagas) {
    let t = day(1, 9);
    sagas.run(1, start(1, 7, day(1, 10)), t);
    sagas.run(1, reserved(day(1, 11)), minutes(t, 1));
    sagas.run(1, authorised(day(1, 12)), minutes(t, 2));
    sagas.run(1, SagaCommand::RecordCompleted, minutes(t, 3));
}

/// What the read model shows of saga `n` as started by `start`, before anything else.
fn started_summary(n: u128, trigger_position: u64, at: DateTime<Utc>) -> SagaSummary {
    SagaSummary {
        saga_id: saga_id(n),
        order_id: order_id(n),
        customer_id: customer(n),
        payment_id: payment_id(n),
        phase: SagaPhase::Reserving,
        reason: None,
        failed_step: None,
        last_error: None,
        deadline_at: None,
        owner: Some(Owner::Trigger(trigger_position)),
        cancelled_by: None,
        compensation_rounds: 0,
        amount: eur(1700),
        started_at: at,
        updated_at: at,
        version: 1,
        position: 1,
    }
}

async fn get(pool: &sqlx::PgPool, n: u128) -> SagaSummary {
    sagas::get(pool, saga_id(n))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("saga {n} is missing"))
}

async fn apply(pool: &sqlx::PgPool, commits: &[RecordedCommit]) -> Result<(), ApplyError> {
    apply_directly(pool, &SagasProjection, &deliveries(commits)).await
}

// One saga's life

#[tokio::test]
async fn a_saga_moves_through_its_forward_phases_and_completes_with_no_owner() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    completed_saga(&mut sagas);
    let log = sagas.log();
    let t = day(1, 9);

    apply(&db.pool, &log[..1]).await.unwrap();
    assert_eq!(
        get(&db.pool, 1).await,
        SagaSummary {
            deadline_at: Some(day(1, 10)),
            ..started_summary(1, 7, t)
        }
    );

    apply(&db.pool, &log[1..2]).await.unwrap();
    let waiting = get(&db.pool, 1).await;
    assert_eq!(
        (waiting.phase, waiting.deadline_at, waiting.owner),
        (
            SagaPhase::Authorising,
            Some(day(1, 11)),
            Some(Owner::Trigger(7))
        )
    );

    apply(&db.pool, &log[2..]).await.unwrap();
    assert_eq!(
        get(&db.pool, 1).await,
        SagaSummary {
            phase: SagaPhase::Completed,
            owner: None,
            updated_at: minutes(t, 3),
            version: 4,
            position: 4,
            ..started_summary(1, 7, t)
        }
    );
    assert_eq!(sagas::get(&db.pool, saga_id(9)).await.unwrap(), None);
}

#[tokio::test]
async fn a_failed_step_compensates_with_its_reason_then_rests_compensated() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    let t = day(2, 9);
    sagas.run(2, start(2, 11, day(2, 10)), t);
    sagas.run(2, reserved(day(2, 11)), minutes(t, 1));
    sagas.run(
        2,
        step_failed(FailedStep::Authorise, "card declined"),
        minutes(t, 2),
    );
    apply(&db.pool, sagas.log()).await.unwrap();

    let compensating = get(&db.pool, 2).await;
    assert_eq!(
        compensating,
        SagaSummary {
            phase: SagaPhase::Compensating,
            reason: Some("card declined".into()),
            compensation_rounds: 1,
            updated_at: minutes(t, 2),
            version: 3,
            position: 3,
            ..started_summary(2, 11, t)
        },
        "compensating keeps its driver and has no deadline"
    );

    sagas.run(2, SagaCommand::RecordCompensated, minutes(t, 3));
    apply(&db.pool, &sagas.log()[3..]).await.unwrap();
    assert_eq!(
        get(&db.pool, 2).await,
        SagaSummary {
            phase: SagaPhase::Compensated,
            owner: None,
            updated_at: minutes(t, 3),
            version: 4,
            position: 4,
            ..compensating
        }
    );
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_is_parked_with_its_step_and_error() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    let t = day(3, 9);
    sagas.run(3, start(3, 21, day(3, 10)), t);
    sagas.commit(
        3,
        vec![
            step_failed(FailedStep::Reserve, "out of stock"),
            compensation_failed("release_stock", "inventory unreachable"),
        ],
        minutes(t, 5),
    );
    apply(&db.pool, sagas.log()).await.unwrap();

    assert_eq!(
        get(&db.pool, 3).await,
        SagaSummary {
            phase: SagaPhase::CompensationFailed,
            reason: Some("out of stock".into()),
            failed_step: Some("release_stock".into()),
            last_error: Some("inventory unreachable".into()),
            owner: None,
            compensation_rounds: 1,
            updated_at: minutes(t, 5),
            version: 3,
            position: 2,
            ..started_summary(3, 21, t)
        }
    );
}

#[tokio::test]
async fn an_operator_retry_takes_over_and_starts_another_compensation_round() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    let t = day(3, 9);
    sagas.run(3, start(3, 21, day(3, 10)), t);
    sagas.run(
        3,
        step_failed(FailedStep::Reserve, "out of stock"),
        minutes(t, 1),
    );
    sagas.run(
        3,
        compensation_failed("release_stock", "inventory unreachable"),
        minutes(t, 2),
    );
    sagas.run(
        3,
        intervene(OperatorAction::Retry, "user:ops-1", "inventory is back"),
        minutes(t, 30),
    );
    apply(&db.pool, sagas.log()).await.unwrap();

    let retried = get(&db.pool, 3).await;
    assert_eq!(
        retried,
        SagaSummary {
            phase: SagaPhase::Compensating,
            // The reason is the original one; the failed step and error are gone with
            // the parked phase.
            reason: Some("out of stock".into()),
            owner: Some(Owner::Operator("user:ops-1".into())),
            compensation_rounds: 2,
            updated_at: minutes(t, 30),
            version: 4,
            position: 4,
            ..started_summary(3, 21, t)
        }
    );

    sagas.run(3, SagaCommand::RecordCompensated, minutes(t, 31));
    apply(&db.pool, &sagas.log()[4..]).await.unwrap();
    let done = get(&db.pool, 3).await;
    assert_eq!(
        (
            done.phase,
            done.owner,
            done.compensation_rounds,
            done.reason
        ),
        (SagaPhase::Compensated, None, 2, Some("out of stock".into()))
    );
}

#[tokio::test]
async fn a_cancellation_after_completion_takes_over_the_saga_and_compensates() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    completed_saga(&mut sagas);
    sagas.run(
        1,
        cancel(Canceller::Customer, "changed my mind", 99),
        day(4, 9),
    );
    apply(&db.pool, sagas.log()).await.unwrap();

    assert_eq!(
        get(&db.pool, 1).await,
        SagaSummary {
            phase: SagaPhase::Compensating,
            reason: Some("order cancelled by the customer: changed my mind".into()),
            owner: Some(Owner::Trigger(99)),
            cancelled_by: Some(Canceller::Customer),
            compensation_rounds: 1,
            updated_at: day(4, 9),
            version: 5,
            position: 5,
            ..started_summary(1, 7, day(1, 9))
        }
    );
}

#[tokio::test]
async fn a_cancellation_while_running_leaves_the_driver_in_charge() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    let t = day(5, 9);
    sagas.run(5, start(5, 40, day(5, 10)), t);
    sagas.run(5, cancel(Canceller::Admin, "fraud", 41), minutes(t, 1));
    apply(&db.pool, sagas.log()).await.unwrap();

    let saga = get(&db.pool, 5).await;
    assert_eq!(
        (
            saga.phase,
            saga.owner,
            saga.cancelled_by,
            saga.reason.as_deref(),
            saga.deadline_at
        ),
        (
            SagaPhase::Compensating,
            Some(Owner::Trigger(40)),
            Some(Canceller::Admin),
            Some("order cancelled by an admin: fraud"),
            None
        )
    );
}

// Listing by state

/// Ten sagas, one or more per state, against the real clock:
/// 1 completed; 2 compensated; 3 parked; 4 authorising past its deadline; 5 authorising
/// before it; 6 reserving before it; 7 completing past it; 8 compensating with no event
/// for long; 9 compensating just now; 10 reserving past its deadline.
fn sagas_in_every_state() -> Sagas {
    let now = Utc::now();
    let future = now + Duration::days(1);
    let t = day(6, 9);
    let mut sagas = Sagas::default();
    completed_saga(&mut sagas);

    sagas.run(2, start(2, 2, future), t);
    sagas.commit(
        2,
        vec![
            step_failed(FailedStep::Reserve, "out of stock"),
            SagaCommand::RecordCompensated,
        ],
        minutes(t, 1),
    );

    sagas.run(3, start(3, 3, future), t);
    sagas.commit(
        3,
        vec![
            step_failed(FailedStep::Reserve, "out of stock"),
            compensation_failed("release_stock", "timeout"),
        ],
        minutes(t, 2),
    );

    sagas.commit(4, vec![start(4, 4, future), reserved(day(6, 10))], t);
    sagas.commit(5, vec![start(5, 5, day(6, 10)), reserved(future)], t);
    sagas.run(6, start(6, 6, future), t);
    sagas.commit(
        7,
        vec![
            start(7, 7, future),
            reserved(future),
            authorised(day(6, 10)),
        ],
        minutes(t, 3),
    );
    sagas.run(8, start(8, 8, future), t);
    sagas.run(8, step_failed(FailedStep::Reserve, "short"), minutes(t, 4));
    sagas.run(9, start(9, 9, future), t);
    sagas.run(9, step_failed(FailedStep::Reserve, "short"), now);
    sagas.run(10, start(10, 10, day(6, 10)), minutes(t, 5));
    sagas
}

async fn listed(pool: &sqlx::PgPool, filter: &SagaFilter) -> Vec<SagaSummary> {
    let page = sagas::list(pool, filter, PageRequest::first(100))
        .await
        .unwrap();
    assert!(!page.has_next_page);
    assert_eq!(page.total_count, Some(page.edges.len() as i64));
    page.into_nodes()
}

#[tokio::test]
async fn each_state_lists_exactly_its_sagas_most_recently_changed_first() {
    let db = migrated().await;
    let sagas = sagas_in_every_state();
    apply(&db.pool, sagas.log()).await.unwrap();

    // Sagas 4, 5 and 6 changed last at the same time: the id breaks the tie, highest
    // first.
    let cases = [
        (None, vec![9, 10, 8, 7, 3, 2, 6, 5, 4, 1]),
        (Some(SagaState::Running), vec![9, 10, 8, 7, 6, 5, 4]),
        (Some(SagaState::Waiting), vec![5, 4]),
        (Some(SagaState::StuckPastDeadline), vec![10, 8, 7, 4]),
        (Some(SagaState::CompensationFailed), vec![3]),
        (Some(SagaState::Completed), vec![1]),
        (Some(SagaState::Compensated), vec![2]),
    ];
    for (state, expected) in cases {
        let filter = SagaFilter {
            state,
            order_id: None,
        };
        let ids: Vec<Uuid> = listed(&db.pool, &filter)
            .await
            .iter()
            .map(|s| s.saga_id)
            .collect();
        let expected: Vec<Uuid> = expected.into_iter().map(saga_id).collect();
        assert_eq!(ids, expected, "{state:?}");
    }

    let one = SagaFilter {
        state: None,
        order_id: Some(order_id(7)),
    };
    assert_eq!(
        listed(&db.pool, &one)
            .await
            .iter()
            .map(|s| s.saga_id)
            .collect::<Vec<_>>(),
        vec![saga_id(7)]
    );
    let mismatch = SagaFilter {
        state: Some(SagaState::Completed),
        order_id: Some(order_id(7)),
    };
    assert!(listed(&db.pool, &mismatch).await.is_empty());
}

#[tokio::test]
async fn pages_follow_each_other_without_gaps_or_repeats() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    // Seven sagas changed at three distinct times, so that pages break inside ties.
    for n in 1..=7 {
        let at = day(7, 9 + (n % 3) as u32);
        sagas.run(n, start(n, n as u64, day(7, 20)), at);
    }
    apply(&db.pool, sagas.log()).await.unwrap();
    let mut expected: Vec<(DateTime<Utc>, Uuid)> = (1..=7u128)
        .map(|n| (day(7, 9 + (n % 3) as u32), saga_id(n)))
        .collect();
    expected.sort();
    expected.reverse();

    let filter = SagaFilter::default();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let request = PageRequest::Forward {
            first: 3,
            after: after.as_deref(),
        };
        let page = sagas::list(&db.pool, &filter, request).await.unwrap();
        assert_eq!(page.total_count, Some(7));
        assert_eq!(page.has_previous_page, after.is_some());
        pages.push((page.edges.len(), page.has_next_page));
        seen.extend(page.nodes().map(|s| (s.updated_at, s.saga_id)));
        if !page.has_next_page {
            break;
        }
        after = page.end_cursor().map(str::to_owned);
    }
    assert_eq!(pages, vec![(3, true), (3, true), (1, false)]);
    assert_eq!(seen, expected);

    // From the end backward, with `last/before`: the same sagas, pages in list order.
    let mut seen_backward = Vec::new();
    let mut before: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let request = PageRequest::Backward {
            last: 3,
            before: before.as_deref(),
        };
        let page = sagas::list(&db.pool, &filter, request).await.unwrap();
        assert_eq!(page.has_next_page, before.is_some());
        pages.push((page.edges.len(), page.has_previous_page));
        let mut earlier: Vec<_> = page.nodes().map(|s| (s.updated_at, s.saga_id)).collect();
        earlier.append(&mut seen_backward);
        seen_backward = earlier;
        if !page.has_previous_page {
            break;
        }
        before = page.start_cursor().map(str::to_owned);
    }
    assert_eq!(pages, vec![(3, true), (3, true), (1, false)]);
    assert_eq!(seen_backward, expected);

    for garbage in [
        PageRequest::Forward {
            first: 3,
            after: Some("not a cursor"),
        },
        PageRequest::Backward {
            last: 3,
            before: Some("not a cursor"),
        },
    ] {
        assert!(matches!(
            sagas::list(&db.pool, &filter, garbage).await,
            Err(QueryError::InvalidCursor)
        ));
    }
    assert!(matches!(
        sagas::list(&db.pool, &filter, PageRequest::first(101)).await,
        Err(QueryError::PageTooLarge(101))
    ));
}

#[tokio::test]
async fn counts_give_every_phase_in_order_zeros_included() {
    let db = migrated().await;
    let sagas = sagas_in_every_state();
    apply(&db.pool, sagas.log()).await.unwrap();

    let counts = sagas::counts(&db.pool).await.unwrap();
    let expected = [
        ("reserving", 2),
        ("authorising", 2),
        ("completing", 1),
        ("completed", 1),
        ("compensating", 2),
        ("compensated", 1),
        ("compensation_failed", 1),
    ]
    .map(|(phase, n)| (phase.to_owned(), n));
    assert_eq!(counts, expected);

    let empty = migrated().await;
    let zeros = sagas::counts(&empty.pool).await.unwrap();
    assert!(zeros.iter().all(|(_, n)| *n == 0) && zeros.len() == 7);
}

// History

#[tokio::test]
async fn the_timeline_lists_every_event_in_version_order_without_the_card_token() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    let t = day(8, 9);
    sagas.run(8, start(8, 3, day(8, 10)), t);
    // Two events in one commit: each gets its own version.
    sagas.commit(
        8,
        vec![reserved(day(8, 11)), authorised(day(8, 12))],
        minutes(t, 1),
    );
    sagas.run(
        8,
        step_failed(FailedStep::Complete, "capture refused"),
        minutes(t, 2),
    );
    sagas.run(
        8,
        intervene(OperatorAction::Compensate, "user:ops-2", "give up"),
        minutes(t, 3),
    );
    sagas.run(8, SagaCommand::RecordCompensated, minutes(t, 4));
    apply(&db.pool, sagas.log()).await.unwrap();

    let timeline = sagas::timeline(&db.pool, saga_id(8)).await.unwrap();
    let entry = |version, position, event_type: &str, detail, at| SagaTimelineEntry {
        version,
        position,
        event_type: event_type.to_owned(),
        detail,
        at,
    };
    assert_eq!(
        timeline,
        vec![
            entry(
                1,
                1,
                "SagaStarted",
                json!({
                    "order_id": saga_id(8),
                    "customer_id": customer(8),
                    "lines": [{ "sku": "MUG-01", "quantity": 2 }],
                    "amount": { "amount_minor": 1700, "currency": "EUR" },
                    "payment_id": payment_id(8),
                    "trigger_position": 3,
                    "deadline_at": day(8, 10),
                }),
                t
            ),
            entry(
                2,
                2,
                "SagaStockReserved",
                json!({ "deadline_at": day(8, 11) }),
                minutes(t, 1)
            ),
            entry(
                3,
                2,
                "SagaPaymentAuthorised",
                json!({ "provider_reference": "sim_1", "deadline_at": day(8, 12) }),
                minutes(t, 1)
            ),
            entry(
                4,
                3,
                "SagaStepFailed",
                json!({ "step": "Complete", "reason": "capture refused" }),
                minutes(t, 2)
            ),
            entry(
                5,
                4,
                "SagaOperatorIntervened",
                json!({ "action": "Compensate", "actor": "user:ops-2", "reason": "give up" }),
                minutes(t, 3)
            ),
            entry(6, 5, "SagaCompensated", json!({}), minutes(t, 4)),
        ]
    );
    assert!(sagas::timeline(&db.pool, saga_id(9))
        .await
        .unwrap()
        .is_empty());

    let dump = dump(&db.pool, "sagas").await;
    assert!(
        dump.iter()
            .all(|(_, rows)| !rows.contains("tok_secret_visa")),
        "the card token is stored: {dump:?}"
    );
}

// Batching, replays and broken logs

#[tokio::test]
async fn one_batch_one_by_one_in_chunks_and_replayed_give_the_same_rows() {
    let mut sagas = sagas_in_every_state();
    // Saga 3 is retried by an operator after the rest, and compensates for good.
    let later = day(9, 9);
    sagas.run(
        3,
        intervene(OperatorAction::Retry, "user:ops-1", "try again"),
        later,
    );
    sagas.run(3, SagaCommand::RecordCompensated, minutes(later, 1));
    let log = sagas.log().to_vec();
    assert!(log.len() > 12);

    let [expected, single, chunked] = apply_three_ways(&SagasProjection, &log, 4, 2..11).await;
    assert!(expected
        .iter()
        .any(|(t, rows)| t == "timeline" && rows.contains("SagaOperatorIntervened")));
    assert!(expected
        .iter()
        .any(|(t, rows)| t == "instances" && rows.contains(r#""compensation_rounds": 2"#)));
    assert_eq!(single, expected);
    assert_eq!(chunked, expected);
}

#[tokio::test]
async fn a_duplicate_delivery_changes_nothing() {
    let db = migrated().await;
    let sagas = sagas_in_every_state();
    let log = sagas.log();
    apply(&db.pool, log).await.unwrap();
    let before = dump(&db.pool, "sagas").await;

    // Redelivered alone, then again within a batch that holds it twice.
    apply(&db.pool, &log[3..4]).await.unwrap();
    let twice: Vec<RecordedCommit> = [&log[5..7], &log[6..8]].concat();
    apply(&db.pool, &twice).await.unwrap();
    apply(&db.pool, log).await.unwrap();

    assert_eq!(dump(&db.pool, "sagas").await, before);
}

#[tokio::test]
async fn a_commit_repeated_within_a_first_batch_is_applied_once() {
    let mut sagas = Sagas::default();
    completed_saga(&mut sagas);
    let log = sagas.log();
    let once = migrated().await;
    apply(&once.pool, log).await.unwrap();
    let twice = migrated().await;
    let repeated: Vec<RecordedCommit> = [&log[..3], &log[1..]].concat();
    apply(&twice.pool, &repeated).await.unwrap();
    assert_eq!(
        dump(&twice.pool, "sagas").await,
        dump(&once.pool, "sagas").await
    );
}

#[tokio::test]
async fn an_event_of_a_saga_never_started_is_inconsistent() {
    let db = migrated().await;
    let completed = fixtures::commit::<OrderSaga>(
        1,
        &saga_id(4).to_string(),
        1,
        &[SagaEvent::SagaCompleted],
        day(3, 9),
    );
    let result = apply(&db.pool, &[completed]).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_commit_after_a_gap_is_inconsistent() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    completed_saga(&mut sagas);
    let log = sagas.log();
    apply(&db.pool, &log[..1]).await.unwrap();
    let result = apply(&db.pool, &log[2..3]).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
    assert_eq!(get(&db.pool, 1).await.version, 1);
}

#[tokio::test]
async fn a_saga_started_for_another_order_than_its_id_is_inconsistent() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    sagas.run(1, start(1, 7, day(1, 10)), day(1, 9));
    let mut stray = sagas.log()[0].clone();
    stray.envelope.aggregate_id = saga_id(2).to_string();
    let result = apply(&db.pool, &[stray]).await;
    assert!(
        matches!(result, Err(ApplyError::Inconsistent(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_event_of_the_wrong_shape_is_a_decode_error() {
    let db = migrated().await;
    let mut sagas = Sagas::default();
    sagas.run(1, start(1, 7, day(1, 10)), day(1, 9));
    let mut broken = sagas.log()[0].clone();
    broken.envelope.events[0].payload = json!({ "SagaStarted": { "order_id": 3 } });
    let result = apply(&db.pool, &[broken]).await;
    assert!(matches!(result, Err(ApplyError::Decode(_))), "{result:?}");
}

// Words and wiring

#[test]
fn the_phase_words_are_the_domains() {
    let at = day(1, 9);
    let phases = [
        Phase::Reserving { deadline_at: at },
        Phase::Authorising { deadline_at: at },
        Phase::Completing { deadline_at: at },
        Phase::Completed,
        Phase::Compensating { reason: "r".into() },
        Phase::Compensated { reason: "r".into() },
        Phase::CompensationFailed {
            reason: "r".into(),
            step: "s".into(),
            error: "e".into(),
        },
    ];
    for (phase, ours) in phases.iter().zip(SagaPhase::ALL) {
        assert_eq!(phase.as_str(), ours.as_str());
        assert_eq!(phase.is_at_rest(), ours.is_at_rest(), "{ours}");
        assert_eq!(phase.as_str().parse::<SagaPhase>().unwrap(), ours);
    }
    for state in [
        SagaState::Running,
        SagaState::Waiting,
        SagaState::StuckPastDeadline,
        SagaState::CompensationFailed,
        SagaState::Completed,
        SagaState::Compensated,
    ] {
        assert_eq!(state.as_str().parse::<SagaState>().unwrap(), state);
    }
}

#[test]
fn the_registry_runs_the_sagas_projector_on_saga_commits() {
    let projection = projections::registry::by_name("sagas").expect("registered");
    assert_eq!(projection.schema(), "sagas");
    assert_eq!(projection.aggregate_types(), [OrderSaga::TYPE]);
    assert_eq!(projection.version(), 1);
}

/// Through the real write side and the real projector: the aggregate's commits reach
/// the read model over JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_driven_through_the_event_store_reaches_the_read_model() {
    let nats = NatsServer::start();
    let db = migrated().await;
    let client = infra_nats::connect(&nats.url()).await.unwrap();
    let jetstream = jetstream::new(client.clone());
    infra_nats::provision(&jetstream, &StreamSettings::default())
        .await
        .unwrap();
    let store = JetStreamEventStore::<OrderSaga>::new(client.clone(), EventStoreConfig::default())
        .await
        .unwrap();
    let bus = CommandBus::new(store, (), ConflictPolicy::default());
    let deadline = Utc::now() + Duration::minutes(5);
    let id = saga_id(1).to_string();
    for command in [
        start(1, 7, deadline),
        reserved(deadline),
        authorised(deadline),
        SagaCommand::RecordCompleted,
    ] {
        let metadata = CommandMetadata::new(Actor::System("saga-test".to_owned()));
        bus.execute(&id, command, &metadata).await.unwrap();
    }

    let projector = Projector::new(
        Arc::new(SagasProjection),
        db.pool.clone(),
        jetstream.clone(),
        ProjectorConfig::default(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(projector.run(async {
        let _ = stopped.await;
    }));

    let saga = eventually(
        "the saga in the read model",
        StdDuration::from_secs(30),
        || async {
            sagas::get(&db.pool, saga_id(1))
                .await
                .unwrap()
                .filter(|s| s.version == 4)
        },
    )
    .await;
    assert_eq!((saga.phase, saga.owner), (SagaPhase::Completed, None));
    let timeline = sagas::timeline(&db.pool, saga_id(1)).await.unwrap();
    assert_eq!(
        timeline.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    let _ = stop.send(());
    task.await.unwrap();
}
