//! The `azure` feature.
