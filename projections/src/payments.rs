//! The payments read model (being written).
