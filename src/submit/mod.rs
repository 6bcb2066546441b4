//! The submit job: claim staged orders, send them in batches, record every outcome.
//!
//! Target-agnostic: it talks to a [`target::Target`] (Dataverse today) and a
//! [`crate::staging::Staging`] backend, never to HTTP or SQL directly.

mod batching;
pub mod budget;
mod job;
mod lease;
pub mod target;

pub use batching::{form_batches, BatchPlan};
pub use job::{submit, SubmitError, SubmitOptions, SubmitSummary};
pub use lease::LeaseGuard;
