//! Which upcasters an aggregate's stored events go through on load.

use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;

/// An aggregate that knows the upcasters its stored events need.
///
/// The event store takes them from here when it is opened, so a store cannot be opened
/// without them: a forgotten upcaster list would decode old events wrongly (or not at all)
/// only when such an event is first loaded, in production.
pub trait Upcasting: Aggregate {
    /// The upcasters, oldest change first; empty while no event has changed shape.
    fn upcasters() -> Vec<Box<dyn EventUpcaster>>;
}

impl Upcasting for crate::product::Product {
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        crate::product::upcasters()
    }
}

impl Upcasting for crate::inventory::Inventory {
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        crate::inventory::upcasters()
    }
}

impl Upcasting for crate::order::Order {
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        crate::order::upcasters()
    }
}

impl Upcasting for crate::payment::Payment {
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        crate::payment::upcasters()
    }
}

impl Upcasting for crate::saga::OrderSaga {
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        crate::saga::upcasters()
    }
}
