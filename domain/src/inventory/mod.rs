//! The inventory aggregate: the stock of one SKU, whose text is the aggregate id.
//!
//! Units on hand are either reserved for an order or available:
//! `available = on_hand - reserved`, and no command may make it negative.
//! A reservation ends in one of two ways: released (the units become available again)
//! or committed (the order was fulfilled, so the units leave stock).
//! Committed units come back into stock once, when they are returned (a confirmed
//! order cancelled before it ships).
//!
//! Reservation commands are safe to repeat, because the saga delivers at least once:
//! reserving for an order that already has (or had committed) a reservation, releasing
//! a reservation that does not exist, committing twice and returning twice all record
//! nothing.

mod command;
mod error;
mod event;
mod upcast;

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use command::InventoryCommand;
pub use error::InventoryError;
pub use event::InventoryEvent;
pub use upcast::{upcasters, UNRECORDED_REASON};

use crate::ids::{OrderId, Sku};
use crate::text::required;

/// The stock of one SKU, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Set by the first receipt or adjustment.
    sku: Option<Sku>,
    on_hand: u64,
    reservations: BTreeMap<OrderId, u32>,
    /// Orders whose reservation was committed, with the units committed, so that a
    /// repeated commit or reservation is recognised and ignored and a return knows how
    /// many units come back. A return leaves its order here.
    committed: BTreeMap<OrderId, u32>,
    /// Committed orders whose units were returned, so that a repeated return is ignored.
    returned: BTreeSet<OrderId>,
    /// Orders whose reservation was released: it ended for good, so a late or repeated
    /// reservation (a saga step re-run after its compensation) cannot hold stock again.
    #[serde(default)]
    released: BTreeSet<OrderId>,
}

impl Inventory {
    /// The SKU, once stock was first booked.
    pub fn sku(&self) -> Option<&Sku> {
        self.sku.as_ref()
    }

    /// Units physically in stock, reserved or not.
    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }

    /// Units held for orders.
    pub fn reserved(&self) -> u64 {
        self.reservations.values().map(|&q| u64::from(q)).sum()
    }

    /// Units that can still be reserved.
    pub fn available(&self) -> u64 {
        // The decisions keep reserved <= on_hand; saturating only guards odd histories.
        self.on_hand.saturating_sub(self.reserved())
    }

    /// The units held for one order, if any.
    pub fn reservation(&self, order_id: OrderId) -> Option<u32> {
        self.reservations.get(&order_id).copied()
    }

    /// The units committed for one order, if its reservation was committed; still
    /// known after they were returned.
    pub fn committed_quantity(&self, order_id: OrderId) -> Option<u32> {
        self.committed.get(&order_id).copied()
    }

    /// Whether the committed units of an order came back into stock.
    pub fn is_returned(&self, order_id: OrderId) -> bool {
        self.returned.contains(&order_id)
    }

    /// Decides which events a command causes, without changing the state.
    ///
    /// # Errors
    /// The [`InventoryError`] naming the broken rule; a rejected command has no events.
    pub fn decide(&self, command: InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        match command {
            InventoryCommand::ReceiveStock {
                sku,
                quantity,
                reference,
            } => {
                self.check_sku(&sku)?;
                if quantity == 0 {
                    return Err(InventoryError::ZeroQuantity);
                }
                let reference = required(&reference, InventoryError::EmptyReference)?;
                self.on_hand
                    .checked_add(u64::from(quantity))
                    .ok_or(InventoryError::Overflow)?;
                Ok(vec![InventoryEvent::StockReceived {
                    sku,
                    quantity,
                    reference,
                }])
            }
            InventoryCommand::AdjustStock { sku, delta, reason } => {
                self.check_sku(&sku)?;
                if delta == 0 {
                    return Err(InventoryError::ZeroDelta);
                }
                let reason = required(&reason, InventoryError::MissingReason)?;
                let resulting = i128::from(self.on_hand) + i128::from(delta);
                if resulting < 0 {
                    return Err(InventoryError::NegativeStock {
                        on_hand: self.on_hand,
                        delta,
                    });
                }
                let resulting = u64::try_from(resulting).map_err(|_| InventoryError::Overflow)?;
                let reserved = self.reserved();
                if resulting < reserved {
                    return Err(InventoryError::BelowReserved {
                        reserved,
                        resulting,
                    });
                }
                Ok(vec![InventoryEvent::StockAdjusted { sku, delta, reason }])
            }
            InventoryCommand::ReserveStock { order_id, quantity } => {
                if quantity == 0 {
                    return Err(InventoryError::ZeroQuantity);
                }
                if self.reservations.contains_key(&order_id)
                    || self.committed.contains_key(&order_id)
                {
                    return Ok(vec![]);
                }
                if self.released.contains(&order_id) {
                    return Err(InventoryError::ReservationEnded { order_id });
                }
                let available = self.available();
                let Some(sku) = self.sku.clone() else {
                    // Nothing was ever booked for this SKU.
                    return Err(InventoryError::InsufficientStock {
                        requested: quantity,
                        available,
                    });
                };
                if u64::from(quantity) > available {
                    return Err(InventoryError::InsufficientStock {
                        requested: quantity,
                        available,
                    });
                }
                Ok(vec![InventoryEvent::StockReserved {
                    sku,
                    order_id,
                    quantity,
                }])
            }
            InventoryCommand::ReleaseReservation { order_id, reason } => {
                let reason = required(&reason, InventoryError::MissingReason)?;
                let (Some(sku), Some(&quantity)) = (&self.sku, self.reservations.get(&order_id))
                else {
                    return Ok(vec![]);
                };
                Ok(vec![InventoryEvent::ReservationReleased {
                    sku: sku.clone(),
                    order_id,
                    quantity,
                    reason,
                }])
            }
            InventoryCommand::CommitReservation { order_id } => {
                if self.committed.contains_key(&order_id) {
                    return Ok(vec![]);
                }
                let (Some(sku), Some(&quantity)) = (&self.sku, self.reservations.get(&order_id))
                else {
                    return Err(InventoryError::NoReservation { order_id });
                };
                Ok(vec![InventoryEvent::ReservationCommitted {
                    sku: sku.clone(),
                    order_id,
                    quantity,
                }])
            }
            InventoryCommand::ReturnCommittedStock { order_id, reason } => {
                let reason = required(&reason, InventoryError::MissingReason)?;
                if self.returned.contains(&order_id) {
                    return Ok(vec![]);
                }
                let (Some(sku), Some(&quantity)) = (&self.sku, self.committed.get(&order_id))
                else {
                    return Err(InventoryError::NotCommitted { order_id });
                };
                self.on_hand
                    .checked_add(u64::from(quantity))
                    .ok_or(InventoryError::Overflow)?;
                Ok(vec![InventoryEvent::CommittedStockReturned {
                    sku: sku.clone(),
                    order_id,
                    quantity,
                    reason,
                }])
            }
        }
    }

    fn check_sku(&self, sku: &Sku) -> Result<(), InventoryError> {
        match &self.sku {
            Some(expected) if expected != sku => Err(InventoryError::SkuMismatch {
                expected: expected.clone(),
                found: sku.clone(),
            }),
            _ => Ok(()),
        }
    }
}

impl Aggregate for Inventory {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;
    type Services = ();

    async fn handle(
        &mut self,
        command: InventoryCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), InventoryError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: InventoryEvent) {
        match event {
            InventoryEvent::StockReceived { sku, quantity, .. } => {
                self.sku.get_or_insert(sku);
                self.on_hand = self.on_hand.saturating_add(u64::from(quantity));
            }
            InventoryEvent::StockAdjusted { sku, delta, .. } => {
                self.sku.get_or_insert(sku);
                self.on_hand = self.on_hand.saturating_add_signed(delta);
            }
            InventoryEvent::StockReserved {
                order_id, quantity, ..
            } => {
                self.reservations.insert(order_id, quantity);
            }
            InventoryEvent::ReservationReleased { order_id, .. } => {
                self.reservations.remove(&order_id);
                self.released.insert(order_id);
            }
            InventoryEvent::ReservationCommitted {
                order_id, quantity, ..
            } => {
                self.reservations.remove(&order_id);
                self.committed.insert(order_id, quantity);
                self.on_hand = self.on_hand.saturating_sub(u64::from(quantity));
            }
            InventoryEvent::CommittedStockReturned {
                order_id, quantity, ..
            } => {
                self.returned.insert(order_id);
                self.on_hand = self.on_hand.saturating_add(u64::from(quantity));
            }
        }
    }
}

#[cfg(test)]
mod tests;
