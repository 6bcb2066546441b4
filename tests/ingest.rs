//! Ingest through the real binary.
