//! The inventory read model (being written).
