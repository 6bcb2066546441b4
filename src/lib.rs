//! orderload: an overnight batch loader of e-commerce orders into Microsoft Dynamics 365.
//!
//! Data flow (see DESIGN.md):
//!
//! ```text
//! inbox files → channels (adapters) → model::Order → ingest → staging (SQLite)
//!            → submit (claim, batch, retry, throttle) → dataverse (Web API client)
//!            → ledger; report / rerun read the same tables
//! ```
//!
//! `emulator` is a local Dataverse Web API used by tests and `orderload demo`; it shares no
//! protocol code with `dataverse`, so that a misreading of the protocol cannot cancel out.

pub mod channels;
pub mod cli;
pub mod config;
pub mod dataverse;
pub mod emulator;
pub mod exit_codes;
pub mod ingest;
pub mod model;
pub mod report;
pub mod staging;
pub mod submit;
