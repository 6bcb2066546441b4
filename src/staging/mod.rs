//! Staging: the database that holds staged orders, rejected rows, batches, the ledger, runs
//! and the lease. [`open`] is the one place that opens a database (the URL scheme picks the
//! backend), sets its options and runs its migrations. Everything else talks to it through the
//! [`Staging`] trait: SQLite (one file, one submitter) and PostgreSQL (several workers on
//! several hosts) implement it side by side, each with its own migrations folder.

mod backend;
mod changed;
mod checkpoint;
mod claims;
mod lease;
mod orders;
mod parts;
pub mod postgres;
mod prepare;
mod rerun;
mod runs;
mod sqlite;
mod sqlite_memory;
mod time;

pub use lease::{process_gone, LeaseError, LeaseInfo};
pub use orders::{ChunkCounts, ClaimedOrder, FileRecord, FileStart, FileTotals, RecordedOutcome};
pub use parts::ReadMemory;
pub use postgres::PgStaging;
pub use prepare::PreparedChunk;
pub use rerun::{RerunCandidate, RerunFilter};
pub use runs::redact_url;
pub use runs::{host_name, os_user, RunInfo, RunStart};
pub use sqlite::SqliteStaging;
pub use time::{now_utc, to_db_time};

use crate::channels::RejectedRow;
use crate::report::{BatchReport, FailedReport, OrderHistory, ReportError, Scope, Summary};
use crate::submit::budget::{BudgetLimits, SharedBudget};
use crate::submit::target::{OrderOutcome, PlanError};
use std::sync::Arc;

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
    /// The database carries a migration this binary does not have: a newer orderload upgraded
    /// it (after a rollback of the binary, say). Its schema may not be what this code expects.
    #[error(
        "the database has schema migration {applied}, which this orderload does not know (it knows 1–{known}): \
         a newer orderload upgraded it; run that version or a later one against it"
    )]
    NewerSchema { applied: i64, known: i64 },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored order {id} is not valid JSON: {source}")]
    Payload {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    /// A chunk did not stage as its own counts say (a bug or a foreign writer): the chunk's
    /// transaction is rolled back.
    #[error("file {file_id} did not stage as counted: {detail}")]
    Accounting { file_id: i64, detail: String },
    /// The file is no longer this run's to write: another run took it over (this run lost
    /// its lease) or finished it. Checked inside every chunk's and the end's transaction.
    #[error("file {file_id} is no longer being read by run {run_id}: another run took it over (this run lost its lease: it stalled, or could not reach the database, for longer than submit.lease_secs); this run stopped without writing more of it")]
    FileTakenOver { file_id: i64, run_id: i64 },
    #[error("cannot create database folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Open (creating if needed) the database at `url` and bring its schema up to date:
/// `sqlite://path` or `postgres://…` (`postgresql://…`).
pub async fn open(url: &str) -> Result<Arc<dyn Staging>, StagingError> {
    open_with(url, None).await
}

/// [`open`], with PostgreSQL's migrations run over `migration_url` (a direct connection).
pub async fn open_with(
    url: &str,
    migration_url: Option<&str>,
) -> Result<Arc<dyn Staging>, StagingError> {
    if is_postgres_url(url) {
        Ok(Arc::new(PgStaging::open_with(url, migration_url).await?))
    } else {
        Ok(Arc::new(SqliteStaging::open(url).await?))
    }
}

/// A migration error as the operator needs it: a migration applied to the database but
/// unknown to this binary is [`StagingError::NewerSchema`].
fn migration_error(
    e: sqlx::migrate::MigrateError,
    migrator: &sqlx::migrate::Migrator,
) -> StagingError {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(applied) => StagingError::NewerSchema {
            applied,
            known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
        },
        e => StagingError::Migrate(e),
    }
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The live claims of other holders: how many, and the soonest one's expiry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ForeignClaims {
    pub orders: u64,
    /// Seconds until the first of them expires (0 when already expired).
    pub first_expiry_secs: f64,
}

/// A batch row just created, and which of its orders are still this run's to send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartedBatch {
    pub id: i64,
    /// The orders still claimed under the token with a live claim, each claim extended.
    pub live: Vec<i64>,
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
    /// Count `n` staged orders with `status`.
    pub fn add_orders(&mut self, status: &str, n: i64) {
        self.orders_total += n;
        match status {
            "pending" => self.pending += n,
            "in_flight" => self.in_flight += n,
            "succeeded" => self.succeeded += n,
            "failed" => self.failed += n,
            _ => {}
        }
    }

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
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Whether several `submit` processes may work on this database at once, coordinating
    /// through claims only. SQLite: no, one submitter per file (the lease).
    fn allows_workers(&self) -> bool;
    async fn close(&self);

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
    /// Take over a file whose earlier ingest stopped before the end of it (killed, or a
    /// database error): its row is still `reading`. The row goes to `run_id` with this read's
    /// path, format, encoding and notes; the rejected rows that read stored are dropped (the
    /// same bytes are read again from the start and store them again). False when the row is
    /// no longer `reading` (another ingest finished it meanwhile).
    async fn reopen_file(
        &self,
        file_id: i64,
        start: &FileStart,
        run_id: i64,
    ) -> Result<bool, StagingError>;
    /// Write one chunk of a file (prepared off the writer's path: [`PreparedChunk::new`]).
    /// `read` carries what this read of the file learned in its earlier chunks: one
    /// [`ReadMemory`] per read, from its first chunk to its last.
    async fn stage_chunk(
        &self,
        file_id: i64,
        run_id: i64,
        chunk: PreparedChunk,
        rejected: Vec<RejectedRow>,
        read: &mut ReadMemory,
    ) -> Result<ChunkCounts, StagingError>;
    /// At the end of a file's read: of `order_ids` (the orders the read sent back from
    /// `succeeded` to `pending`), those it staged whose content is again the version Dynamics
    /// stored (`sent_hash`) go back to `succeeded`, with a ledger event, instead of being sent
    /// again. The read of an order whose rows are far apart replaces it part by part. Only
    /// while `run_id` still reads the file (its orders cannot have been claimed meanwhile).
    /// How many.
    async fn settle_requeued(
        &self,
        file_id: i64,
        run_id: i64,
        order_ids: &[i64],
    ) -> Result<u64, StagingError>;
    /// Record a file's end. Fails with [`StagingError::FileTakenOver`] unless `run_id` still
    /// reads it.
    async fn finish_file(
        &self,
        file_id: i64,
        run_id: i64,
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
    /// Just before sending, in one transaction: the batch row is created, the run's in-flight orders among `order_ids`
    /// are tagged with it, and those still claimed under `token` with a live claim are
    /// extended by `ttl_secs` and returned as `live`.
    async fn start_batch(
        &self,
        run_id: i64,
        token: &str,
        order_ids: &[i64],
        operations: usize,
        parent: Option<i64>,
        ttl_secs: u64,
    ) -> Result<StartedBatch, StagingError>;
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
    /// Pending orders no claim takes because the file their content came from is still
    /// `reading` (see `parts::NOT_FROM_A_FILE_BEING_READ`).
    async fn waiting_for_reads(&self) -> Result<u64, StagingError>;
    /// Of `order_ids`, those still claimed under `token` for batch `batch_id`, with the claim
    /// live: the orders whose outcome `record_outcomes` would record for that batch. Asked
    /// before a batch is sent again. (An order withdrawn and claimed again by the same run is
    /// in another batch now.)
    async fn live_claims(
        &self,
        token: &str,
        batch_id: i64,
        order_ids: &[i64],
    ) -> Result<Vec<i64>, StagingError>;
    async fn reconciliation(&self) -> Result<Reconciliation, StagingError>;

    // claims shared by several workers
    /// Claims whose holder stopped heartbeating (expired) go back to `pending`, with a ledger
    /// event. Any worker may run it.
    async fn sweep_expired_claims(&self, run_id: i64) -> Result<u64, StagingError>;
    /// Extend the expiry of every live claim held under `token`; returns how many.
    async fn heartbeat_claims(&self, token: &str, ttl_secs: u64) -> Result<u64, StagingError>;
    /// Record that run `run_id` is alive for `ttl_secs` more (the report's "died" for a run
    /// that never recorded its end). SQLite needs none: its runs are on one host, where the
    /// report asks whether the process is gone.
    async fn heartbeat_run(&self, run_id: i64, ttl_secs: u64) -> Result<(), StagingError>;
    /// Live claims held by other tokens.
    async fn foreign_claims(&self, token: &str) -> Result<ForeignClaims, StagingError>;
    /// The shared Dataverse throttling budget of one application user.
    fn budget(&self, key: &str, worker: &str, limits: BudgetLimits) -> Arc<dyn SharedBudget>;

    // operator reads and reruns
    async fn current_lease(&self) -> Result<Option<LeaseInfo>, StagingError>;
    async fn report_summary(&self, scope: &Scope) -> Result<Summary, ReportError>;
    async fn report_failed(&self, scope: &Scope) -> Result<FailedReport, ReportError>;
    async fn report_batch(&self, id: i64) -> Result<BatchReport, ReportError>;
    async fn report_order(
        &self,
        channel: &str,
        external_id: &str,
        since: Option<&str>,
    ) -> Result<OrderHistory, ReportError>;
    /// When the last fully successful `run` or `submit` finished (RFC 3339).
    async fn last_success_at(&self) -> Result<Option<String>, StagingError>;
    async fn rerun_candidates(
        &self,
        filter: &RerunFilter,
    ) -> Result<Vec<RerunCandidate>, StagingError>;
    async fn record_rerun(
        &self,
        run_id: i64,
        requested_by: &str,
        filter: &RerunFilter,
        orders: usize,
        mode: &str,
    ) -> Result<i64, StagingError>;
    async fn batch_exists(&self, id: i64) -> Result<bool, StagingError>;
}
