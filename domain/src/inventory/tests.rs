use cqrs_es::persist::SerializedEvent;
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;
use uuid::Uuid;

use super::*;

type InventoryTest = TestFramework<Inventory>;

fn sku() -> Sku {
    Sku::parse("MUG-01").unwrap()
}

fn order(n: u128) -> OrderId {
    OrderId(Uuid::from_u128(n))
}

fn received(quantity: u32) -> InventoryEvent {
    InventoryEvent::StockReceived {
        sku: sku(),
        quantity,
        reference: "DN-1".into(),
    }
}

fn reserved(n: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::StockReserved {
        sku: sku(),
        order_id: order(n),
        quantity,
    }
}

fn released(n: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::ReservationReleased {
        sku: sku(),
        order_id: order(n),
        quantity,
        reason: "order cancelled".into(),
    }
}

fn committed(n: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::ReservationCommitted {
        sku: sku(),
        order_id: order(n),
        quantity,
    }
}

fn returned(n: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::CommittedStockReturned {
        sku: sku(),
        order_id: order(n),
        quantity,
        reason: "cancelled before shipping".into(),
    }
}

fn reserve(n: u128, quantity: u32) -> InventoryCommand {
    InventoryCommand::ReserveStock {
        order_id: order(n),
        quantity,
    }
}

fn release(n: u128) -> InventoryCommand {
    InventoryCommand::ReleaseReservation {
        order_id: order(n),
        reason: "order cancelled".into(),
    }
}

fn commit(n: u128) -> InventoryCommand {
    InventoryCommand::CommitReservation { order_id: order(n) }
}

fn return_committed(n: u128) -> InventoryCommand {
    InventoryCommand::ReturnCommittedStock {
        order_id: order(n),
        reason: "cancelled before shipping".into(),
    }
}

fn adjust(delta: i64, reason: &str) -> InventoryCommand {
    InventoryCommand::AdjustStock {
        sku: sku(),
        delta,
        reason: reason.into(),
    }
}

fn state(events: Vec<InventoryEvent>) -> Inventory {
    let mut inventory = Inventory::default();
    for event in events {
        inventory.apply(event);
    }
    inventory
}

#[test]
fn receiving_stock_records_it() {
    InventoryTest::with(())
        .given_no_previous_events()
        .when(InventoryCommand::ReceiveStock {
            sku: sku(),
            quantity: 10,
            reference: "DN-1".into(),
        })
        .then_expect_events(vec![received(10)]);
}

#[test]
fn receiving_zero_units_is_rejected() {
    InventoryTest::with(())
        .given_no_previous_events()
        .when(InventoryCommand::ReceiveStock {
            sku: sku(),
            quantity: 0,
            reference: "DN-1".into(),
        })
        .then_expect_error(InventoryError::ZeroQuantity);
}

#[test]
fn receiving_stock_without_a_reference_is_rejected() {
    InventoryTest::with(())
        .given_no_previous_events()
        .when(InventoryCommand::ReceiveStock {
            sku: sku(),
            quantity: 10,
            reference: " ".into(),
        })
        .then_expect_error(InventoryError::EmptyReference);
}

#[test]
fn receiving_stock_for_another_sku_is_rejected() {
    let other = Sku::parse("MUG-02").unwrap();
    InventoryTest::with(())
        .given(vec![received(10)])
        .when(InventoryCommand::ReceiveStock {
            sku: other.clone(),
            quantity: 10,
            reference: "DN-2".into(),
        })
        .then_expect_error(InventoryError::SkuMismatch {
            expected: sku(),
            found: other,
        });
}

#[test]
fn adjusting_stock_records_the_reason() {
    InventoryTest::with(())
        .given(vec![received(10)])
        .when(adjust(-2, "broken in the warehouse"))
        .then_expect_events(vec![InventoryEvent::StockAdjusted {
            sku: sku(),
            delta: -2,
            reason: "broken in the warehouse".into(),
        }]);
}

#[test]
fn adjusting_stock_without_a_reason_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10)])
        .when(adjust(-2, ""))
        .then_expect_error(InventoryError::MissingReason);
}

#[test]
fn adjusting_stock_by_nothing_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10)])
        .when(adjust(0, "stocktake"))
        .then_expect_error(InventoryError::ZeroDelta);
}

#[test]
fn adjusting_stock_below_zero_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(3)])
        .when(adjust(-4, "stocktake"))
        .then_expect_error(InventoryError::NegativeStock {
            on_hand: 3,
            delta: -4,
        });
}

#[test]
fn adjusting_stock_below_the_reserved_units_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 8)])
        .when(adjust(-3, "stocktake"))
        .then_expect_error(InventoryError::BelowReserved {
            reserved: 8,
            resulting: 7,
        });
}

#[test]
fn reserving_stock_records_it() {
    InventoryTest::with(())
        .given(vec![received(10)])
        .when(reserve(1, 4))
        .then_expect_events(vec![reserved(1, 4)]);
}

#[test]
fn reserving_more_than_available_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 7)])
        .when(reserve(2, 4))
        .then_expect_error(InventoryError::InsufficientStock {
            requested: 4,
            available: 3,
        });
}

#[test]
fn reserving_stock_that_was_never_received_is_rejected() {
    InventoryTest::with(())
        .given_no_previous_events()
        .when(reserve(1, 1))
        .then_expect_error(InventoryError::InsufficientStock {
            requested: 1,
            available: 0,
        });
}

#[test]
fn reserving_zero_units_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10)])
        .when(reserve(1, 0))
        .then_expect_error(InventoryError::ZeroQuantity);
}

#[test]
fn reserving_again_for_the_same_order_records_nothing() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4)])
        .when(reserve(1, 4))
        .then_expect_events(vec![]);
}

#[test]
fn reserving_again_with_another_quantity_records_nothing() {
    // The first reservation stands; a different quantity needs a release first.
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4)])
        .when(reserve(1, 6))
        .then_expect_events(vec![]);
}

#[test]
fn reserving_for_an_order_already_fulfilled_records_nothing() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), committed(1, 4)])
        .when(reserve(1, 4))
        .then_expect_events(vec![]);
}

#[test]
fn reserving_again_after_a_release_is_refused() {
    // The saga released it while compensating; a stale driver must not hold stock again.
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), released(1, 4)])
        .when(reserve(1, 4))
        .then_expect_error(InventoryError::ReservationEnded { order_id: order(1) });
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), released(1, 4)])
        .when(reserve(2, 4))
        .then_expect_events(vec![reserved(2, 4)]);
}

#[test]
fn releasing_a_reservation_records_it() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4)])
        .when(release(1))
        .then_expect_events(vec![released(1, 4)]);
}

#[test]
fn releasing_a_reservation_that_does_not_exist_records_nothing() {
    InventoryTest::with(())
        .given(vec![received(10)])
        .when(release(1))
        .then_expect_events(vec![]);
}

#[test]
fn releasing_a_reservation_twice_records_nothing_the_second_time() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), released(1, 4)])
        .when(release(1))
        .then_expect_events(vec![]);
}

#[test]
fn releasing_without_a_reason_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4)])
        .when(InventoryCommand::ReleaseReservation {
            order_id: order(1),
            reason: String::new(),
        })
        .then_expect_error(InventoryError::MissingReason);
}

#[test]
fn committing_a_reservation_records_it() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4)])
        .when(commit(1))
        .then_expect_events(vec![committed(1, 4)]);
}

#[test]
fn committing_a_reservation_that_does_not_exist_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4)])
        .when(commit(2))
        .then_expect_error(InventoryError::NoReservation { order_id: order(2) });
}

#[test]
fn committing_a_released_reservation_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), released(1, 4)])
        .when(commit(1))
        .then_expect_error(InventoryError::NoReservation { order_id: order(1) });
}

#[test]
fn committing_a_reservation_twice_records_nothing_the_second_time() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), committed(1, 4)])
        .when(commit(1))
        .then_expect_events(vec![]);
}

#[test]
fn returning_committed_stock_records_it() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), committed(1, 4)])
        .when(return_committed(1))
        .then_expect_events(vec![returned(1, 4)]);
}

#[test]
fn returning_committed_stock_twice_records_nothing_the_second_time() {
    InventoryTest::with(())
        .given(vec![
            received(10),
            reserved(1, 4),
            committed(1, 4),
            returned(1, 4),
        ])
        .when(return_committed(1))
        .then_expect_events(vec![]);
}

#[test]
fn returning_stock_for_an_order_never_committed_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), committed(1, 4)])
        .when(return_committed(2))
        .then_expect_error(InventoryError::NotCommitted { order_id: order(2) });
}

#[test]
fn returning_stock_for_a_reservation_not_yet_committed_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4)])
        .when(return_committed(1))
        .then_expect_error(InventoryError::NotCommitted { order_id: order(1) });
}

#[test]
fn returning_stock_for_a_released_reservation_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), released(1, 4)])
        .when(return_committed(1))
        .then_expect_error(InventoryError::NotCommitted { order_id: order(1) });
}

#[test]
fn returning_committed_stock_without_a_reason_is_rejected() {
    InventoryTest::with(())
        .given(vec![received(10), reserved(1, 4), committed(1, 4)])
        .when(InventoryCommand::ReturnCommittedStock {
            order_id: order(1),
            reason: "  ".into(),
        })
        .then_expect_error(InventoryError::MissingReason);
}

#[test]
fn reserving_for_an_order_whose_stock_was_returned_records_nothing() {
    InventoryTest::with(())
        .given(vec![
            received(10),
            reserved(1, 4),
            committed(1, 4),
            returned(1, 4),
        ])
        .when(reserve(1, 4))
        .then_expect_events(vec![]);
}

#[test]
fn committing_an_order_whose_stock_was_returned_records_nothing() {
    InventoryTest::with(())
        .given(vec![
            received(10),
            reserved(1, 4),
            committed(1, 4),
            returned(1, 4),
        ])
        .when(commit(1))
        .then_expect_events(vec![]);
}

#[test]
fn returned_stock_is_on_hand_and_available_again() {
    let committed_state = state(vec![
        received(10),
        reserved(1, 4),
        reserved(2, 1),
        committed(1, 4),
    ]);
    assert_eq!(committed_state.committed_quantity(order(1)), Some(4));
    assert!(!committed_state.is_returned(order(1)));

    let inventory = state(vec![
        received(10),
        reserved(1, 4),
        reserved(2, 1),
        committed(1, 4),
        returned(1, 4),
    ]);

    assert_eq!(inventory.on_hand(), 10);
    assert_eq!(inventory.reserved(), 1);
    assert_eq!(inventory.available(), 9);
    assert!(inventory.is_returned(order(1)));
    assert_eq!(inventory.committed_quantity(order(1)), Some(4));
    assert_eq!(inventory.committed_quantity(order(2)), None);
    assert!(!inventory.is_returned(order(2)));
}

#[test]
fn committed_stock_returned_is_written_at_version_1() {
    assert_eq!(returned(1, 4).event_type(), "CommittedStockReturned");
    assert_eq!(returned(1, 4).event_version(), "1.0");
    assert_eq!(
        serde_json::to_value(returned(1, 4)).unwrap(),
        json!({"CommittedStockReturned": {
            "sku": "MUG-01",
            "order_id": order(1),
            "quantity": 4,
            "reason": "cancelled before shipping",
        }})
    );
}

#[test]
fn a_committed_reservation_leaves_stock() {
    let inventory = state(vec![
        received(10),
        reserved(1, 4),
        reserved(2, 1),
        committed(1, 4),
    ]);
    assert_eq!(inventory.on_hand(), 6);
    assert_eq!(inventory.reserved(), 1);
    assert_eq!(inventory.available(), 5);
    assert_eq!(inventory.reservation(order(1)), None);
}

#[test]
fn a_released_reservation_becomes_available_again() {
    let inventory = state(vec![received(10), reserved(1, 4), released(1, 4)]);
    assert_eq!(inventory.on_hand(), 10);
    assert_eq!(inventory.available(), 10);
}

/// A small deterministic generator, so the sequence below is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn available_stock_never_goes_negative() {
    let mut rng = XorShift(0x5eed_cafe);
    let mut inventory = Inventory::default();
    let (mut accepted, mut rejected) = (0, 0);
    for step in 0..5_000 {
        let quantity = rng.below(8) as u32;
        let order_n = u128::from(rng.below(12));
        let command = match rng.below(6) {
            0 => InventoryCommand::ReceiveStock {
                sku: sku(),
                quantity,
                reference: format!("DN-{step}"),
            },
            1 => adjust(rng.below(15) as i64 - 10, "stocktake"),
            2 => reserve(order_n, quantity),
            3 => release(order_n),
            4 => commit(order_n),
            _ => return_committed(order_n),
        };
        match inventory.decide(command) {
            Ok(events) => {
                accepted += 1;
                for event in events {
                    inventory.apply(event);
                }
            }
            Err(_) => rejected += 1,
        }
        // available = on_hand - reserved must never dip below zero.
        assert!(
            inventory.reserved() <= inventory.on_hand(),
            "step {step}: {} reserved of {} on hand",
            inventory.reserved(),
            inventory.on_hand()
        );
    }
    // The sequence must exercise both sides of the rules to mean anything.
    assert!(
        accepted > 1_000 && rejected > 100,
        "{accepted} / {rejected}"
    );
}

#[test]
fn the_inventory_snapshot_survives_serialisation() {
    let inventory = state(vec![
        received(10),
        reserved(1, 4),
        reserved(2, 1),
        committed(2, 1),
        returned(2, 1),
    ]);
    let json = serde_json::to_string(&inventory).unwrap();
    assert_eq!(serde_json::from_str::<Inventory>(&json).unwrap(), inventory);
}

#[test]
fn stock_adjustments_are_written_at_version_2() {
    let adjusted = InventoryEvent::StockAdjusted {
        sku: sku(),
        delta: 1,
        reason: "found".into(),
    };
    assert_eq!(adjusted.event_type(), "StockAdjusted");
    assert_eq!(adjusted.event_version(), "2.0");
    assert_eq!(received(1).event_version(), "1.0");
    assert_eq!(
        serde_json::to_value(&adjusted).unwrap(),
        json!({"StockAdjusted": {"sku": "MUG-01", "delta": 1, "reason": "found"}})
    );
}

fn stored_adjustment(version: &str, payload: serde_json::Value) -> SerializedEvent {
    SerializedEvent::new(
        "MUG-01".into(),
        3,
        Inventory::TYPE.into(),
        "StockAdjusted".into(),
        version.into(),
        payload,
        json!({}),
    )
}

/// Runs the event through the upcasters the way the cqrs-es repository does.
fn upcast(mut event: SerializedEvent) -> SerializedEvent {
    for upcaster in upcasters() {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event
}

#[test]
fn a_version_1_stock_adjustment_is_upcast_with_an_unrecorded_reason() {
    let old = stored_adjustment(
        "1.0",
        json!({"StockAdjusted": {"sku": "MUG-01", "delta": -2}}),
    );
    // Without the upcaster, the old payload no longer deserialises.
    assert!(serde_json::from_value::<InventoryEvent>(old.payload.clone()).is_err());

    let upcast = upcast(old);

    assert_eq!(upcast.event_version, "2.0.0");
    let event: InventoryEvent = serde_json::from_value(upcast.payload).unwrap();
    assert_eq!(
        event,
        InventoryEvent::StockAdjusted {
            sku: sku(),
            delta: -2,
            reason: UNRECORDED_REASON.into(),
        }
    );
}

#[test]
fn a_version_2_stock_adjustment_is_not_upcast() {
    let payload = json!({"StockAdjusted": {"sku": "MUG-01", "delta": -2, "reason": "lost"}});
    let current = stored_adjustment("2.0", payload.clone());
    assert_eq!(upcast(current.clone()), current);
}

#[test]
fn other_inventory_events_are_not_upcast() {
    let mut receipt = stored_adjustment("1.0", serde_json::to_value(received(5)).unwrap());
    receipt.event_type = "StockReceived".into();
    assert_eq!(upcast(receipt.clone()), receipt);
}
