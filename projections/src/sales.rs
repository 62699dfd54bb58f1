//! The sales read model (being written).
