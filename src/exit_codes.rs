//! Exit codes: a contract with cron, wrappers and monitoring (README, "Exit codes").

/// Everything done; nothing failed or was rejected.
pub const OK: u8 = 0;
/// Could not run: bad configuration, database error, unexpected error.
pub const COULD_NOT_RUN: u8 = 1;
/// Usage error (bad flags). clap exits with this code itself.
pub const USAGE: u8 = 2;
/// Finished, but some orders failed or some rows were rejected.
pub const SOME_FAILED: u8 = 3;
/// Another run holds the lease on this database; nothing was done.
pub const LEASE_HELD: u8 = 4;
/// Target unavailable or authentication failed; nothing could be submitted.
pub const TARGET_UNAVAILABLE: u8 = 5;
