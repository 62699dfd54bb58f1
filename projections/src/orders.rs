//! The orders read model (being written).
