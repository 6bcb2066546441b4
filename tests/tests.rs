//! The one integration test binary: the real `orderload` binary, real SQLite files (and a real
//! PostgreSQL when one is configured), the real emulator on 127.0.0.1.

mod backends;
mod bad_input;
mod channels_more;
mod common;
mod dataverse;
mod edge_input;
mod emulator;
mod fuzz_corpus;
mod ingest;
mod operator;
mod reliability;
mod report;
mod security;
mod submit;
mod workers;
