//! Staging: the database that holds staged orders, rejected rows, batches, the ledger, runs
//! and the lease. [`open`] is the one place that opens a database, sets pragmas and runs the
//! migrations. The job talks to it through the [`Staging`] trait, so that a PostgreSQL backend
//! can sit beside the SQLite one later.

mod backend;
mod lease;
mod orders;
mod rerun;
mod runs;
mod sqlite;
mod time;

pub use lease::{LeaseError, LeaseInfo};
pub use orders::{ChunkCounts, ClaimedOrder, FileRecord, FileStart, FileTotals, RecordedOutcome};
pub use rerun::{RerunCandidate, RerunFilter};
pub use runs::{os_user, RunInfo, RunStart};
pub use sqlite::SqliteStaging;
pub use time::{now_utc, to_db_time};

use crate::channels::RejectedRow;
use crate::model::Order;
use crate::submit::target::{OrderOutcome, PlanError};

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored order {id} is not valid JSON: {source}")]
    Payload {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create database folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Open (creating if needed) the database at `url` and bring its schema up to date.
pub async fn open(url: &str) -> Result<SqliteStaging, StagingError> {
    SqliteStaging::open(url).await
}

/// Reconciliation: the invariant every run checks and every report shows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Reconciliation {
    pub rows_read: i64,
    pub rows_staged: i64,
    pub rows_rejected: i64,
    pub rejected_rows_stored: i64,
    pub orders_total: i64,
    pub pending: i64,
    pub in_flight: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub balanced: bool,
}

impl Reconciliation {
    pub fn compute(mut self) -> Self {
        self.balanced = self.rows_read == self.rows_staged + self.rows_rejected
            && self.rows_rejected == self.rejected_rows_stored
            && self.orders_total == self.pending + self.in_flight + self.succeeded + self.failed;
        self
    }
}

/// What the jobs need from a staging backend.
#[async_trait::async_trait]
pub trait Staging: Send + Sync {
    // runs
    async fn begin_run(&self, start: RunStart) -> Result<i64, StagingError>;
    async fn finish_run(
        &self,
        run_id: i64,
        outcome: &str,
        exit_code: u8,
        summary: &serde_json::Value,
    ) -> Result<(), StagingError>;

    // lease
    async fn acquire_lease(
        &self,
        holder: &str,
        run_id: i64,
        ttl_secs: u64,
    ) -> Result<Option<LeaseInfo>, LeaseError>;
    async fn heartbeat_lease(&self, holder: &str, ttl_secs: u64) -> Result<bool, StagingError>;
    async fn release_lease(&self, holder: &str) -> Result<(), StagingError>;

    // ingest
    async fn find_file(&self, sha256: &str) -> Result<Option<FileRecord>, StagingError>;
    async fn start_file(&self, start: &FileStart, run_id: i64) -> Result<i64, StagingError>;
    async fn stage_chunk(
        &self,
        file_id: i64,
        run_id: i64,
        orders: Vec<Order>,
        rejected: Vec<RejectedRow>,
    ) -> Result<ChunkCounts, StagingError>;
    async fn finish_file(
        &self,
        file_id: i64,
        totals: &FileTotals,
        error: Option<(&str, &str)>,
    ) -> Result<(), StagingError>;

    // submit
    async fn recover_in_flight(&self, run_id: i64, token: &str) -> Result<u64, StagingError>;
    async fn claim_orders(
        &self,
        run_id: i64,
        token: &str,
        limit: usize,
        max_attempts: u32,
        lease_secs: u64,
        only: Option<&[i64]>,
    ) -> Result<Vec<ClaimedOrder>, StagingError>;
    /// What `claim_orders` would take, without taking it (for `--dry-run`).
    async fn peek_claimable(
        &self,
        limit: usize,
        max_attempts: u32,
    ) -> Result<Vec<ClaimedOrder>, StagingError>;
    /// Put orders back to `pending` for a rerun, with a ledger event carrying `reason`.
    async fn requeue_for_rerun(
        &self,
        run_id: i64,
        order_ids: &[i64],
        reason: &str,
    ) -> Result<u64, StagingError>;
    async fn create_batch(
        &self,
        run_id: i64,
        order_ids: &[i64],
        operations: usize,
        parent: Option<i64>,
    ) -> Result<i64, StagingError>;
    async fn record_outcomes(
        &self,
        run_id: i64,
        batch_id: Option<i64>,
        token: &str,
        outcomes: &[OrderOutcome],
    ) -> Result<RecordedOutcome, StagingError>;
    async fn fail_unplannable(
        &self,
        run_id: i64,
        token: &str,
        order_id: i64,
        error: &PlanError,
    ) -> Result<(), StagingError>;
    async fn release_claims(
        &self,
        run_id: i64,
        token: &str,
        order_ids: &[i64],
        reason: &str,
    ) -> Result<(), StagingError>;
    async fn reconciliation(&self) -> Result<Reconciliation, StagingError>;
}
