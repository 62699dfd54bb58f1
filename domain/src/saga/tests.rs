use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::money::Currency;

type SagaTest = TestFramework<OrderSaga>;

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, second).unwrap()
}

fn start_command() -> SagaStart {
    SagaStart {
        order_id: OrderId(Uuid::from_u128(1)),
        customer_id: CustomerId(Uuid::from_u128(2)),
        lines: vec![SagaLine {
            sku: Sku::parse("MUG-01").unwrap(),
            quantity: 2,
        }],
        amount: Money::new(1700, Currency::EUR),
        card_token: "tok_visa".to_owned(),
        payment_id: PaymentId(Uuid::from_u128(3)),
        trigger_position: 7,
        deadline_at: at(10),
    }
}

fn started() -> SagaEvent {
    let start = start_command();
    SagaEvent::SagaStarted {
        order_id: start.order_id,
        customer_id: start.customer_id,
        lines: start.lines,
        amount: start.amount,
        card_token: start.card_token,
        payment_id: start.payment_id,
        trigger_position: start.trigger_position,
        deadline_at: start.deadline_at,
    }
}

fn reserved() -> SagaEvent {
    SagaEvent::StockReserved {
        deadline_at: at(20),
    }
}

fn authorised() -> SagaEvent {
    SagaEvent::PaymentAuthorised {
        provider_reference: "sim_1".to_owned(),
        deadline_at: at(30),
    }
}

fn failed(step: FailedStep) -> SagaEvent {
    SagaEvent::StepFailed {
        step,
        reason: "card declined".to_owned(),
    }
}

fn fold(events: &[SagaEvent]) -> OrderSaga {
    let mut saga = OrderSaga::default();
    for event in events {
        saga.apply(event.clone());
    }
    saga
}

fn cancel(position: u64) -> SagaCommand {
    SagaCommand::NoteCancellation {
        by: Canceller::Customer,
        reason: "changed my mind".to_owned(),
        trigger_position: position,
    }
}

#[test]
fn starts_once_and_the_trigger_drives() {
    SagaTest::with(())
        .given_no_previous_events()
        .when(SagaCommand::Start(start_command()))
        .then_expect_events(vec![started()]);
    SagaTest::with(())
        .given(vec![started()])
        .when(SagaCommand::Start(start_command()))
        .then_expect_events(vec![]);
    let saga = fold(&[started()]);
    assert!(saga.is_driven_by(&Owner::Trigger(7)));
    assert!(!saga.is_driven_by(&Owner::Trigger(8)));
    assert_eq!(
        saga.phase(),
        Some(&Phase::Reserving {
            deadline_at: at(10)
        })
    );
}

#[test]
fn start_needs_lines_a_positive_amount_and_a_card_token() {
    let mut no_lines = start_command();
    no_lines.lines.clear();
    let mut zero = start_command();
    zero.amount = Money::new(0, Currency::EUR);
    let mut no_card = start_command();
    no_card.card_token = "  ".to_owned();
    for (start, error) in [
        (no_lines, SagaError::NoLines),
        (zero, SagaError::NonPositiveAmount),
        (no_card, SagaError::MissingCardToken),
    ] {
        SagaTest::with(())
            .given_no_previous_events()
            .when(SagaCommand::Start(start))
            .then_expect_error(error);
    }
    SagaTest::with(())
        .given_no_previous_events()
        .when(SagaCommand::RecordCompleted)
        .then_expect_error(SagaError::NotStarted);
}

#[test]
fn the_happy_path_ends_at_rest_with_no_owner() {
    let saga = fold(&[
        started(),
        reserved(),
        authorised(),
        SagaEvent::SagaCompleted,
    ]);
    assert_eq!(saga.phase(), Some(&Phase::Completed));
    assert!(saga.phase().unwrap().is_at_rest());
    assert_eq!(saga.run().unwrap().owner, None);
    assert_eq!(
        saga.run().unwrap().provider_reference.as_deref(),
        Some("sim_1")
    );
}

#[test]
fn each_phase_records_its_own_outcome_only() {
    SagaTest::with(())
        .given(vec![started()])
        .when(SagaCommand::RecordStockReserved {
            deadline_at: at(20),
        })
        .then_expect_events(vec![reserved()]);
    SagaTest::with(())
        .given(vec![started(), reserved()])
        .when(SagaCommand::RecordPaymentAuthorised {
            provider_reference: "sim_1".to_owned(),
            deadline_at: at(30),
        })
        .then_expect_events(vec![authorised()]);
    SagaTest::with(())
        .given(vec![started(), reserved(), authorised()])
        .when(SagaCommand::RecordCompleted)
        .then_expect_events(vec![SagaEvent::SagaCompleted]);
    // Out of order: completing before authorising is ignored.
    SagaTest::with(())
        .given(vec![started()])
        .when(SagaCommand::RecordCompleted)
        .then_expect_events(vec![]);
}

#[test]
fn duplicate_replies_are_ignored() {
    // The same authorisation recorded twice (a driver resumed after a crash).
    SagaTest::with(())
        .given(vec![started(), reserved(), authorised()])
        .when(SagaCommand::RecordPaymentAuthorised {
            provider_reference: "sim_1".to_owned(),
            deadline_at: at(40),
        })
        .then_expect_events(vec![]);
    SagaTest::with(())
        .given(vec![started(), reserved()])
        .when(SagaCommand::RecordStockReserved {
            deadline_at: at(20),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_success_after_a_failure_is_ignored() {
    let history = vec![started(), reserved(), failed(FailedStep::Authorise)];
    SagaTest::with(())
        .given(history.clone())
        .when(SagaCommand::RecordPaymentAuthorised {
            provider_reference: "late".to_owned(),
            deadline_at: at(40),
        })
        .then_expect_events(vec![]);
    let saga = fold(&history);
    assert_eq!(
        saga.phase(),
        Some(&Phase::Compensating {
            reason: "card declined".to_owned()
        })
    );
    assert_eq!(saga.run().unwrap().provider_reference, None);
}

#[test]
fn a_failure_after_compensation_started_is_ignored() {
    SagaTest::with(())
        .given(vec![started(), failed(FailedStep::Reserve)])
        .when(SagaCommand::RecordStepFailed {
            step: FailedStep::Authorise,
            reason: "late".to_owned(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_cancellation_during_a_forward_phase_compensates_under_the_same_owner() {
    SagaTest::with(())
        .given(vec![started(), reserved()])
        .when(cancel(12))
        .then_expect_events(vec![SagaEvent::CancellationNoticed {
            by: Canceller::Customer,
            reason: "changed my mind".to_owned(),
            trigger_position: 12,
            takes_over: false,
        }]);
    let mut saga = fold(&[started(), reserved()]);
    for event in saga.decide(cancel(12)).unwrap() {
        saga.apply(event);
    }
    assert!(matches!(saga.phase(), Some(Phase::Compensating { .. })));
    assert!(saga.is_driven_by(&Owner::Trigger(7)));
    assert!(!saga.is_driven_by(&Owner::Trigger(12)));
    // Noticed once.
    assert_eq!(saga.decide(cancel(13)).unwrap(), vec![]);
}

#[test]
fn a_cancellation_after_completion_takes_over() {
    let mut saga = fold(&[
        started(),
        reserved(),
        authorised(),
        SagaEvent::SagaCompleted,
    ]);
    let events = saga.decide(cancel(40)).unwrap();
    assert!(matches!(
        events[..],
        [SagaEvent::CancellationNoticed {
            takes_over: true,
            ..
        }]
    ));
    for event in events {
        saga.apply(event);
    }
    assert!(saga.is_driven_by(&Owner::Trigger(40)));
    assert!(matches!(saga.phase(), Some(Phase::Compensating { .. })));
}

#[test]
fn compensation_ends_compensated_or_parked() {
    let compensating = vec![started(), failed(FailedStep::Reserve)];
    SagaTest::with(())
        .given(compensating.clone())
        .when(SagaCommand::RecordCompensated)
        .then_expect_events(vec![SagaEvent::SagaCompensated]);
    let parked = SagaEvent::CompensationFailed {
        step: "release".to_owned(),
        error: "unavailable".to_owned(),
        attempts: 6,
    };
    SagaTest::with(())
        .given(compensating.clone())
        .when(SagaCommand::RecordCompensationFailed {
            step: "release".to_owned(),
            error: "unavailable".to_owned(),
            attempts: 6,
        })
        .then_expect_events(vec![parked.clone()]);
    let mut history = compensating;
    history.push(parked);
    let saga = fold(&history);
    assert!(matches!(
        saga.phase(),
        Some(Phase::CompensationFailed { step, .. }) if step == "release"
    ));
    assert_eq!(saga.run().unwrap().owner, None);
    // Nothing records a completion on a parked saga.
    assert_eq!(saga.decide(SagaCommand::RecordCompensated).unwrap(), vec![]);
}

#[test]
fn operators_retry_only_parked_sagas_and_take_ownership() {
    let parked = vec![
        started(),
        failed(FailedStep::Reserve),
        SagaEvent::CompensationFailed {
            step: "release".to_owned(),
            error: "unavailable".to_owned(),
            attempts: 6,
        },
    ];
    let retry = SagaCommand::Intervene {
        action: OperatorAction::Retry,
        actor: "user:ops".to_owned(),
        reason: "NATS is back".to_owned(),
    };
    let mut saga = fold(&parked);
    for event in saga.decide(retry.clone()).unwrap() {
        saga.apply(event);
    }
    assert!(matches!(saga.phase(), Some(Phase::Compensating { .. })));
    assert!(saga.is_driven_by(&Owner::Operator("user:ops".to_owned())));
    assert_eq!(saga.run().unwrap().compensation_rounds, 2);
    SagaTest::with(())
        .given(vec![started()])
        .when(retry)
        .then_expect_error(SagaError::InterventionNotAllowed {
            action: OperatorAction::Retry,
            phase: "reserving",
        });
}

#[test]
fn operators_cannot_compensate_a_finished_saga_and_must_say_why() {
    SagaTest::with(())
        .given(vec![
            started(),
            reserved(),
            authorised(),
            SagaEvent::SagaCompleted,
        ])
        .when(SagaCommand::Intervene {
            action: OperatorAction::Compensate,
            actor: "user:ops".to_owned(),
            reason: "why not".to_owned(),
        })
        .then_expect_error(SagaError::InterventionNotAllowed {
            action: OperatorAction::Compensate,
            phase: "completed",
        });
    SagaTest::with(())
        .given(vec![started()])
        .when(SagaCommand::Intervene {
            action: OperatorAction::Compensate,
            actor: "user:ops".to_owned(),
            reason: " ".to_owned(),
        })
        .then_expect_error(SagaError::MissingReason);
    let mut saga = fold(&[started(), reserved()]);
    for event in saga
        .decide(SagaCommand::Intervene {
            action: OperatorAction::Compensate,
            actor: "user:ops".to_owned(),
            reason: "provider outage".to_owned(),
        })
        .unwrap()
    {
        saga.apply(event);
    }
    assert!(matches!(saga.phase(), Some(Phase::Compensating { .. })));
}
