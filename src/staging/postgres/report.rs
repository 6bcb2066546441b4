//! PostgreSQL: the report's reads, the same views with the same meanings as
//! `crate::report::queries` (SQLite). Times are read as text with `ol_ts()` so they are the
//! same strings SQLite stores; scope times are compared as `timestamptz`. Text sorts use
//! `COLLATE "C"` so lists come out in SQLite's (byte) order whatever the database collation.

use super::PgStaging;
use crate::report::queries::{file_id_in_message, seconds};
use crate::report::{
    hint, hint_for_order, BatchOrder, BatchReport, BatchRow, ChannelCounts, ErrorGroup,
    FailedOrder, FailedReport, FileRow, ListCount, OrderContent, OrderEvent, OrderHistory,
    OrderSource, ReasonCount, ReportError, RunRow, Scope, StatusCounts, Summary, RECENT_BATCHES,
    RECENT_RUNS,
};
use crate::staging::Staging;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::{Arguments, Row};
use std::collections::HashMap;

/// A `WHERE` clause built from the scope, with its arguments in order. Each condition is
/// written with `$?` for its one argument; it is numbered (`$1`, `$2`…) as it is added.
struct Clause {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

#[derive(Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

impl Clause {
    /// Conditions for `since` and `run` on one table; `None` leaves that part of the scope out.
    fn new(scope: &Scope, since: Option<&str>, run: Option<&str>) -> Self {
        let mut c = Clause {
            conditions: Vec::new(),
            args: Vec::new(),
        };
        if let (Some(t), Some(cond)) = (&scope.since, since) {
            c.push(cond, Arg::Text(t.clone()));
        }
        if let (Some(r), Some(cond)) = (scope.run, run) {
            c.push(cond, Arg::Int(r));
        }
        c
    }

    fn push(&mut self, cond: &str, arg: Arg) {
        self.args.push(arg);
        let n = self.args.len();
        self.conditions.push(cond.replace("$?", &format!("${n}")));
    }

    fn and(mut self, cond: &str) -> Self {
        self.conditions.push(cond.to_string());
        self
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn arguments(&self) -> Result<PgArguments, sqlx::Error> {
        let mut a = PgArguments::default();
        for arg in &self.args {
            match arg {
                Arg::Text(s) => a.add(s.clone()),
                Arg::Int(i) => a.add(*i),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(a)
    }

    async fn fetch_all(&self, pool: &PgPool, sql: &str) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query_with(sql, self.arguments()?)
            .fetch_all(pool)
            .await
    }

    async fn count(&self, pool: &PgPool, sql: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar_with(sql, self.arguments()?)
            .fetch_one(pool)
            .await
    }
}

const ORDER_SINCE: &str = "o.updated_at >= $?::timestamptz";
const ORDER_RUN: &str = "o.id IN (SELECT order_id FROM ledger WHERE run_id = $?)";

fn orders_clause(scope: &Scope) -> Clause {
    Clause::new(scope, Some(ORDER_SINCE), Some(ORDER_RUN))
}

/// As `report::queries::FILE_RUN`, but a run counts as open only while it holds the lease:
/// ingest heartbeats it, so a killed ingest's run stops counting once its lease expires or is
/// taken over (a host name and a pid do not identify a process across hosts here).
const FILE_RUN: &str = "run_id, NULL::TEXT AS run_host, NULL::BIGINT AS run_pid, \
     (SELECT COUNT(*) FROM runs WHERE runs.id = source_files.run_id AND runs.finished_at IS NULL \
        AND EXISTS (SELECT 1 FROM lease WHERE lease.run_id = source_files.run_id \
                    AND lease.expires_at > now())) AS run_open";

const FILE_COLUMNS: &str =
    "id, path, channel, sha256, status, rows, rows_staged, rejected, orders, \
     format, encoding, notes, error, ol_ts(ingested_at) AS ingested_at";

const BATCH_COLUMNS: &str = "id, run_id, status, orders, succeeded, failed, operations, \
     parent_batch_id, ol_ts(created_at) AS created_at, ol_ts(finished_at) AS finished_at";

/// The default report.
pub(super) async fn summary(st: &PgStaging, scope: &Scope) -> Result<Summary, ReportError> {
    let pool = st.pool();
    if let Some(run) = scope.run {
        check_run(pool, run).await?;
    }

    // One pass over the orders gives both the per-channel and the overall counts.
    let clause = orders_clause(scope);
    let mut orders = StatusCounts::default();
    let mut channels: Vec<ChannelCounts> = Vec::new();
    for r in clause
        .fetch_all(
            pool,
            &format!(
                "SELECT o.channel, o.status, COUNT(*) AS n FROM staged_orders o{}
                 GROUP BY o.channel, o.status ORDER BY o.channel COLLATE \"C\"",
                clause.sql()
            ),
        )
        .await?
    {
        let channel: String = r.get("channel");
        let status: String = r.get("status");
        let n: i64 = r.get("n");
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

    let runs_clause = Clause::new(
        scope,
        Some("started_at >= $?::timestamptz"),
        Some("id = $?"),
    );
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
                "SELECT id, command, ol_ts(started_at) AS started_at,
                        ol_ts(finished_at) AS finished_at, outcome, exit_code, summary, host, pid,
                        (finished_at IS NULL AND alive_until < now()) IS TRUE AS died
                 FROM runs{} ORDER BY id DESC LIMIT {RECENT_RUNS}",
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
            // Its heartbeat stopped for longer than its lease: a host name and a pid tell
            // nothing across hosts (see `Summary::lease_holder_gone`).
            died: r.get("died"),
            host: r.get("host"),
            pid: r.get("pid"),
        })
        .collect();

    let rejected_clause = Clause::new(
        scope,
        Some("created_at >= $?::timestamptz"),
        Some("source_file_id IN (SELECT id FROM source_files WHERE run_id = $?)"),
    );
    let rejected_by_reason: Vec<ReasonCount> = rejected_clause
        .fetch_all(
            pool,
            &format!(
                "SELECT reason_code, COUNT(*) AS n FROM rejected_rows{}
                 GROUP BY reason_code ORDER BY n DESC, reason_code COLLATE \"C\"",
                rejected_clause.sql()
            ),
        )
        .await?
        .iter()
        .map(|r| ReasonCount {
            reason_code: r.get("reason_code"),
            count: r.get("n"),
        })
        .collect();
    let rejected_rows = rejected_by_reason.iter().map(|r| r.count).sum();

    let files_clause = Clause::new(
        scope,
        Some("ingested_at >= $?::timestamptz"),
        Some("run_id = $?"),
    );
    let files: Vec<FileRow> = files_clause
        .fetch_all(
            pool,
            &format!(
                "SELECT {FILE_COLUMNS}, {FILE_RUN} FROM source_files{} ORDER BY id DESC",
                files_clause.sql()
            ),
        )
        .await?
        .iter()
        .map(file_row)
        .collect();

    let batches_clause = Clause::new(
        scope,
        Some("created_at >= $?::timestamptz"),
        Some("run_id = $?"),
    );
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
                "SELECT {BATCH_COLUMNS} FROM batches{} ORDER BY id DESC LIMIT {RECENT_BATCHES}",
                batches_clause.sql()
            ),
        )
        .await?
        .iter()
        .map(batch_row)
        .collect();

    let failed_orders = failed_orders(pool, scope).await?;
    let reconciliation = st.reconciliation().await?;
    let lease = st.current_lease().await?;

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
        // Taken over only when it expires (see `Summary::lease_holder_gone`).
        lease_holder_gone: false,
        lease,
    })
}

/// `report --failed`: every failed order in scope, and how many of each kind of error.
pub(super) async fn failed(st: &PgStaging, scope: &Scope) -> Result<FailedReport, ReportError> {
    let pool = st.pool();
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

async fn failed_orders(pool: &PgPool, scope: &Scope) -> Result<Vec<FailedOrder>, ReportError> {
    let clause = orders_clause(scope).and("o.status = 'failed'");
    Ok(clause
        .fetch_all(
            pool,
            &format!(
                "SELECT o.channel, o.external_id, o.batch_id, o.attempts, o.last_error_code,
                        o.last_http_status, o.last_error_message, o.retryable,
                        ol_ts(o.updated_at) AS updated_at
                 FROM staged_orders o{} ORDER BY o.updated_at DESC, o.id",
                clause.sql()
            ),
        )
        .await?
        .iter()
        .map(|r| {
            let channel: String = r.get("channel");
            let external_id: String = r.get("external_id");
            let error_code: Option<String> = r.get("last_error_code");
            let http_status: Option<i64> = r.get("last_http_status");
            let retryable: bool = r.get("retryable");
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
                batch_id: r.get("batch_id"),
                attempts: r.get("attempts"),
                error_code,
                http_status,
                message: r.get("last_error_message"),
                retryable,
                failed_at: r.get("updated_at"),
            }
        })
        .collect())
}

/// `report --batch ID`: the batch and each order that was in it, with what happened to it
/// there and its status now.
pub(super) async fn batch(st: &PgStaging, id: i64) -> Result<BatchReport, ReportError> {
    let pool = st.pool();
    let Some(row) = sqlx::query(&format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"
    ))
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
         LEFT JOIN (SELECT DISTINCT ON (order_id) order_id, to_status, http_status, error_code, message
                    FROM ledger WHERE batch_id = $1 ORDER BY order_id, id DESC) l ON l.order_id = o.id
         WHERE o.id IN (SELECT order_id FROM ledger WHERE batch_id = $1)
            OR o.batch_id = $1
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
            retryable: r.get("retryable"),
        }
    })
    .collect();
    Ok(BatchReport { batch, orders })
}

/// `report --order CHANNEL:ID`: the order's whole story. `since` limits the events shown.
pub(super) async fn order(
    st: &PgStaging,
    channel: &str,
    external_id: &str,
    since: Option<&str>,
) -> Result<OrderHistory, ReportError> {
    let pool = st.pool();
    let Some(r) = sqlx::query(
        "SELECT id, status, retryable, attempts, last_error_code, last_error_message,
                last_http_status, batch_id, dynamics_ref, currency, total, line_count,
                source_file_id, source_rows, ol_ts(order_created_at) AS order_created_at,
                ol_ts(staged_at) AS staged_at, ol_ts(updated_at) AS updated_at
         FROM staged_orders WHERE channel = $1 AND external_id = $2",
    )
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

    let all_events: Vec<OrderEvent> = sqlx::query(
        "SELECT ol_ts(at) AS at, from_status, to_status, batch_id, run_id, http_status,
                error_code, message
         FROM ledger WHERE order_id = $1 ORDER BY id",
    )
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
    let mut found: HashMap<i64, PgRow> = if file_ids.is_empty() {
        HashMap::new()
    } else {
        sqlx::query(
            "SELECT id, path, sha256, ol_ts(ingested_at) AS ingested_at
         FROM source_files WHERE id = ANY($1)",
        )
        .bind(&file_ids)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|fr| (fr.get::<i64, _>("id"), fr))
        .collect()
    };
    let mut files = Vec::new();
    for f in file_ids {
        if let Some(fr) = found.remove(&f) {
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
    let retryable: bool = r.get("retryable");
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

async fn unknown_order(
    pool: &PgPool,
    channel: &str,
    external_id: &str,
) -> Result<ReportError, ReportError> {
    let in_channel: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM staged_orders WHERE channel = $1")
            .bind(channel)
            .fetch_one(pool)
            .await?;
    let names: Vec<String> = if in_channel > 0 {
        Vec::new()
    } else {
        sqlx::query_scalar(
            "SELECT channel FROM (SELECT DISTINCT channel FROM staged_orders) c
             ORDER BY channel COLLATE \"C\" LIMIT 20",
        )
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

async fn check_run(pool: &PgPool, id: i64) -> Result<(), ReportError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE id = $1")
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

fn file_row(r: &PgRow) -> FileRow {
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
        // Once its run recorded its end, or no longer holds the lease (see `FILE_RUN`): whether
        // a run's process is gone is not known across hosts (`Summary::lease_holder_gone`).
        interrupted: crate::report::file_interrupted(
            &r.get::<String, _>("status"),
            r.get::<i64, _>("run_open") > 0,
            None,
            None,
        ),
        run_id: r.get("run_id"),
    }
}

fn batch_row(r: &PgRow) -> BatchRow {
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
    fn clause_numbers_its_placeholders_in_order() {
        let scope = Scope {
            since: Some("2024-05-01T00:00:00.000000Z".into()),
            run: Some(7),
        };
        let c = orders_clause(&scope).and("o.status = 'failed'");
        assert_eq!(
            c.sql(),
            " WHERE o.updated_at >= $1::timestamptz AND \
             o.id IN (SELECT order_id FROM ledger WHERE run_id = $2) AND o.status = 'failed'"
        );
        let only_run = Clause::new(
            &Scope {
                since: None,
                run: Some(3),
            },
            Some("started_at >= $?::timestamptz"),
            Some("id = $?"),
        );
        assert_eq!(only_run.sql(), " WHERE id = $1");
        assert_eq!(Clause::new(&Scope::default(), None, None).sql(), "");
    }
}
