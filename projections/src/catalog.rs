//! The catalog read model (being written).
