//! The submit job: claim staged orders, send them in batches, record every outcome.

pub mod target;
