//! What an inventory event does to a SKU's stock, and the running tally of one SKU.
//!
//! Pure: both the inventory and the catalog read models fold their batches with it, so
//! the two agree on every number.

use domain::inventory::InventoryEvent;
use domain::OrderId;

use crate::projection::ApplyError;

/// The kind of a stock movement, one per inventory event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Units arrived (`StockReceived`).
    Received,
    /// The count was corrected (`StockAdjusted`).
    Adjusted,
    /// Units were held for an order (`StockReserved`).
    Reserved,
    /// An order's held units became available again (`ReservationReleased`).
    Released,
    /// An order's held units left stock (`ReservationCommitted`).
    Committed,
    /// An order's committed units came back into stock (`CommittedStockReturned`).
    Returned,
}

impl MovementKind {
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Received => "received",
            MovementKind::Adjusted => "adjusted",
            MovementKind::Reserved => "reserved",
            MovementKind::Released => "released",
            MovementKind::Committed => "committed",
            MovementKind::Returned => "returned",
        }
    }

    /// Reads the `kind` column back.
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "received" => MovementKind::Received,
            "adjusted" => MovementKind::Adjusted,
            "reserved" => MovementKind::Reserved,
            "released" => MovementKind::Released,
            "committed" => MovementKind::Committed,
            "returned" => MovementKind::Returned,
            _ => return None,
        })
    }
}

/// The effect of one inventory event on its SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StockEffect {
    pub kind: MovementKind,
    /// The event's own quantity: units for every kind but `Adjusted`, whose delta is signed.
    pub quantity: i64,
    /// The signed change of units on hand.
    pub on_hand_change: i64,
    /// The signed change of units reserved.
    pub reserved_change: i64,
    pub order_id: Option<OrderId>,
    /// Where received units came from.
    pub reference: Option<String>,
    /// Why the count was adjusted, a reservation released or committed units returned.
    pub reason: Option<String>,
}

impl StockEffect {
    /// Received: +on hand; adjusted: +delta on hand; reserved: +reserved;
    /// released: -reserved; committed: -reserved and -on hand; returned: +on hand.
    pub(crate) fn of(event: &InventoryEvent) -> Self {
        let blank = |kind, quantity: i64| StockEffect {
            kind,
            quantity,
            on_hand_change: 0,
            reserved_change: 0,
            order_id: None,
            reference: None,
            reason: None,
        };
        match event {
            InventoryEvent::StockReceived {
                quantity,
                reference,
                ..
            } => StockEffect {
                on_hand_change: i64::from(*quantity),
                reference: Some(reference.clone()),
                ..blank(MovementKind::Received, i64::from(*quantity))
            },
            InventoryEvent::StockAdjusted { delta, reason, .. } => StockEffect {
                on_hand_change: *delta,
                reason: Some(reason.clone()),
                ..blank(MovementKind::Adjusted, *delta)
            },
            InventoryEvent::StockReserved {
                order_id, quantity, ..
            } => StockEffect {
                reserved_change: i64::from(*quantity),
                order_id: Some(*order_id),
                ..blank(MovementKind::Reserved, i64::from(*quantity))
            },
            InventoryEvent::ReservationReleased {
                order_id,
                quantity,
                reason,
                ..
            } => StockEffect {
                reserved_change: -i64::from(*quantity),
                order_id: Some(*order_id),
                reason: Some(reason.clone()),
                ..blank(MovementKind::Released, i64::from(*quantity))
            },
            InventoryEvent::ReservationCommitted {
                order_id, quantity, ..
            } => StockEffect {
                on_hand_change: -i64::from(*quantity),
                reserved_change: -i64::from(*quantity),
                order_id: Some(*order_id),
                ..blank(MovementKind::Committed, i64::from(*quantity))
            },
            InventoryEvent::CommittedStockReturned {
                order_id,
                quantity,
                reason,
                ..
            } => StockEffect {
                on_hand_change: i64::from(*quantity),
                order_id: Some(*order_id),
                reason: Some(reason.clone()),
                ..blank(MovementKind::Returned, i64::from(*quantity))
            },
        }
    }
}

/// The SKU an inventory event names.
pub(crate) fn event_sku(event: &InventoryEvent) -> &str {
    match event {
        InventoryEvent::StockReceived { sku, .. }
        | InventoryEvent::StockAdjusted { sku, .. }
        | InventoryEvent::StockReserved { sku, .. }
        | InventoryEvent::ReservationReleased { sku, .. }
        | InventoryEvent::ReservationCommitted { sku, .. }
        | InventoryEvent::CommittedStockReturned { sku, .. } => sku.as_str(),
    }
}

/// The order whose reservation an inventory event opens or closes, if any.
///
/// A return names an order too, but its reservation was closed by the commit before it.
pub(crate) fn reservation_order(event: &InventoryEvent) -> Option<OrderId> {
    match event {
        InventoryEvent::StockReserved { order_id, .. }
        | InventoryEvent::ReservationReleased { order_id, .. }
        | InventoryEvent::ReservationCommitted { order_id, .. } => Some(*order_id),
        InventoryEvent::StockReceived { .. }
        | InventoryEvent::StockAdjusted { .. }
        | InventoryEvent::CommittedStockReturned { .. } => None,
    }
}

/// The stock of one SKU as a read model holds it, with the aggregate version it reflects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StockTally {
    pub on_hand: i64,
    pub reserved: i64,
    /// The aggregate version of the last event applied; 0 before the first.
    pub last_sequence: i64,
}

impl StockTally {
    /// Applies the event at aggregate version `sequence` of inventory `sku`.
    ///
    /// Returns `None` for an event at or below the version already applied (a replayed
    /// range), so a replay changes nothing.
    ///
    /// # Errors
    /// [`ApplyError::Inconsistent`] when the event skips a version, names another SKU,
    /// or would make a count negative: the decisions forbid all three, so the log or
    /// the model is damaged.
    pub(crate) fn record(
        &mut self,
        sku: &str,
        sequence: usize,
        event: &InventoryEvent,
    ) -> Result<Option<StockEffect>, ApplyError> {
        let sequence = i64::try_from(sequence)
            .map_err(|_| ApplyError::Inconsistent(format!("inventory {sku}: huge sequence")))?;
        if sequence <= self.last_sequence {
            return Ok(None);
        }
        if sequence != self.last_sequence + 1 {
            return Err(ApplyError::Inconsistent(format!(
                "inventory {sku}: event {sequence} follows event {}",
                self.last_sequence
            )));
        }
        if event_sku(event) != sku {
            return Err(ApplyError::Inconsistent(format!(
                "inventory {sku}: event {sequence} names SKU {}",
                event_sku(event)
            )));
        }
        let effect = StockEffect::of(event);
        let on_hand = self.on_hand + effect.on_hand_change;
        let reserved = self.reserved + effect.reserved_change;
        if on_hand < 0 || reserved < 0 {
            return Err(ApplyError::Inconsistent(format!(
                "inventory {sku}: event {sequence} ({}) leaves {on_hand} on hand and {reserved} reserved",
                effect.kind.as_str()
            )));
        }
        *self = StockTally {
            on_hand,
            reserved,
            last_sequence: sequence,
        };
        Ok(Some(effect))
    }
}

#[cfg(test)]
mod tests {
    use domain::Sku;
    use uuid::Uuid;

    use super::*;

    fn sku() -> Sku {
        Sku::parse("MUG-01").unwrap()
    }

    #[test]
    fn a_committed_reservation_leaves_both_counts() {
        let order_id = OrderId(Uuid::from_u128(1));
        let mut tally = StockTally::default();
        let events = [
            InventoryEvent::StockReceived {
                sku: sku(),
                quantity: 10,
                reference: "PO-1".into(),
            },
            InventoryEvent::StockReserved {
                sku: sku(),
                order_id,
                quantity: 4,
            },
            InventoryEvent::ReservationCommitted {
                sku: sku(),
                order_id,
                quantity: 4,
            },
        ];
        for (index, event) in events.iter().enumerate() {
            tally.record("MUG-01", index + 1, event).unwrap();
        }
        assert_eq!(
            tally,
            StockTally {
                on_hand: 6,
                reserved: 0,
                last_sequence: 3
            }
        );
    }

    #[test]
    fn returned_stock_is_on_hand_again_and_holds_no_reservation() {
        let order_id = OrderId(Uuid::from_u128(1));
        let returned = InventoryEvent::CommittedStockReturned {
            sku: sku(),
            order_id,
            quantity: 4,
            reason: "cancelled before shipping".into(),
        };
        let mut tally = StockTally {
            on_hand: 6,
            reserved: 1,
            last_sequence: 3,
        };

        let effect = tally.record("MUG-01", 4, &returned).unwrap().unwrap();

        assert_eq!(
            (effect.kind, effect.on_hand_change, effect.reserved_change),
            (MovementKind::Returned, 4, 0)
        );
        assert_eq!(effect.reason.as_deref(), Some("cancelled before shipping"));
        assert_eq!(reservation_order(&returned), None);
        assert_eq!(
            tally,
            StockTally {
                on_hand: 10,
                reserved: 1,
                last_sequence: 4
            }
        );
    }

    #[test]
    fn an_event_already_applied_is_skipped_and_a_gap_is_inconsistent() {
        let received = InventoryEvent::StockReceived {
            sku: sku(),
            quantity: 2,
            reference: "PO-1".into(),
        };
        let mut tally = StockTally::default();
        assert!(tally.record("MUG-01", 1, &received).unwrap().is_some());
        assert!(tally.record("MUG-01", 1, &received).unwrap().is_none());
        assert_eq!(tally.on_hand, 2);
        assert!(matches!(
            tally.record("MUG-01", 3, &received),
            Err(ApplyError::Inconsistent(_))
        ));
    }

    #[test]
    fn stock_below_zero_is_inconsistent() {
        let mut tally = StockTally::default();
        let adjusted = InventoryEvent::StockAdjusted {
            sku: sku(),
            delta: -1,
            reason: "broken".into(),
        };
        assert!(matches!(
            tally.record("MUG-01", 1, &adjusted),
            Err(ApplyError::Inconsistent(_))
        ));
        assert_eq!(tally, StockTally::default());
    }
}
