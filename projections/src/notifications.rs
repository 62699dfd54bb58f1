//! The notifications read model (being written).
