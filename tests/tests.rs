//! The one integration test binary: the real `orderload` binary, real SQLite files, the real
//! emulator on 127.0.0.1.

mod common;
mod dataverse;
mod emulator;
mod ingest;
mod operator;
mod report;
mod submit;
mod reliability;
mod bad_input;
mod security;
mod fuzz_corpus;
