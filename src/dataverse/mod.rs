//! The Dataverse Web API client (see DESIGN.md, "Submitting to Dynamics 365").

pub mod auth;
pub mod batch_reader;
pub mod batch_writer;
pub mod errors;
pub mod http;
pub mod keys;
pub mod mapping;
pub mod retry;
pub mod secret;
pub mod throttle;
