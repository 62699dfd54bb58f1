//! The order saga against real NATS and PostgreSQL, with the simulated payment provider.

mod support;

use std::time::Duration;

use domain::order::OrderStatus;
use domain::payment::PaymentStatus;
use domain::saga::{Owner, Phase};
use domain::Actor;
use saga::provider::SimulatorConfig;
use saga::DriveOutcome;
use support::{fast_saga, Harness};

fn compensated(phase: &Phase) -> bool {
    matches!(phase, Phase::Compensated { .. })
}

fn reason(phase: &Phase) -> String {
    match phase {
        Phase::Compensated { reason } | Phase::Compensating { reason } => reason.clone(),
        Phase::CompensationFailed { reason, .. } => reason.clone(),
        other => panic!("no reason in {other:?}"),
    }
}

#[tokio::test]
async fn the_happy_path_captures_commits_and_confirms() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    shop.receive("TEE", 5).await;
    let order = shop
        .place(&[("MUG", 2, 850), ("TEE", 1, 1999)], "tok_visa")
        .await;

    assert_eq!(shop.rested(order).await, Phase::Completed);
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Confirmed));
    let mug = shop.inventory("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (3, 0));
    assert_eq!(mug.committed_quantity(order), Some(2));
    let tee = shop.inventory("TEE").await;
    assert_eq!((tee.on_hand(), tee.reserved()), (4, 0));
    let payment = shop.payment(order).await;
    assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    assert_eq!(payment.captured().unwrap().amount_minor, 3699);
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!(ledger.captured_minor, 3699);
    assert_eq!(ledger.refunded_minor, 0);
    assert_eq!(ledger.authorised_held_minor, 0);
    // Started, reserved, authorised, completed: one saga commit per phase.
    assert_eq!(shop.saga_commits(order).await, 4);
    shop.stop().await;
}

#[tokio::test]
async fn a_line_short_of_stock_releases_the_reserved_lines_and_cancels() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    shop.receive("TEE", 1).await;
    let order = shop
        .place(&[("MUG", 2, 850), ("TEE", 3, 1999)], "tok_visa")
        .await;

    let phase = shop.rested(order).await;
    assert!(compensated(&phase), "{phase:?}");
    assert!(
        reason(&phase).contains("not enough stock of TEE"),
        "{phase:?}"
    );
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Cancelled));
    let mug = shop.inventory("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (5, 0));
    let tee = shop.inventory("TEE").await;
    assert_eq!((tee.on_hand(), tee.reserved()), (1, 0));
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!(
        (ledger.captured_minor, ledger.authorised_held_minor),
        (0, 0),
        "no payment was attempted"
    );
    assert_eq!(shop.provider.entry(order).await.unwrap(), None);
    shop.stop().await;
}

#[tokio::test]
async fn a_declined_payment_releases_all_reservations_and_cancels() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 2, 850)], "tok_declined").await;

    let phase = shop.rested(order).await;
    assert!(reason(&phase).contains("payment declined"), "{phase:?}");
    assert!(compensated(&phase));
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Cancelled));
    let mug = shop.inventory("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (5, 0));
    assert_eq!(
        shop.payment(order).await.status(),
        Some(PaymentStatus::Declined)
    );
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!((ledger.declined, ledger.captured_minor), (1, 0));
    shop.stop().await;
}

#[tokio::test]
async fn transient_provider_failures_are_retried_with_the_same_key() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 1, 850)], "tok_fail_3").await;

    assert_eq!(shop.rested(order).await, Phase::Completed);
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!(ledger.captured_minor, 850, "authorised once, captured once");
    shop.stop().await;
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_its_late_success_is_voided() {
    let mut saga = fast_saga();
    saga.authorise_timeout = Duration::from_millis(500);
    let simulator = SimulatorConfig {
        hang_for: Duration::from_millis(1500),
        ..SimulatorConfig::default()
    };
    let shop = Harness::start(1, simulator, saga).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 2, 850)], "tok_hang").await;

    let phase = shop.rested(order).await;
    assert!(compensated(&phase), "{phase:?}");
    assert!(reason(&phase).contains("deadline"), "{phase:?}");
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Cancelled));
    assert_eq!(shop.inventory("MUG").await.reserved(), 0);
    // The hanging call ends after the timeout; whatever it does, no money is held.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shop.assert_no_money_taken().await;
    assert_eq!(
        shop.provider.entry(order).await.unwrap().unwrap().state,
        saga::provider::EntryState::Voided
    );
    shop.stop().await;
}

#[tokio::test]
async fn a_customer_cancelling_while_payment_is_pending_gets_everything_undone() {
    // The provider answers slowly enough for the cancellation to be noticed on the saga
    // first: the authorisation is then voided, never captured.
    let simulator = SimulatorConfig {
        latency: Duration::from_millis(800),
        ..SimulatorConfig::default()
    };
    let shop = Harness::start(1, simulator, fast_saga()).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 2, 850)], "tok_visa").await;
    shop.wait_for_phase(order, "authorising", |phase| {
        matches!(phase, Phase::Authorising { .. })
    })
    .await;
    assert!(shop.cancel(order).await);

    let phase = shop.rested(order).await;
    assert!(compensated(&phase), "{phase:?}");
    assert!(reason(&phase).contains("cancelled"), "{phase:?}");
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Cancelled));
    assert_eq!(shop.inventory("MUG").await.reserved(), 0);
    assert_eq!(shop.inventory("MUG").await.on_hand(), 5);
    shop.assert_no_money_taken().await;
    shop.stop().await;
}

#[tokio::test]
async fn a_customer_cancelling_right_after_placing_is_compensated() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 2, 850)], "tok_visa").await;
    // Possibly before the saga even started.
    assert!(shop.cancel(order).await);

    let phase = shop.rested(order).await;
    assert!(compensated(&phase), "{phase:?}");
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Cancelled));
    let mug = shop.inventory("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (5, 0));
    shop.assert_no_money_taken().await;
    shop.stop().await;
}

#[tokio::test]
async fn a_customer_cancelling_after_confirmation_is_refunded_and_the_stock_returns() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 2, 850)], "tok_visa").await;
    assert_eq!(shop.rested(order).await, Phase::Completed);
    assert!(shop.cancel(order).await);

    testkit::eventually("the refund", Duration::from_secs(30), || async {
        compensated(shop.saga(order).await.phase().unwrap()).then_some(())
    })
    .await;
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Refunded));
    let mug = shop.inventory("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (5, 0));
    assert!(mug.is_returned(order));
    let payment = shop.payment(order).await;
    assert_eq!(payment.refunded().unwrap().amount_minor, 1700);
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!((ledger.captured_minor, ledger.refunded_minor), (1700, 1700));
    shop.stop().await;
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_ends_parked_in_the_dead_letter_queue() {
    let shop = Harness::start(1, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 1, 850)], "tok_refund_fails").await;
    assert_eq!(shop.rested(order).await, Phase::Completed);
    assert!(shop.cancel(order).await);

    let phase = testkit::eventually("the saga to park", Duration::from_secs(30), || async {
        let saga = shop.saga(order).await;
        matches!(saga.phase(), Some(Phase::CompensationFailed { .. }))
            .then(|| saga.phase().cloned().unwrap())
    })
    .await;
    let Phase::CompensationFailed { step, .. } = &phase else {
        unreachable!()
    };
    assert_eq!(step, "refund");
    let parked = testkit::eventually("the dead letter", Duration::from_secs(10), || async {
        let filter = projections::dead_letters::DeadLetterFilter {
            consumer: Some("saga".to_owned()),
            ..Default::default()
        };
        let parked = projections::dead_letters::list(&shop.db.pool, &filter, 10)
            .await
            .unwrap();
        (!parked.is_empty()).then_some(parked)
    })
    .await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].aggregate_id, order.to_string());
    assert!(parked[0].error.contains("refund"), "{}", parked[0].error);
    // The money is still captured: the operator must act; the saga does not spin.
    let commits = shop.saga_commits(order).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shop.saga_commits(order).await, commits, "no hot loop");

    // An operator retries; the provider still refuses, so it parks again, once.
    let driver = shop.driver().await;
    let actor = Actor::System("ops".to_owned());
    let outcome = saga::admin::retry(&driver, order, &actor, "provider says fixed")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DriveOutcome::Rested("compensation_failed".to_owned())
    );
    assert_eq!(shop.saga(order).await.run().unwrap().compensation_rounds, 2);
    let filter = projections::dead_letters::DeadLetterFilter {
        consumer: Some("saga".to_owned()),
        ..Default::default()
    };
    let parked_again = projections::dead_letters::list(&shop.db.pool, &filter, 10)
        .await
        .unwrap();
    assert_eq!(parked_again.len(), 1, "the second round replaces the first");
    assert!(parked_again[0].position > parked[0].position);

    // The provider fixes its side; the next retry refunds, returns the stock, resolves the
    // dead letter and records who did it.
    assert_eq!(shop.provider.end_refund_outage(order).await.unwrap(), 1);
    let outcome = saga::admin::retry(&driver, order, &actor, "refunds work again")
        .await
        .unwrap();
    assert_eq!(outcome, DriveOutcome::Rested("compensated".to_owned()));
    assert!(projections::dead_letters::list(&shop.db.pool, &filter, 10)
        .await
        .unwrap()
        .is_empty());
    let history = projections::dead_letters::history(&shop.db.pool, Some("saga"), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        (history[0].actor.as_str(), history[0].reason.as_str()),
        ("system:ops", "refunds work again")
    );
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!((ledger.captured_minor, ledger.refunded_minor), (850, 850));
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Refunded));
    assert_eq!(shop.inventory("MUG").await.on_hand(), 5);
    // Retrying a saga that is not parked is refused and changes nothing.
    let done = shop.place(&[("MUG", 1, 850)], "tok_visa").await;
    assert_eq!(shop.rested(done).await, Phase::Completed);
    let before = shop.saga_commits(done).await;
    assert!(saga::admin::retry(&driver, done, &actor, "why")
        .await
        .is_err());
    assert_eq!(shop.saga_commits(done).await, before);
    shop.stop().await;
}

#[tokio::test]
async fn an_operator_can_force_compensate_a_running_saga() {
    let simulator = SimulatorConfig {
        hang_for: Duration::from_secs(30),
        ..SimulatorConfig::default()
    };
    let mut saga_config = fast_saga();
    saga_config.authorise_timeout = Duration::from_secs(60);
    let shop = Harness::start(0, simulator, saga_config).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 1, 850)], "tok_visa").await;
    // No replica runs: start the saga by hand as an abandoned one would look.
    let driver = shop.driver().await;
    let actor = Actor::System("ops".to_owned());
    assert!(
        saga::admin::compensate(&driver, order, &actor, "stuck")
            .await
            .is_err(),
        "not started yet"
    );
    let mut shop = shop;
    shop.start_replica().await;
    assert_eq!(shop.rested(order).await, Phase::Completed);
    let hanging = shop.place(&[("MUG", 1, 850)], "tok_hang").await;
    shop.wait_for_phase(hanging, "authorising", |phase| {
        matches!(phase, Phase::Authorising { .. })
    })
    .await;
    let outcome = saga::admin::compensate(&driver, hanging, &actor, "provider outage")
        .await
        .unwrap();
    assert_eq!(outcome, DriveOutcome::Rested("compensated".to_owned()));
    assert_eq!(
        shop.order_status(hanging).await,
        Some(OrderStatus::Cancelled)
    );
    assert_eq!(shop.inventory("MUG").await.reserved(), 0);
    let view = saga::admin::show(&driver, hanging).await.unwrap();
    assert!(view.history.iter().any(|entry| entry.actor == "system:ops"));
    let actions = projections::dead_letters::history(&shop.db.pool, Some("saga"), 10)
        .await
        .unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        actions[0].action, "compensate",
        "recorded in the operator's words"
    );
    shop.stop().await;
}

#[tokio::test]
async fn two_drivers_on_one_saga_have_every_effect_once() {
    let shop = Harness::start(0, SimulatorConfig::default(), fast_saga()).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 2, 850)], "tok_visa").await;
    // Start the saga as the trigger would, then let two drivers (two processes, one of
    // them believed dead) drive it at once.
    let first = shop.driver().await;
    let second = shop.driver().await;
    let position = shop
        .buses
        .orders
        .store()
        .history(&order.to_string())
        .await
        .unwrap()[0]
        .position;
    let start = domain::saga::SagaStart {
        order_id: order,
        customer_id: domain::CustomerId(uuid::Uuid::from_u128(42)),
        lines: vec![domain::saga::SagaLine {
            sku: domain::Sku::parse("MUG").unwrap(),
            quantity: 2,
        }],
        amount: domain::Money::new(1700, domain::Currency::EUR),
        card_token: "tok_visa".to_owned(),
        payment_id: saga::keys::payment_id(order),
        trigger_position: position,
        deadline_at: chrono::Utc::now() + chrono::Duration::seconds(5),
    };
    first
        .record(
            order,
            domain::saga::SagaCommand::Start(start),
            &saga::keys::SagaStep::Start,
        )
        .await
        .unwrap();
    let owner = Owner::Trigger(position);
    let (a, b) = tokio::join!(first.drive(order, &owner), second.drive(order, &owner));
    assert_eq!(a.unwrap(), DriveOutcome::Rested("completed".to_owned()));
    assert_eq!(b.unwrap(), DriveOutcome::Rested("completed".to_owned()));
    let mug = shop.inventory("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (3, 0));
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!(ledger.captured_minor, 1700);
    assert_eq!(shop.order_status(order).await, Some(OrderStatus::Confirmed));
    shop.stop().await;
}

#[tokio::test]
async fn a_hundred_orders_racing_for_ten_units_confirm_exactly_ten() {
    let mut shop = Harness::start(2, SimulatorConfig::default(), fast_saga()).await;
    shop.start_replica().await;
    shop.receive("HOT", 10).await;
    let orders =
        futures::future::join_all((0..100).map(|_| shop.place(&[("HOT", 1, 500)], "tok_visa")))
            .await;
    let mut confirmed = 0;
    for order in &orders {
        match shop.rested(*order).await {
            Phase::Completed => confirmed += 1,
            phase => assert!(reason(&phase).contains("not enough stock"), "{phase:?}"),
        }
    }
    assert_eq!(confirmed, 10);
    let hot = shop.inventory("HOT").await;
    assert_eq!((hot.on_hand(), hot.reserved()), (0, 0));
    let ledger = shop.provider.ledger().await.unwrap();
    assert_eq!(ledger.captured_minor, 10 * 500);
    shop.stop().await;
}

#[tokio::test]
async fn a_deadline_recorded_before_a_crash_fires_after_the_restart() {
    let mut saga_config = fast_saga();
    saga_config.authorise_timeout = Duration::from_secs(1);
    let simulator = SimulatorConfig {
        hang_for: Duration::from_secs(30),
        ..SimulatorConfig::default()
    };
    let mut shop = Harness::start(1, simulator, saga_config).await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 2, 850)], "tok_hang").await;
    shop.wait_for_phase(order, "authorising", |phase| {
        matches!(phase, Phase::Authorising { .. })
    })
    .await;
    // The only replica dies while the provider hangs; the deadline passes while nothing runs.
    shop.abort_replicas();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        shop.saga(order).await.phase(),
        Some(Phase::Authorising { .. })
    ));
    shop.start_replica().await;

    let phase = shop.rested(order).await;
    assert!(compensated(&phase), "{phase:?}");
    assert!(reason(&phase).contains("deadline"), "{phase:?}");
    assert_eq!(shop.inventory("MUG").await.reserved(), 0);
    shop.assert_no_money_taken().await;
    shop.stop().await;
}

#[tokio::test]
async fn a_saga_slower_than_ack_wait_is_not_taken_over_while_its_replica_lives() {
    // Each provider call takes longer than the trigger's ack_wait (2 s): the replica's
    // progress acks keep the server from redelivering the order to another replica.
    let simulator = SimulatorConfig {
        latency: Duration::from_millis(2500),
        ..SimulatorConfig::default()
    };
    let mut saga_config = fast_saga();
    saga_config.authorise_timeout = Duration::from_secs(20);
    saga_config.complete_timeout = Duration::from_secs(20);
    let mut shop = Harness::start(1, simulator, saga_config).await;
    shop.start_replica().await;
    shop.receive("MUG", 5).await;
    let order = shop.place(&[("MUG", 1, 850)], "tok_visa").await;

    assert_eq!(shop.rested(order).await, Phase::Completed);
    let entry = shop.provider.entry(order).await.unwrap().unwrap();
    assert_eq!(entry.authorise_attempts, 1, "driven once: {entry:?}");
    // Started, reserved, authorised, completed: nothing recorded twice.
    assert_eq!(shop.saga_commits(order).await, 4);
    shop.stop().await;
}
