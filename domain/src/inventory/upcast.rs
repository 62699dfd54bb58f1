//! Upcasters that bring stored inventory events of older versions to the current shape.

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster};
use serde_json::Value;

use super::InventoryEvent;

/// The reason given to adjustments stored before a reason was required (version 1.0).
pub const UNRECORDED_REASON: &str = "unrecorded (adjusted before reasons were required)";

/// The upcasters for the inventory event repository, oldest change first.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "StockAdjusted",
        InventoryEvent::STOCK_ADJUSTED_VERSION,
        Box::new(add_missing_reason),
    ))]
}

/// `StockAdjusted` 1.0 to 2.0: adds the `reason` that version 1.0 did not have.
///
/// A payload of another shape is left as it is, so that deserialising it reports the
/// real problem instead of this function hiding it.
fn add_missing_reason(mut payload: Value) -> Value {
    if let Some(Value::Object(fields)) = payload.get_mut("StockAdjusted") {
        fields
            .entry("reason")
            .or_insert_with(|| Value::from(UNRECORDED_REASON));
    }
    payload
}
