//! Reports: what happened to the orders, read from the staging tables, for the operator the
//! next morning and for monitoring.
//!
//! [`queries`] reads the database into the view types below; [`table`], [`json`] and [`csv`]
//! each render every view in one format. The views:
//!
//! - [`Summary`] (the default): orders by status, per channel, per run; rejected rows; files;
//!   batches; failed orders; the reconciliation check; the live lease.
//! - [`FailedReport`] (`--failed`): each failed order with a [`hint`] of what to do about it.
//! - [`BatchReport`] (`--batch ID`): one batch and every order that was in it.
//! - [`OrderHistory`] (`--order CHANNEL:ID`): one order's files, rows, ledger and Dynamics key.
//!
//! [`Scope`] (`--since`, `--run`) restricts every list and count to activity at or after a
//! time and/or by one run. The reconciliation is always computed over the whole database: it
//! is an invariant, not an activity.

pub mod csv;
mod hints;
pub mod json;
pub mod queries;
pub mod table;

pub use hints::{hint, hint_for_order};
pub use queries::ReportError;

use crate::staging::{LeaseInfo, Reconciliation};
use serde::Serialize;

/// How many runs and batches the summary lists (the most recent ones); the rest are counted.
pub const RECENT_RUNS: i64 = 10;
pub const RECENT_BATCHES: i64 = 20;

/// Which activity a report covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scope {
    /// Only activity at or after this time (database time text: UTC RFC 3339, microseconds).
    pub since: Option<String>,
    /// Only activity of this run.
    pub run: Option<i64>,
}

/// Order counts by status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusCounts {
    pub pending: i64,
    pub in_flight: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub total: i64,
}

impl StatusCounts {
    pub fn add(&mut self, status: &str, n: i64) {
        match status {
            "pending" => self.pending += n,
            "in_flight" => self.in_flight += n,
            "succeeded" => self.succeeded += n,
            "failed" => self.failed += n,
            _ => {}
        }
        self.total += n;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelCounts {
    pub channel: String,
    #[serde(flatten)]
    pub counts: StatusCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub command: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    /// The counts the run recorded (`runs.summary`), as it wrote them.
    pub counts: serde_json::Value,
    pub host: String,
    pub pid: i64,
    /// Never recorded its end and its process is gone (killed or crashed): on SQLite see
    /// [`run_died`]; on PostgreSQL its heartbeat stopped for longer than its lease (`runs.alive_until`).
    pub died: bool,
}

/// Whether a run that never recorded its end died: its process ran on this host and is gone.
/// (One on another host may be alive; it shows as running until its end is recorded. SQLite
/// only, for the reason in [`Summary::lease_holder_gone`]; PostgreSQL asks the run's heartbeat.)
pub fn run_died(finished: bool, host: &str, pid: i64) -> bool {
    !finished && crate::staging::process_gone(host, pid)
}

/// Whether a file still `reading` was left so: its ingest recorded its end (a database error
/// stopped it) or died. The next ingest of the same bytes reads it again from the start.
/// `run_open`: the file's run has not recorded its end; `run_host`/`run_pid`: its process.
pub fn file_interrupted(
    status: &str,
    run_open: bool,
    run_host: Option<&str>,
    run_pid: Option<i64>,
) -> bool {
    status == "reading"
        && (!run_open
            || run_host
                .zip(run_pid)
                .is_some_and(|(host, pid)| crate::staging::process_gone(host, pid)))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    pub reason_code: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileRow {
    pub id: i64,
    pub path: String,
    pub channel: String,
    pub sha256: String,
    pub status: String,
    /// Data records read; always `rows_staged + rejected`.
    pub rows: i64,
    pub rows_staged: i64,
    pub rejected: i64,
    pub orders: i64,
    pub format: Option<String>,
    pub encoding: String,
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub ingested_at: String,
    /// The run that read the file (the last one, for a file read again).
    pub run_id: Option<i64>,
    /// Still `reading`, but its ingest is over: see [`file_interrupted`].
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRow {
    pub id: i64,
    pub run_id: i64,
    pub status: String,
    pub orders: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub operations: i64,
    pub parent_batch_id: Option<i64>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedOrder {
    pub channel: String,
    pub external_id: String,
    pub batch_id: Option<i64>,
    pub attempts: i64,
    pub error_code: Option<String>,
    pub http_status: Option<i64>,
    pub message: Option<String>,
    pub retryable: bool,
    /// What to do about this kind of error ([`hint`]).
    pub hint: String,
    /// When the order last changed (the failure).
    pub failed_at: String,
}

/// A list that may be cut: `shown` of `total`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListCount {
    pub shown: i64,
    pub total: i64,
}

/// The default report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub orders: StatusCounts,
    pub rejected_rows: i64,
    pub files: Vec<FileRow>,
    /// The most recent [`RECENT_BATCHES`]; `batches_count` says how many there are.
    pub batches: Vec<BatchRow>,
    /// Every failed order in scope (the table format shows the first few).
    pub failed_orders: Vec<FailedOrder>,
    pub reconciliation: Reconciliation,
    pub channels: Vec<ChannelCounts>,
    /// The most recent [`RECENT_RUNS`]; `runs_count` says how many there are.
    pub runs: Vec<RunRow>,
    pub runs_count: ListCount,
    pub batches_count: ListCount,
    pub rejected_by_reason: Vec<ReasonCount>,
    pub lease: Option<LeaseInfo>,
    /// The lease's holder ran on this host and its process is gone, so the next run takes the
    /// lease over at once (SQLite; on PostgreSQL a host name and a pid do not identify a
    /// process across hosts and containers, and a lease is taken over only when it expires).
    pub lease_holder_gone: bool,
    pub scope: Scope,
    pub generated_at: String,
}

/// Failed orders of one error kind, for the `--failed` overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorGroup {
    pub error_code: Option<String>,
    pub http_status: Option<i64>,
    pub count: i64,
    pub hint: String,
}

/// `report --failed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedReport {
    pub generated_at: String,
    pub scope: Scope,
    pub total: i64,
    pub by_error: Vec<ErrorGroup>,
    pub failed_orders: Vec<FailedOrder>,
}

/// One order as it went through one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchOrder {
    pub channel: String,
    pub external_id: String,
    /// What happened to the order in this batch (`succeeded`, `failed`, or `in_flight` while
    /// no outcome is recorded).
    pub outcome: String,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub message: Option<String>,
    /// The order's status now (it may have been rerun since).
    pub status: String,
    pub attempts: i64,
    pub retryable: bool,
}

/// `report --batch ID`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    pub batch: BatchRow,
    pub orders: Vec<BatchOrder>,
}

/// A file an order was read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderSource {
    pub file_id: i64,
    pub path: String,
    pub sha256: String,
    pub ingested_at: String,
    /// The data-record numbers of the current content (known for the latest file only).
    pub rows: Option<Vec<u64>>,
    /// True for the file the current content came from.
    pub current: bool,
}

/// One status change of an order (a ledger row).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderEvent {
    pub at: String,
    pub from: Option<String>,
    pub to: String,
    pub batch_id: Option<i64>,
    pub run_id: Option<i64>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub message: Option<String>,
}

/// The canonical order in a few fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderContent {
    pub created_at: String,
    pub currency: String,
    pub total: Option<String>,
    pub lines: i64,
}

/// `report --order CHANNEL:ID`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderHistory {
    pub channel: String,
    pub external_id: String,
    pub status: String,
    pub retryable: bool,
    pub attempts: i64,
    pub batch_id: Option<i64>,
    /// The alternate key the order has in Dynamics (`<channel>.<external id>`, escaped).
    pub dynamics_key: String,
    /// What Dynamics answered when the order was stored (the record reference).
    pub dynamics_ref: Option<String>,
    pub error_code: Option<String>,
    pub http_status: Option<i64>,
    pub message: Option<String>,
    pub hint: Option<String>,
    pub staged_at: String,
    pub updated_at: String,
    pub order: OrderContent,
    pub files: Vec<OrderSource>,
    pub events: Vec<OrderEvent>,
}

/// Any report, ready for a formatter.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Summary(Box<Summary>),
    Failed(FailedReport),
    Batch(BatchReport),
    Order(Box<OrderHistory>),
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

/// Render a report in a format.
/// Write the report to `out` in `format`; JSON is streamed, the others are rendered first.
pub fn write(report: &Report, format: Format, mut out: impl std::io::Write) -> std::io::Result<()> {
    match format {
        Format::Json => json::write(report, out),
        _ => out.write_all(render(report, format).as_bytes()),
    }
}

/// The report as text in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table::render(report),
        Format::Json => json::render(report),
        Format::Csv => csv::render(report),
    }
}
