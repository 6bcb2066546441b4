//! The report's reads. Counts are `GROUP BY`s over indexed columns and lists of runs and
//! batches stop at the most recent few, so a summary of a million orders stays fast.

use super::*;
use crate::staging::{Reconciliation, SqliteStaging, Staging, StagingError};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error("database error while reading the report: {0}")]
    Db(#[from] sqlx::Error),
    #[error("no batch with id {id} in this database ({known})")]
    UnknownBatch { id: i64, known: String },
    #[error("no order {channel}:{external_id} in this database ({known})")]
    UnknownOrder {
        channel: String,
        external_id: String,
        known: String,
    },
    #[error("no run with id {id} in this database ({known})")]
    UnknownRun { id: i64, known: String },
}

impl ReportError {
    /// No batch `id`; `range` is the (lowest, highest) batch id there is.
    pub(crate) fn unknown_batch(id: i64, range: (Option<i64>, Option<i64>)) -> Self {
        let known = match range {
            (Some(lo), Some(hi)) => format!("batch ids go from {lo} to {hi}"),
            _ => "there are no batches yet".to_string(),
        };
        ReportError::UnknownBatch { id, known }
    }

    /// No run `id`; `range` is the (lowest, highest) run id there is.
    pub(crate) fn unknown_run(id: i64, range: (Option<i64>, Option<i64>)) -> Self {
        let known = match range {
            (Some(lo), Some(hi)) => format!("run ids go from {lo} to {hi}"),
            _ => "there are no runs yet".to_string(),
        };
        ReportError::UnknownRun { id, known }
    }

    /// No order `channel:external_id`; the channel has `in_channel` orders, and `channels`
    /// names channels that exist (looked up only when `in_channel` is 0).
    pub(crate) fn unknown_order(
        channel: &str,
        external_id: &str,
        in_channel: i64,
        channels: &[String],
    ) -> Self {
        let known = if in_channel > 0 {
            format!("channel {channel:?} has {in_channel} orders, none with id {external_id:?}")
        } else if channels.is_empty() {
            "there are no orders yet".to_string()
        } else {
            format!(
                "no channel {channel:?}; the channels are: {}",
                channels.join(", ")
            )
        };
        ReportError::UnknownOrder {
            channel: channel.to_string(),
            external_id: external_id.to_string(),
            known,
        }
    }
}

/// Parse `--since`: a date (`2024-05-01`, midnight UTC) or an RFC 3339 time with an offset.
/// Returns the time as the database writes it, so it compares as text.
pub fn parse_since(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(crate::staging::to_db_time(t));
    }
    match chrono::DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Ok(crate::staging::to_db_time(t.with_timezone(&chrono::Utc))),
        Err(_) => Err(format!(
            "{raw:?} is not a date: expected YYYY-MM-DD (midnight UTC) or an RFC 3339 time \
             with an offset, e.g. 2024-05-01T06:00:00+02:00"
        )),
    }
}

/// A `WHERE` clause built from the scope, with its arguments in order.
struct Clause {
    conditions: Vec<&'static str>,
    args: Vec<Arg>,
}

#[derive(Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

impl Clause {
    /// Conditions for `since` and `run` on one table; `None` leaves that part of the scope out.
    fn new(scope: &Scope, since: Option<&'static str>, run: Option<&'static str>) -> Self {
        let mut c = Clause {
            conditions: Vec::new(),
            args: Vec::new(),
        };
        if let (Some(t), Some(cond)) = (&scope.since, since) {
            c.conditions.push(cond);
            c.args.push(Arg::Text(t.clone()));
        }
        if let (Some(r), Some(cond)) = (scope.run, run) {
            c.conditions.push(cond);
            c.args.push(Arg::Int(r));
        }
        c
    }

    fn and(mut self, cond: &'static str) -> Self {
        self.conditions.push(cond);
        self
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn arguments(&self) -> SqliteArguments<'static> {
        let mut a = SqliteArguments::default();
        for arg in &self.args {
            // Adding a text or an integer to SQLite arguments cannot fail.
            let _ = match arg {
                Arg::Text(s) => a.add(s.clone()),
                Arg::Int(i) => a.add(*i),
            };
        }
        a
    }

    async fn fetch_all(
        &self,
        pool: &sqlx::SqlitePool,
        sql: &str,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        sqlx::query_with(sql, self.arguments())
            .fetch_all(pool)
            .await
    }

    async fn count(&self, pool: &sqlx::SqlitePool, sql: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar_with(sql, self.arguments())
            .fetch_one(pool)
            .await
    }

    /// The one text value a query returns.
    async fn scalar_text(&self, pool: &sqlx::SqlitePool, sql: &str) -> Result<String, sqlx::Error> {
        sqlx::query_scalar_with(sql, self.arguments())
            .fetch_one(pool)
            .await
    }
}

const ORDER_SINCE: &str = "o.updated_at >= ?";
const ORDER_RUN: &str = "o.id IN (SELECT order_id FROM ledger WHERE run_id = ?)";

fn orders_clause(scope: &Scope) -> Clause {
    Clause::new(scope, Some(ORDER_SINCE), Some(ORDER_RUN))
}

/// The default report.
///
/// Its reads are independent, so they run at once on the pool's connections (each on its own
/// SQLite thread). Reading every order is the expensive part, so it happens once: when the
/// report covers the whole database, the reconciliation's order counts are the summary's own
/// channel × status counts (the same `GROUP BY` staging's reconciliation runs, summed), and
/// only its file totals are read separately.
pub async fn summary(staging: &SqliteStaging, scope: &Scope) -> Result<Summary, ReportError> {
    let pool = staging.pool();
    if let Some(run) = scope.run {
        check_run(pool, run).await?;
    }
    let whole_database = scope.since.is_none() && scope.run.is_none();
    let reconciliation = async {
        if whole_database {
            file_reconciliation(pool).await
        } else {
            Ok(staging.reconciliation().await?)
        }
    };
    let lease = async { Ok::<_, ReportError>(staging.current_lease().await?) };
    let (
        (orders, channels),
        mut reconciliation,
        failed_orders,
        (runs, runs_total),
        rejected_by_reason,
        files,
        (batches, batches_total),
        lease,
    ) = tokio::try_join!(
        order_counts(pool, scope),
        reconciliation,
        failed_orders(pool, scope),
        recent_runs(pool, scope),
        rejected_by_reason(pool, scope),
        files(pool, scope),
        recent_batches(pool, scope),
        lease,
    )?;
    if whole_database {
        reconciliation = Reconciliation {
            orders_total: orders.total,
            pending: orders.pending,
            in_flight: orders.in_flight,
            succeeded: orders.succeeded,
            failed: orders.failed,
            ..reconciliation
        }
        .compute();
    }
    let rejected_rows = rejected_by_reason.iter().map(|r| r.count).sum();

    Ok(Summary {
        generated_at: crate::staging::now_utc(),
        scope: scope.clone(),
        orders,
        channels,
        runs_count: ListCount {
            shown: runs.len() as i64,
            total: runs_total,
        },
        runs,
        rejected_rows,
        rejected_by_reason,
        files,
        batches_count: ListCount {
            shown: batches.len() as i64,
            total: batches_total,
        },
        batches,
        failed_orders,
        reconciliation,
        lease_holder_gone: lease
            .as_ref()
            .is_some_and(|l| crate::staging::process_gone(&l.host, l.pid)),
        lease,
    })
}

/// The rows side of the reconciliation (what staging's `reconciliation` reads besides the
/// order counts, with the same statements); the order counts are left at zero.
async fn file_reconciliation(pool: &sqlx::SqlitePool) -> Result<Reconciliation, ReportError> {
    let files = sqlx::query(
        "SELECT COALESCE(SUM(rows), 0) AS r, COALESCE(SUM(rows_staged), 0) AS s, COALESCE(SUM(rejected), 0) AS j
         FROM source_files WHERE status != 'reading'",
    )
    .fetch_one(pool)
    .await?;
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM rejected_rows r JOIN source_files f ON f.id = r.source_file_id WHERE f.status != 'reading'",
    )
    .fetch_one(pool)
    .await?;
    Ok(Reconciliation {
        rows_read: files.get("r"),
        rows_staged: files.get("s"),
        rows_rejected: files.get("j"),
        rejected_rows_stored: stored,
        ..Default::default()
    })
}

/// Orders by status, overall and per channel, from one pass over the orders.
///
/// With the `(channel, status)` index and the whole database in scope, each channel's range
/// of the index is counted by a query of its own, at once on the pool's connections: the pass
/// is the report's longest read, and split this way it uses both cores of a small machine.
async fn order_counts(
    pool: &sqlx::SqlitePool,
    scope: &Scope,
) -> Result<(StatusCounts, Vec<ChannelCounts>), ReportError> {
    let table = orders_table_for_counts(pool, scope).await?;
    let rows: Vec<(String, String, i64)> = if table == INDEX_ONLY {
        // The channels, each found by one index seek (not by reading the orders).
        let names: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE c(channel) AS (
                 SELECT MIN(channel) FROM staged_orders
                 UNION ALL
                 SELECT (SELECT MIN(channel) FROM staged_orders WHERE channel > c.channel)
                 FROM c WHERE c.channel IS NOT NULL)
             SELECT channel FROM c WHERE channel IS NOT NULL",
        )
        .fetch_all(pool)
        .await?;
        let per_channel = futures::future::try_join_all(names.into_iter().map(|channel| async {
            let counts: Vec<(String, i64)> = sqlx::query_as(
                "SELECT status, COUNT(*) FROM staged_orders WHERE channel = ? GROUP BY status",
            )
            .bind(&channel)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>((channel, counts))
        }))
        .await?;
        per_channel
            .into_iter()
            .flat_map(|(channel, counts)| {
                counts
                    .into_iter()
                    .map(move |(status, n)| (channel.clone(), status, n))
            })
            .collect()
    } else {
        let clause = orders_clause(scope);
        sqlx::query_as_with(
            &format!(
                "SELECT o.channel, o.status, COUNT(*) AS n FROM {table}{}
                 GROUP BY o.channel, o.status ORDER BY o.channel",
                clause.sql()
            ),
            clause.arguments(),
        )
        .fetch_all(pool)
        .await?
    };
    let mut orders = StatusCounts::default();
    let mut channels: Vec<ChannelCounts> = Vec::new();
    for (channel, status, n) in rows {
        orders.add(&status, n);
        if channels.last().is_none_or(|c| c.channel != channel) {
            channels.push(ChannelCounts {
                channel,
                counts: StatusCounts::default(),
            });
        }
        if let Some(c) = channels.last_mut() {
            c.counts.add(&status, n);
        }
    }
    Ok((orders, channels))
}

/// The most recent [`RECENT_RUNS`] runs in scope, and how many there are.
async fn recent_runs(
    pool: &sqlx::SqlitePool,
    scope: &Scope,
) -> Result<(Vec<RunRow>, i64), ReportError> {
    let runs_clause = Clause::new(scope, Some("started_at >= ?"), Some("id = ?"));
    let runs_total = runs_clause
        .count(
            pool,
            &format!("SELECT COUNT(*) FROM runs{}", runs_clause.sql()),
        )
        .await?;
    let runs: Vec<RunRow> = runs_clause
        .fetch_all(
            pool,
            &format!(
                "SELECT id, command, started_at, finished_at, outcome, exit_code, summary, host, pid FROM runs{}
                 ORDER BY id DESC LIMIT {RECENT_RUNS}",
                runs_clause.sql()
            ),
        )
        .await?
        .iter()
        .map(|r| RunRow {
            id: r.get("id"),
            command: r.get("command"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            outcome: r.get("outcome"),
            exit_code: r.get("exit_code"),
            counts: r
                .get::<Option<String>, _>("summary")
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null),
            died: super::run_died(
                r.get::<Option<String>, _>("finished_at").is_some(),
                r.get("host"),
                r.get("pid"),
            ),
            host: r.get("host"),
            pid: r.get("pid"),
        })
        .collect();
    Ok((runs, runs_total))
}

/// Rejected rows in scope by reason code, most frequent first.
async fn rejected_by_reason(
    pool: &sqlx::SqlitePool,
    scope: &Scope,
) -> Result<Vec<ReasonCount>, ReportError> {
    let rejected_clause = Clause::new(
        scope,
        Some("created_at >= ?"),
        Some("source_file_id IN (SELECT id FROM source_files WHERE run_id = ?)"),
    );
    Ok(rejected_clause
        .fetch_all(
            pool,
            &format!(
                "SELECT reason_code, COUNT(*) AS n FROM rejected_rows{}
                 GROUP BY reason_code ORDER BY n DESC, reason_code",
                rejected_clause.sql()
            ),
        )
        .await?
        .iter()
        .map(|r| ReasonCount {
            reason_code: r.get("reason_code"),
            count: r.get("n"),
        })
        .collect())
}

/// Every file in scope, most recent first.
async fn files(pool: &sqlx::SqlitePool, scope: &Scope) -> Result<Vec<FileRow>, ReportError> {
    let files_clause = Clause::new(scope, Some("ingested_at >= ?"), Some("run_id = ?"));
    Ok(files_clause
        .fetch_all(
            pool,
            &format!(
                "SELECT id, path, channel, sha256, status, rows, rows_staged, rejected, orders, format,
                        encoding, notes, error, ingested_at, {FILE_RUN}
                 FROM source_files{} ORDER BY id DESC",
                files_clause.sql()
            ),
        )
        .await?
        .iter()
        .map(file_row)
        .collect())
}

/// The most recent [`RECENT_BATCHES`] batches in scope, and how many there are.
async fn recent_batches(
    pool: &sqlx::SqlitePool,
    scope: &Scope,
) -> Result<(Vec<BatchRow>, i64), ReportError> {
    let batches_clause = Clause::new(scope, Some("created_at >= ?"), Some("run_id = ?"));
    let batches_total = batches_clause
        .count(
            pool,
            &format!("SELECT COUNT(*) FROM batches{}", batches_clause.sql()),
        )
        .await?;
    let batches: Vec<BatchRow> = batches_clause
        .fetch_all(
            pool,
            &format!(
                "SELECT * FROM batches{} ORDER BY id DESC LIMIT {RECENT_BATCHES}",
                batches_clause.sql()
            ),
        )
        .await?
        .iter()
        .map(batch_row)
        .collect();
    Ok((batches, batches_total))
}

/// The index that makes counting orders by channel and status a scan of the index alone.
const CHANNEL_STATUS_INDEX: &str = "staged_orders_by_channel_status";

/// [`orders_table_for_counts`] when the count can read [`CHANNEL_STATUS_INDEX`] alone.
const INDEX_ONLY: &str = "staged_orders o";

/// How to name `staged_orders` in the channel × status count. With a `(channel, status)` index
/// and no filter, SQLite reads only that index (0.2 s for a million orders). Otherwise it would
/// walk the `(channel, external_id)` index and look every row up (4 s); a plain scan of the
/// table is twice as fast as that, so the other indexes are ruled out with `NOT INDEXED`
/// (rowid lookups for `--run` remain).
async fn orders_table_for_counts(
    pool: &sqlx::SqlitePool,
    scope: &Scope,
) -> Result<&'static str, sqlx::Error> {
    if scope.since.is_none() && scope.run.is_none() {
        let has_index: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = 'staged_orders' AND name = ?",
        )
        .bind(CHANNEL_STATUS_INDEX)
        .fetch_optional(pool)
        .await?;
        if has_index.is_some() {
            return Ok(INDEX_ONLY);
        }
    }
    Ok("staged_orders o NOT INDEXED")
}

/// `report --failed`: every failed order in scope, and how many of each kind of error.
pub async fn failed(staging: &SqliteStaging, scope: &Scope) -> Result<FailedReport, ReportError> {
    let pool = staging.pool();
    if let Some(run) = scope.run {
        check_run(pool, run).await?;
    }
    let failed_orders = failed_orders(pool, scope).await?;
    let mut by_error: Vec<ErrorGroup> = Vec::new();
    for f in &failed_orders {
        match by_error
            .iter_mut()
            .find(|g| g.error_code == f.error_code && g.http_status == f.http_status)
        {
            Some(g) => g.count += 1,
            None => by_error.push(ErrorGroup {
                error_code: f.error_code.clone(),
                http_status: f.http_status,
                count: 1,
                hint: hint(f.error_code.as_deref(), f.http_status, f.retryable).to_string(),
            }),
        }
    }
    by_error.sort_by(|a, b| b.count.cmp(&a.count).then(a.error_code.cmp(&b.error_code)));
    Ok(FailedReport {
        generated_at: crate::staging::now_utc(),
        scope: scope.clone(),
        total: failed_orders.len() as i64,
        by_error,
        failed_orders,
    })
}

async fn failed_orders(
    pool: &sqlx::SqlitePool,
    scope: &Scope,
) -> Result<Vec<FailedOrder>, ReportError> {
    // There can be tens of thousands. sqlx copies every value of every row and hands each row
    // to this thread separately (~10 µs a row), so SQLite builds the list as one JSON array
    // instead, from migration 0003's partial index, which holds the columns. The array's order
    // is not defined without an ORDER BY inside the aggregate (which would sort the list in a
    // temporary B-tree again), so the rows are sorted here: they come in index order, already
    // sorted, which the stable sort checks in one pass.
    let clause = orders_clause(scope).and("o.status = 'failed'");
    let json: String = clause
        .scalar_text(
            pool,
            &format!(
                "SELECT json_group_array(json_array(
                            o.id, o.channel, o.external_id, o.batch_id, o.attempts,
                            o.last_error_code, o.last_http_status, o.last_error_message,
                            o.retryable, o.updated_at))
                 FROM staged_orders o{}",
                clause.sql()
            ),
        )
        .await?;
    let mut rows: Vec<FailedOrderRow> = serde_json::from_str(&json).map_err(|e| {
        ReportError::Db(sqlx::Error::Decode(
            format!("the failed-order list SQLite built is not the expected JSON: {e}").into(),
        ))
    })?;
    // Most recent failure first, then in staging order.
    rows.sort_by(|a, b| b.9.cmp(&a.9).then(a.0.cmp(&b.0)));
    Ok(rows
        .into_iter()
        .map(
            |FailedOrderRow(
                _id,
                channel,
                external_id,
                batch_id,
                attempts,
                error_code,
                http_status,
                message,
                retryable,
                failed_at,
            )| {
                let retryable = retryable != 0;
                FailedOrder {
                    hint: hint_for_order(
                        &channel,
                        &external_id,
                        error_code.as_deref(),
                        http_status,
                        retryable,
                    ),
                    channel,
                    external_id,
                    batch_id,
                    attempts,
                    error_code,
                    http_status,
                    message,
                    retryable,
                    failed_at,
                }
            },
        )
        .collect())
}

/// One element of the JSON array [`failed_orders`] reads: a JSON array of the columns in
/// this order (no keys: half the bytes to build and to parse).
#[derive(serde::Deserialize)]
struct FailedOrderRow(
    i64,
    String,
    String,
    Option<i64>,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    String,
);

/// `report --batch ID`: the batch and each order that was in it, with what happened to it
/// there and its status now.
pub async fn batch(staging: &SqliteStaging, id: i64) -> Result<BatchReport, ReportError> {
    let pool = staging.pool();
    let Some(row) = sqlx::query("SELECT * FROM batches WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?
    else {
        let range: (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(id), MAX(id) FROM batches")
                .fetch_one(pool)
                .await?;
        return Err(ReportError::unknown_batch(id, range));
    };
    let batch = batch_row(&row);
    // The latest ledger event of each order in this batch says what happened to it there.
    let orders = sqlx::query(
        "SELECT o.channel, o.external_id, o.status, o.attempts, o.retryable,
                l.to_status, l.http_status, l.error_code, l.message
         FROM staged_orders o
         LEFT JOIN (SELECT order_id, to_status, http_status, error_code, message, MAX(id)
                    FROM ledger WHERE batch_id = ?1 GROUP BY order_id) l ON l.order_id = o.id
         WHERE o.id IN (SELECT order_id FROM ledger WHERE batch_id = ?1)
            OR o.batch_id = ?1
         ORDER BY o.id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let status: String = r.get("status");
        BatchOrder {
            channel: r.get("channel"),
            external_id: r.get("external_id"),
            outcome: r
                .get::<Option<String>, _>("to_status")
                .unwrap_or_else(|| status.clone()),
            http_status: r.get("http_status"),
            error_code: r.get("error_code"),
            message: r.get("message"),
            status,
            attempts: r.get("attempts"),
            retryable: r.get::<i64, _>("retryable") != 0,
        }
    })
    .collect();
    Ok(BatchReport { batch, orders })
}

/// `report --order CHANNEL:ID`: the order's whole story. `since` limits the events shown.
pub async fn order(
    staging: &SqliteStaging,
    channel: &str,
    external_id: &str,
    since: Option<&str>,
) -> Result<OrderHistory, ReportError> {
    let pool = staging.pool();
    let Some(r) = sqlx::query("SELECT * FROM staged_orders WHERE channel = ? AND external_id = ?")
        .bind(channel)
        .bind(external_id)
        .fetch_optional(pool)
        .await?
    else {
        return Err(unknown_order(pool, channel, external_id).await?);
    };
    let id: i64 = r.get("id");
    let source_file_id: Option<i64> = r.get("source_file_id");
    let source_rows: Vec<u64> =
        serde_json::from_str(&r.get::<String, _>("source_rows")).unwrap_or_default();

    let all_events: Vec<OrderEvent> =
        sqlx::query("SELECT * FROM ledger WHERE order_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|e| OrderEvent {
                at: e.get("at"),
                from: e.get("from_status"),
                to: e.get("to_status"),
                batch_id: e.get("batch_id"),
                run_id: e.get("run_id"),
                http_status: e.get("http_status"),
                error_code: e.get("error_code"),
                message: e.get("message"),
            })
            .collect();

    // Earlier files the order came from are named in the ledger ("staged from file 3",
    // "content changed in file 7"); the current one is on the order.
    let mut file_ids: Vec<i64> = all_events
        .iter()
        .filter_map(|e| e.message.as_deref().and_then(file_id_in_message))
        .collect();
    file_ids.extend(source_file_id);
    let mut seen = std::collections::HashSet::new();
    file_ids.retain(|f| seen.insert(*f));
    let mut files = Vec::new();
    for f in file_ids {
        if let Some(fr) =
            sqlx::query("SELECT id, path, sha256, ingested_at FROM source_files WHERE id = ?")
                .bind(f)
                .fetch_optional(pool)
                .await?
        {
            let current = Some(f) == source_file_id;
            files.push(OrderSource {
                file_id: f,
                path: fr.get("path"),
                sha256: fr.get("sha256"),
                ingested_at: fr.get("ingested_at"),
                rows: current.then(|| source_rows.clone()),
                current,
            });
        }
    }

    let events = match since {
        Some(t) => all_events
            .into_iter()
            .filter(|e| e.at.as_str() >= t)
            .collect(),
        None => all_events,
    };
    let status: String = r.get("status");
    let error_code: Option<String> = r.get("last_error_code");
    let http_status: Option<i64> = r.get("last_http_status");
    let retryable = r.get::<i64, _>("retryable") != 0;
    let hint = (status == "failed").then(|| {
        hint_for_order(
            channel,
            external_id,
            error_code.as_deref(),
            http_status,
            retryable,
        )
    });
    Ok(OrderHistory {
        channel: channel.to_string(),
        external_id: external_id.to_string(),
        dynamics_key: crate::dataverse::keys::OrderKey::new(channel, external_id)
            .as_str()
            .to_string(),
        dynamics_ref: r.get("dynamics_ref"),
        retryable,
        attempts: r.get("attempts"),
        batch_id: r.get("batch_id"),
        message: r.get("last_error_message"),
        hint,
        error_code,
        http_status,
        status,
        staged_at: r.get("staged_at"),
        updated_at: r.get("updated_at"),
        // From the columns staging keeps beside the payload (the payload is not parsed).
        order: OrderContent {
            created_at: seconds(&r.get::<String, _>("order_created_at")),
            currency: r.get("currency"),
            total: r.get("total"),
            lines: r.get("line_count"),
        },
        files,
        events,
    })
}

/// `2024-05-01T14:00:00.000000Z` → `2024-05-01T14:00:00Z` (other text is kept as it is).
pub(crate) fn seconds(db_time: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(db_time) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Err(_) => db_time.to_string(),
    }
}

/// The file id in a ledger message such as "staged from file 3" or "content changed in file 7;".
pub(crate) fn file_id_in_message(message: &str) -> Option<i64> {
    if !(message.starts_with("staged from file ")
        || message.starts_with("content changed in file "))
    {
        return None;
    }
    let rest = &message[message.find("file ")? + 5..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

async fn unknown_order(
    pool: &sqlx::SqlitePool,
    channel: &str,
    external_id: &str,
) -> Result<ReportError, ReportError> {
    let in_channel: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM staged_orders WHERE channel = ?")
            .bind(channel)
            .fetch_one(pool)
            .await?;
    let names: Vec<String> = if in_channel > 0 {
        Vec::new()
    } else {
        sqlx::query_scalar("SELECT DISTINCT channel FROM staged_orders ORDER BY channel LIMIT 20")
            .fetch_all(pool)
            .await?
    };
    Ok(ReportError::unknown_order(
        channel,
        external_id,
        in_channel,
        &names,
    ))
}

async fn check_run(pool: &sqlx::SqlitePool, id: i64) -> Result<(), ReportError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    if exists.is_some() {
        return Ok(());
    }
    let range: (Option<i64>, Option<i64>) = sqlx::query_as("SELECT MIN(id), MAX(id) FROM runs")
        .fetch_one(pool)
        .await?;
    Err(ReportError::unknown_run(id, range))
}

/// The columns of a file's run that tell whether its read was interrupted (both backends).
pub(crate) const FILE_RUN: &str =
    "run_id, (SELECT host FROM runs WHERE runs.id = source_files.run_id) AS run_host, \
     (SELECT pid FROM runs WHERE runs.id = source_files.run_id) AS run_pid, \
     (SELECT COUNT(*) FROM runs WHERE runs.id = source_files.run_id AND runs.finished_at IS NULL) AS run_open";

fn file_row(r: &SqliteRow) -> FileRow {
    let notes: Option<String> = r.get("notes");
    FileRow {
        id: r.get("id"),
        path: r.get("path"),
        channel: r.get("channel"),
        sha256: r.get("sha256"),
        status: r.get("status"),
        rows: r.get("rows"),
        rows_staged: r.get("rows_staged"),
        rejected: r.get("rejected"),
        orders: r.get("orders"),
        format: r.get("format"),
        encoding: r.get("encoding"),
        notes: notes
            .map(|n| serde_json::from_str(&n).unwrap_or_else(|_| vec![n]))
            .unwrap_or_default(),
        error: r.get("error"),
        ingested_at: r.get("ingested_at"),
        interrupted: crate::report::file_interrupted(
            &r.get::<String, _>("status"),
            r.get::<i64, _>("run_open") > 0,
            r.get("run_host"),
            r.get("run_pid"),
        ),
        run_id: r.get("run_id"),
    }
}

fn batch_row(r: &SqliteRow) -> BatchRow {
    BatchRow {
        id: r.get("id"),
        run_id: r.get("run_id"),
        status: r.get("status"),
        orders: r.get("orders"),
        succeeded: r.get("succeeded"),
        failed: r.get("failed"),
        operations: r.get("operations"),
        parent_batch_id: r.get("parent_batch_id"),
        created_at: r.get("created_at"),
        finished_at: r.get("finished_at"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_a_date_or_an_rfc3339_time() {
        assert_eq!(
            parse_since("2024-05-01").unwrap(),
            "2024-05-01T00:00:00.000000Z"
        );
        assert_eq!(
            parse_since("2024-05-01T06:30:00+02:00").unwrap(),
            "2024-05-01T04:30:00.000000Z"
        );
        let e = parse_since("yesterday").unwrap_err();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        assert!(parse_since("2024-13-01").is_err());
    }

    #[test]
    fn file_ids_are_read_from_staging_messages_only() {
        assert_eq!(file_id_in_message("staged from file 3"), Some(3));
        assert_eq!(
            file_id_in_message("content changed in file 17; queued to be sent again"),
            Some(17)
        );
        assert_eq!(file_id_in_message("claimed for attempt 2"), None);
        assert_eq!(file_id_in_message("value too long in file 3"), None);
    }

    /// A database with files (one still being read), rejected rows and orders of every status
    /// in two channels, written with plain SQL.
    async fn staging_with_orders() -> (tempfile::TempDir, SqliteStaging) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let staging = SqliteStaging::open(&url).await.unwrap();
        let t = "2025-01-01T00:00:00.000000Z";
        let mut sql = format!(
            "INSERT INTO source_files (id, sha256, path, channel, size_bytes, status, rows, rows_staged,
                                       rejected, orders, ingested_at)
             VALUES (1, 'a', 'a.csv', 'shop', 1, 'ingested', 9, 7, 2, 5, '{t}'),
                    (2, 'b', 'b.csv', 'amazon', 1, 'reading', 4, 3, 1, 2, '{t}');
             INSERT INTO rejected_rows (source_file_id, row_number, reason_code, message, raw, created_at)
             VALUES (1, 3, 'bad_number', 'm', 'r', '{t}'), (1, 4, 'bad_number', 'm', 'r', '{t}'),
                    (2, 2, 'ragged_row', 'm', 'r', '{t}');"
        );
        let statuses = [
            "pending",
            "in_flight",
            "succeeded",
            "failed",
            "failed",
            "succeeded",
        ];
        for (i, status) in statuses.iter().enumerate() {
            for channel in ["shop", "amazon"] {
                // Two failures at the same time, so the id decides their order.
                let updated = format!("2025-01-0{}T00:00:00.000000Z", 1 + i.min(3));
                let message = if *status == "failed" {
                    "'say \"no\" — ünïcode, {}'"
                } else {
                    "NULL"
                };
                sql.push_str(&format!(
                    "INSERT INTO staged_orders (channel, external_id, status, retryable, attempts,
                         last_error_code, last_error_message, last_http_status, batch_id, content_hash,
                         payload, currency, line_count, row_count, source_file_id, source_rows,
                         order_created_at, staged_at, updated_at)
                     VALUES ('{channel}', '#{i}', '{status}', {retry}, 1, {code}, {message}, {http},
                             {batch}, 'h', '{{}}', 'EUR', 1, 1, 1, '[1]', '{t}', '{t}', '{updated}');",
                    retry = i % 2,
                    code = if *status == "failed" { "'value_too_long'" } else { "NULL" },
                    http = if *status == "failed" { "400" } else { "NULL" },
                    batch = if i == 3 { "NULL" } else { "7" },
                ));
            }
        }
        sqlx::raw_sql(&sql).execute(staging.pool()).await.unwrap();
        (dir, staging)
    }

    #[tokio::test]
    async fn summary_reconciles_like_staging_from_its_own_counts() {
        let (_dir, staging) = staging_with_orders().await;
        let expected = staging.reconciliation().await.unwrap();
        assert_eq!(expected.orders_total, 12);
        assert_eq!(expected.rows_read, 9, "the file being read is left out");
        let s = summary(&staging, &Scope::default()).await.unwrap();
        assert_eq!(s.reconciliation, expected);
        assert_eq!(s.orders.total, 12);
        assert_eq!((s.orders.failed, s.orders.in_flight), (4, 2));
        // Counted per channel (one query each), listed by name.
        let names: Vec<&str> = s.channels.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!(names, ["amazon", "shop"]);
        for c in &s.channels {
            assert_eq!(
                (c.counts.pending, c.counts.in_flight, c.counts.succeeded),
                (1, 1, 2)
            );
            assert_eq!((c.counts.failed, c.counts.total), (2, 6));
        }
        // A scoped report still reconciles the whole database.
        let scoped = Scope {
            since: Some("2025-01-04T00:00:00.000000Z".into()),
            run: None,
        };
        let s = summary(&staging, &scoped).await.unwrap();
        assert_eq!(s.reconciliation, expected);
        assert_eq!(s.orders.total, 6);
        assert_eq!(s.channels.len(), 2);
        assert_eq!(s.channels[0].counts.total, 3);
    }

    #[tokio::test]
    async fn failed_orders_come_whole_and_most_recent_first() {
        let (_dir, staging) = staging_with_orders().await;
        let f = failed(&staging, &Scope::default()).await.unwrap();
        let order: Vec<(&str, &str)> = f
            .failed_orders
            .iter()
            .map(|o| (o.channel.as_str(), o.external_id.as_str()))
            .collect();
        // #3 and #4 failed at the same time: staging order (shop first) breaks the tie.
        assert_eq!(
            order,
            [
                ("shop", "#3"),
                ("amazon", "#3"),
                ("shop", "#4"),
                ("amazon", "#4")
            ]
        );
        let o = &f.failed_orders[0];
        assert_eq!(o.message.as_deref(), Some("say \"no\" — ünïcode, {}"));
        assert_eq!(
            (o.batch_id, o.attempts, o.http_status, o.retryable),
            (None, 1, Some(400), true)
        );
        assert_eq!(o.error_code.as_deref(), Some("value_too_long"));
        assert_eq!(o.failed_at, "2025-01-04T00:00:00.000000Z");
        assert!(o.hint.contains("'shop:#3'"), "{}", o.hint);
        assert_eq!(f.failed_orders[2].batch_id, Some(7));
        assert!(!f.failed_orders[2].retryable);
    }
}
