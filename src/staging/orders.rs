//! Staged orders: writing chunks from ingest, claiming for submit, recording outcomes.
//!
//! Bulk writes bind one JSON array per chunk and expand it with `json_each`, so a chunk is a
//! handful of statements whatever its size (a statement per row is ~30× slower).

use super::prepare::{merge_into, PreparedChunk, PreparedOrder};
use super::{now_utc, to_db_time, SqliteStaging, StagingError};
use crate::channels::RejectedRow;
use crate::model::Order;
use crate::submit::target::{OrderOutcome, OrderResult, PlanError};
use serde_json::json;
use sqlx::Row;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct FileStart {
    pub sha256: String,
    pub path: String,
    pub channel: String,
    pub format: Option<String>,
    pub encoding: String,
    pub notes: Vec<String>,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FileRecord {
    pub id: i64,
    pub path: String,
    pub channel: String,
    pub status: String,
    pub ingested_at: String,
}

/// Per-file accounting written when a file is finished.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FileTotals {
    pub format: Option<String>,
    pub encoding: Option<String>,
    pub notes: Vec<String>,
    pub rows: u64,
    pub rows_staged: u64,
    pub rejected: u64,
    pub orders: u64,
    pub orders_new: u64,
    pub orders_updated: u64,
    pub orders_unchanged: u64,
}

/// What one chunk did to staging.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ChunkCounts {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Orders that had already succeeded (or failed) and go back to pending because their
    /// content changed.
    pub requeued: u64,
    pub rows_staged: u64,
    pub rejected: u64,
}

impl std::ops::AddAssign for ChunkCounts {
    fn add_assign(&mut self, o: Self) {
        self.new += o.new;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.requeued += o.requeued;
        self.rows_staged += o.rows_staged;
        self.rejected += o.rejected;
    }
}

/// An order claimed for sending.
#[derive(Debug, Clone)]
pub struct ClaimedOrder {
    pub id: i64,
    pub order: Order,
    pub attempts: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecordedOutcome {
    pub succeeded: u64,
    pub failed: u64,
    /// Outcomes not recorded because the claim was no longer ours.
    pub stale: u64,
}

/// New orders per multi-row INSERT: 13 bound values each, well under SQLite's 32,766.
const INSERT_ROWS: usize = 250;

/// `INSERT INTO staged_orders … VALUES (…), …` for `n` rows. Values are bound
/// directly (no JSON for SQLite to parse: the payload is most of the bytes).
fn insert_orders_sql(n: usize) -> String {
    let mut sql = String::with_capacity(300 + n * 64);
    sql.push_str(
        "INSERT INTO staged_orders (channel, external_id, status, content_hash, payload, currency, total, line_count,
           row_count, source_file_id, source_rows, order_created_at, staged_at, updated_at) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

const CHUNK_IN: usize = 500;

impl SqliteStaging {
    pub(super) async fn select_file(
        &self,
        sha256: &str,
    ) -> Result<Option<FileRecord>, StagingError> {
        let row = sqlx::query(
            "SELECT id, path, channel, status, ingested_at FROM source_files WHERE sha256 = ?",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| FileRecord {
            id: r.get("id"),
            path: r.get("path"),
            channel: r.get("channel"),
            status: r.get("status"),
            ingested_at: r.get("ingested_at"),
        }))
    }

    pub(super) async fn insert_file(
        &self,
        f: &FileStart,
        run_id: i64,
    ) -> Result<i64, StagingError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO source_files (sha256, path, channel, format, encoding, notes, size_bytes, status, run_id, ingested_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'reading', ?, ?) RETURNING id",
        )
        .bind(&f.sha256)
        .bind(&f.path)
        .bind(&f.channel)
        .bind(&f.format)
        .bind(&f.encoding)
        .bind(serde_json::to_string(&f.notes).unwrap_or_default())
        .bind(f.size_bytes as i64)
        .bind(run_id)
        .bind(now_utc())
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn update_file_end(
        &self,
        file_id: i64,
        t: &FileTotals,
        error: Option<(&str, &str)>,
    ) -> Result<(), StagingError> {
        sqlx::query(
            "UPDATE source_files SET status = ?, error_code = ?, error = ?, rows = ?, rows_staged = ?, rejected = ?,
               orders = ?, orders_new = ?, orders_updated = ?, orders_unchanged = ?,
               format = COALESCE(?, format), encoding = COALESCE(?, encoding), notes = ?
             WHERE id = ?",
        )
        .bind(if error.is_some() { "rejected" } else { "ingested" })
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .bind(t.rows as i64)
        .bind(t.rows_staged as i64)
        .bind(t.rejected as i64)
        .bind(t.orders as i64)
        .bind(t.orders_new as i64)
        .bind(t.orders_updated as i64)
        .bind(t.orders_unchanged as i64)
        .bind(&t.format)
        .bind(&t.encoding)
        .bind(serde_json::to_string(&t.notes).unwrap_or_default())
        .bind(file_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Write one chunk of a file: rejected rows, new orders, changed orders, in one transaction.
    pub(super) async fn write_chunk(
        &self,
        file_id: i64,
        run_id: i64,
        chunk: PreparedChunk,
        rejected: Vec<RejectedRow>,
    ) -> Result<ChunkCounts, StagingError> {
        let now = now_utc();
        let mut counts = ChunkCounts {
            rejected: rejected.len() as u64,
            rows_staged: chunk.rows_staged,
            ..Default::default()
        };
        let merged = chunk.orders;

        let mut tx = self.pool.begin().await?;
        // BEGIN IMMEDIATE semantics: take the write lock before the reads below. A deferred
        // transaction that reads first cannot upgrade once another connection (the lease
        // heartbeat) has committed meanwhile: SQLITE_BUSY_SNAPSHOT (517), which no busy
        // timeout resolves, and the whole ingest failed.
        sqlx::query("UPDATE lease SET name = name WHERE 0")
            .execute(&mut *tx)
            .await?;
        if !rejected.is_empty() {
            let rows: Vec<serde_json::Value> = rejected
                .iter()
                .map(|r| {
                    json!({"row": r.row_number, "column": r.column, "reason": r.reason_code,
                           "message": r.message, "raw": r.raw})
                })
                .collect();
            sqlx::query(
                "INSERT INTO rejected_rows (source_file_id, row_number, column_name, reason_code, message, raw, created_at)
                 SELECT ?, json_extract(value, '$.row'), json_extract(value, '$.column'), json_extract(value, '$.reason'),
                        json_extract(value, '$.message'), json_extract(value, '$.raw'), ?
                 FROM json_each(?)",
            )
            .bind(file_id)
            .bind(&now)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut *tx)
            .await?;
        }

        // Which of these orders exist already?
        // (channel, external_id) → (id, content hash, status, source file)
        type Existing = (i64, String, String, Option<i64>);
        let mut existing: HashMap<(String, String), Existing> = HashMap::new();
        let mut by_channel: HashMap<&str, Vec<&str>> = HashMap::new();
        for p in &merged {
            by_channel
                .entry(p.channel.as_str())
                .or_default()
                .push(p.external_id.as_str());
        }
        for (channel, ids) in by_channel {
            for part in ids.chunks(CHUNK_IN) {
                let rows = sqlx::query(
                    "SELECT id, external_id, content_hash, status, source_file_id FROM staged_orders
                     WHERE channel = ? AND external_id IN (SELECT value FROM json_each(?))",
                )
                .bind(channel)
                .bind(serde_json::to_string(part).unwrap_or_default())
                .fetch_all(&mut *tx)
                .await?;
                for r in rows {
                    existing.insert(
                        (channel.to_string(), r.get("external_id")),
                        (
                            r.get("id"),
                            r.get("content_hash"),
                            r.get("status"),
                            r.get("source_file_id"),
                        ),
                    );
                }
            }
        }

        let mut new_orders: Vec<PreparedOrder> = Vec::new();
        let mut buf = Vec::with_capacity(4096);
        for mut prepared in merged {
            let key = (prepared.channel.clone(), prepared.external_id.clone());
            match existing.get(&key) {
                None => {
                    new_orders.push(prepared);
                    counts.new += 1;
                }
                Some((id, old_hash, status, source_file)) => {
                    if *source_file == Some(file_id) {
                        // Same order key again later in the same file: merge its lines.
                        let payload: String =
                            sqlx::query_scalar("SELECT payload FROM staged_orders WHERE id = ?")
                                .bind(id)
                                .fetch_one(&mut *tx)
                                .await?;
                        let mut earlier: Order = serde_json::from_str(&payload)
                            .map_err(|source| StagingError::Payload { id: *id, source })?;
                        let later = prepared
                            .order()
                            .map_err(|source| StagingError::Payload { id: *id, source })?;
                        merge_into(&mut earlier, later);
                        prepared = PreparedOrder::new(earlier, &mut buf);
                    }
                    if prepared.has_hash(old_hash) {
                        counts.unchanged += 1;
                        continue;
                    }
                    let p = prepared;
                    let requeue = status == "succeeded" || status == "failed";
                    let to_status = if requeue { "pending" } else { status.as_str() };
                    sqlx::query(
                        "UPDATE staged_orders SET payload = ?, content_hash = ?, currency = ?, total = ?, line_count = ?,
                           row_count = ?, source_rows = ?, order_created_at = ?, source_file_id = ?, updated_at = ?,
                           status = ?, retryable = CASE WHEN ? THEN 0 ELSE retryable END,
                           attempts = CASE WHEN ? THEN 0 ELSE attempts END
                         WHERE id = ?",
                    )
                    .bind(p.payload)
                    .bind(p.hash)
                    .bind(p.currency)
                    .bind(p.total)
                    .bind(p.line_count)
                    .bind(p.row_count)
                    .bind(p.source_rows)
                    .bind(to_db_time(p.created_at))
                    .bind(file_id)
                    .bind(&now)
                    .bind(to_status)
                    .bind(requeue)
                    .bind(requeue)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if *source_file != Some(file_id) {
                        counts.updated += 1;
                    }
                    if requeue {
                        counts.requeued += 1;
                        sqlx::query(
                            "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message) VALUES (?, ?, ?, ?, 'pending', ?)",
                        )
                        .bind(id)
                        .bind(run_id)
                        .bind(&now)
                        .bind(status)
                        .bind(format!(
                            "content changed in file {file_id}; queued to be sent again as an update"
                        ))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }

        if !new_orders.is_empty() {
            // New rows get ids above the largest one so far (SQLite's rowid rule; this
            // transaction holds the write lock, so nobody else inserts meanwhile). The ledger
            // takes them from the table: no `RETURNING id`, which sqlx hands over one row at a
            // time (~10 µs each, more than the insert itself).
            let max_before: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM staged_orders")
                    .fetch_one(&mut *tx)
                    .await?;
            let inserted = new_orders.len() as u64;
            let mut rest = new_orders.into_iter().peekable();
            while rest.peek().is_some() {
                let part: Vec<PreparedOrder> = rest.by_ref().take(INSERT_ROWS).collect();
                let sql = insert_orders_sql(part.len());
                let mut insert = sqlx::query(&sql);
                for p in part {
                    insert = insert
                        .bind(p.channel)
                        .bind(p.external_id)
                        .bind(p.hash)
                        .bind(p.payload)
                        .bind(p.currency)
                        .bind(p.total)
                        .bind(p.line_count)
                        .bind(p.row_count)
                        .bind(file_id)
                        .bind(p.source_rows)
                        .bind(to_db_time(p.created_at))
                        .bind(now.clone())
                        .bind(now.clone());
                }
                insert.execute(&mut *tx).await?;
            }
            let staged = sqlx::query(
                "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message)
                 SELECT id, ?, ?, NULL, 'pending', ? FROM staged_orders WHERE id > ? ORDER BY id",
            )
            .bind(run_id)
            .bind(&now)
            .bind(format!("staged from file {file_id}"))
            .bind(max_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if staged != inserted {
                // Only if the largest rowid was ever taken (SQLite then picks free ids at
                // random): refuse rather than leave orders without their ledger event.
                return Err(StagingError::Db(sqlx::Error::Protocol(format!(
                    "staged {inserted} new orders but found {staged} above id {max_before}"
                ))));
            }
        }
        tx.commit().await?;
        Ok(counts)
    }

    pub(super) async fn requeue_dead_claims(
        &self,
        run_id: i64,
        token: &str,
    ) -> Result<u64, StagingError> {
        let now = now_utc();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, error_code, message)
             SELECT id, batch_id, ?, ?, 'in_flight', 'pending', 'recovered',
                    'recovered: the run that claimed it (' || COALESCE(claim_token, '?') || ') ended without recording an outcome; it will be sent again (upsert by key, no duplicate)'
             FROM staged_orders WHERE status = 'in_flight' AND COALESCE(claim_token, '') != ?",
        )
        .bind(run_id)
        .bind(&now)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query(
            "UPDATE staged_orders SET status = 'pending', claim_token = NULL, claim_expires_at = NULL, updated_at = ?
             WHERE status = 'in_flight' AND COALESCE(claim_token, '') != ?",
        )
        .bind(&now)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    pub(super) async fn claim(
        &self,
        run_id: i64,
        token: &str,
        limit: usize,
        max_attempts: u32,
        lease_secs: u64,
        only: Option<&[i64]>,
    ) -> Result<Vec<ClaimedOrder>, StagingError> {
        let now = now_utc();
        let only_json = only.map(|ids| serde_json::to_string(ids).unwrap_or_default());
        let expires = to_db_time(chrono::Utc::now() + chrono::Duration::seconds(lease_secs as i64));
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE staged_orders SET status = 'in_flight', claim_token = ?, claim_expires_at = ?, last_run_id = ?,
                    attempts = attempts + 1, updated_at = ?
             WHERE id IN (SELECT id FROM staged_orders
                          WHERE (status = 'pending'
                                 OR (status = 'failed' AND retryable = 1 AND attempts < ? AND COALESCE(last_run_id, -1) != ?))
                            AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))
                          ORDER BY id LIMIT ?)
             RETURNING id, payload, attempts, retryable",
        )
        .bind(token)
        .bind(&expires)
        .bind(run_id)
        .bind(&now)
        .bind(max_attempts as i64)
        .bind(run_id)
        .bind(&only_json)
        .bind(&only_json)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get("id");
            let payload: String = r.get("payload");
            let order: Order = serde_json::from_str(&payload)
                .map_err(|source| StagingError::Payload { id, source })?;
            // retryable = 1 means it came from `failed`; pending orders carry 0.
            let from = if r.get::<i64, _>("retryable") == 1 {
                "failed"
            } else {
                "pending"
            };
            let attempts: i64 = r.get("attempts");
            events.push(json!({"id": id, "from": from, "attempt": attempts}));
            claimed.push(ClaimedOrder {
                id,
                order,
                attempts,
            });
        }
        if !events.is_empty() {
            sqlx::query(
                "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message)
                 SELECT json_extract(value, '$.id'), ?, ?, json_extract(value, '$.from'), 'in_flight',
                        'claimed for attempt ' || json_extract(value, '$.attempt')
                 FROM json_each(?)",
            )
            .bind(run_id)
            .bind(&now)
            .bind(serde_json::Value::Array(events).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    pub(super) async fn peek(
        &self,
        limit: usize,
        max_attempts: u32,
    ) -> Result<Vec<ClaimedOrder>, StagingError> {
        let rows = sqlx::query(
            "SELECT id, payload, attempts FROM staged_orders
             WHERE status = 'pending' OR (status = 'failed' AND retryable = 1 AND attempts < ?)
             ORDER BY id LIMIT ?",
        )
        .bind(max_attempts as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let id: i64 = r.get("id");
                let payload: String = r.get("payload");
                let order = serde_json::from_str(&payload)
                    .map_err(|source| StagingError::Payload { id, source })?;
                Ok(ClaimedOrder {
                    id,
                    order,
                    attempts: r.get("attempts"),
                })
            })
            .collect()
    }

    pub(super) async fn requeue(
        &self,
        run_id: i64,
        order_ids: &[i64],
        reason: &str,
    ) -> Result<u64, StagingError> {
        let now = now_utc();
        let ids = serde_json::to_string(order_ids).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, error_code, message)
             SELECT id, batch_id, ?, ?, status, 'pending', 'rerun', ? FROM staged_orders
             WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('failed', 'succeeded', 'pending')",
        )
        .bind(run_id)
        .bind(&now)
        .bind(reason)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query(
            "UPDATE staged_orders SET status = 'pending', attempts = 0, retryable = 0, updated_at = ?
             WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('failed', 'succeeded', 'pending')",
        )
        .bind(&now)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    pub(super) async fn insert_batch(
        &self,
        run_id: i64,
        order_ids: &[i64],
        operations: usize,
        parent: Option<i64>,
    ) -> Result<i64, StagingError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO batches (run_id, parent_batch_id, status, orders, operations, created_at)
             VALUES (?, ?, 'sending', ?, ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(parent)
        .bind(order_ids.len() as i64)
        .bind(operations as i64)
        .bind(now_utc())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE staged_orders SET batch_id = ?
             WHERE id IN (SELECT value FROM json_each(?)) AND status = 'in_flight' AND last_run_id = ?",
        )
        .bind(id)
        .bind(serde_json::to_string(order_ids).unwrap_or_default())
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn write_outcomes(
        &self,
        run_id: i64,
        batch_id: Option<i64>,
        token: &str,
        outcomes: &[OrderOutcome],
    ) -> Result<RecordedOutcome, StagingError> {
        let now = now_utc();
        let items: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| match &o.result {
                OrderResult::Succeeded { dynamics_ref } => json!({
                    "id": o.order_id, "status": "succeeded", "retryable": 0, "http": null,
                    "code": null, "message": null, "ref": dynamics_ref }),
                OrderResult::Failed {
                    retryable,
                    http_status,
                    code,
                    message,
                } => json!({
                    "id": o.order_id, "status": "failed", "retryable": *retryable as i64,
                    "http": http_status, "code": code, "message": message, "ref": null }),
            })
            .collect();
        let items = serde_json::Value::Array(items).to_string();
        // The outcomes as a small materialized table: the joins below then look orders up by
        // primary key instead of parsing the JSON once per staged order.
        const OUTCOMES: &str = "WITH j AS MATERIALIZED (
               SELECT CAST(json_extract(value, '$.id') AS INTEGER) AS id,
                      json_extract(value, '$.status') AS status, json_extract(value, '$.retryable') AS retryable,
                      json_extract(value, '$.http') AS http, json_extract(value, '$.code') AS code,
                      json_extract(value, '$.message') AS message, json_extract(value, '$.ref') AS ref
               FROM json_each(?))";
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "{OUTCOMES}
             INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, http_status, error_code, message)
             SELECT o.id, ?, ?, ?, 'in_flight', j.status, j.http, j.code,
                    COALESCE(j.message, 'stored in Dynamics as ' || j.ref)
             FROM j CROSS JOIN staged_orders AS o ON o.id = j.id
             WHERE o.status = 'in_flight' AND o.claim_token = ? AND o.claim_expires_at >= ?"
        ))
        .bind(&items)
        .bind(batch_id)
        .bind(run_id)
        .bind(&now)
        .bind(token)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query(&format!(
            "{OUTCOMES}
             UPDATE staged_orders SET
                    status = (SELECT status FROM j WHERE j.id = staged_orders.id),
                    retryable = (SELECT retryable FROM j WHERE j.id = staged_orders.id),
                    last_error_code = (SELECT code FROM j WHERE j.id = staged_orders.id),
                    last_error_message = (SELECT message FROM j WHERE j.id = staged_orders.id),
                    last_http_status = (SELECT http FROM j WHERE j.id = staged_orders.id),
                    dynamics_ref = COALESCE((SELECT ref FROM j WHERE j.id = staged_orders.id), dynamics_ref),
                    batch_id = COALESCE(?, batch_id), claim_token = NULL, claim_expires_at = NULL, updated_at = ?
             WHERE id IN (SELECT id FROM j) AND status = 'in_flight' AND claim_token = ?
               AND claim_expires_at >= ?
             RETURNING status"
        ))
        .bind(&items)
        .bind(batch_id)
        .bind(&now)
        .bind(token)
        .bind(&now)
        .fetch_all(&mut *tx)
        .await?;
        let mut rec = RecordedOutcome::default();
        for r in &updated {
            if r.get::<String, _>(0) == "succeeded" {
                rec.succeeded += 1;
            } else {
                rec.failed += 1;
            }
        }
        rec.stale = outcomes.len() as u64 - updated.len() as u64;
        if let Some(b) = batch_id {
            sqlx::query(
                "UPDATE batches SET succeeded = succeeded + ?, failed = failed + ?, finished_at = ?,
                   status = CASE WHEN failed + ? = 0 THEN 'succeeded'
                                 WHEN succeeded + ? = 0 THEN 'failed' ELSE 'partially_failed' END
                 WHERE id = ?",
            )
            .bind(rec.succeeded as i64)
            .bind(rec.failed as i64)
            .bind(&now)
            .bind(rec.failed as i64)
            .bind(rec.succeeded as i64)
            .bind(b)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(rec)
    }

    pub(super) async fn unclaim(
        &self,
        run_id: i64,
        token: &str,
        order_ids: &[i64],
        reason: &str,
    ) -> Result<(), StagingError> {
        let now = now_utc();
        let ids = serde_json::to_string(order_ids).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, message)
             SELECT id, batch_id, ?, ?, 'in_flight', 'pending', ? FROM staged_orders
             WHERE id IN (SELECT value FROM json_each(?)) AND status = 'in_flight' AND claim_token = ?",
        )
        .bind(run_id)
        .bind(&now)
        .bind(reason)
        .bind(&ids)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE staged_orders SET status = 'pending', attempts = MAX(attempts - 1, 0), claim_token = NULL,
                    claim_expires_at = NULL, updated_at = ?
             WHERE id IN (SELECT value FROM json_each(?)) AND status = 'in_flight' AND claim_token = ?",
        )
        .bind(&now)
        .bind(&ids)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn mark_unplannable(
        &self,
        run_id: i64,
        token: &str,
        order_id: i64,
        error: &PlanError,
    ) -> Result<(), StagingError> {
        self.write_outcomes(
            run_id,
            None,
            token,
            &[OrderOutcome {
                order_id,
                result: OrderResult::Failed {
                    retryable: false,
                    http_status: None,
                    code: error.code.clone(),
                    message: error.message.clone(),
                },
            }],
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn reconcile(&self) -> Result<super::Reconciliation, StagingError> {
        let files = sqlx::query(
            "SELECT COALESCE(SUM(rows), 0) AS r, COALESCE(SUM(rows_staged), 0) AS s, COALESCE(SUM(rejected), 0) AS j
             FROM source_files WHERE status != 'reading'",
        )
        .fetch_one(&self.pool)
        .await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM rejected_rows r JOIN source_files f ON f.id = r.source_file_id WHERE f.status != 'reading'",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut rec = super::Reconciliation {
            rows_read: files.get("r"),
            rows_staged: files.get("s"),
            rows_rejected: files.get("j"),
            rejected_rows_stored: stored,
            ..Default::default()
        };
        for r in sqlx::query("SELECT status, COUNT(*) AS n FROM staged_orders GROUP BY status")
            .fetch_all(&self.pool)
            .await?
        {
            rec.add_orders(&r.get::<String, _>("status"), r.get("n"));
        }
        Ok(rec.compute())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_has_one_placeholder_per_bound_value() {
        let sql = insert_orders_sql(3);
        assert_eq!(sql.matches('?').count(), 3 * 13);
    }
}
