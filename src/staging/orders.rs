//! Staged orders: writing chunks from ingest, claiming for submit, recording outcomes.
//!
//! Bulk writes are multi-row statements (values bound one by one for orders and outcomes, a
//! JSON list expanded with `json_each` for rejected rows), never a statement per row (~30×
//! slower): a chunk or a batch is a handful of statements whatever its size.

use super::changed;
use super::parts::{self, ReadMemory, Relation};
use super::prepare::{PreparedChunk, PreparedOrder};
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
    /// Orders an earlier chunk of the same read counted as unchanged that a later part of
    /// them changed: counted in `updated` here, to be taken off `unchanged`.
    pub restated: u64,
    /// Orders that had already succeeded (or failed) and go back to pending because their
    /// content changed.
    pub requeued: u64,
    /// Orders this file staged from some rows and whose other rows it rejected: marked
    /// `failed` (`order_incomplete`) rather than sent without lines.
    pub held_back: u64,
    /// Orders found unchanged whose stored copy came from another file still `reading` (an
    /// interrupted read): they now count as this file's (see [`parts::NOT_FROM_A_FILE_BEING_READ`]),
    /// so they are sent once this file's read ends, not held until that file is read again.
    pub adopted: u64,
    pub rows_staged: u64,
    pub rejected: u64,
}

impl ChunkCounts {
    /// Count an order whose stored copy was updated. `continued`: `None` when this part
    /// replaced it; `Some(false)` when it merged into an earlier part of this read (that part
    /// counted the order); `Some(true)` when that earlier part was counted unchanged, from
    /// another file's copy — the order changed after all.
    pub(super) fn count_update(&mut self, continued: Option<bool>) {
        match continued {
            Some(false) => {}
            Some(true) => {
                self.updated += 1;
                self.restated += 1;
            }
            None => self.updated += 1,
        }
    }
}

impl std::ops::AddAssign for ChunkCounts {
    fn add_assign(&mut self, o: Self) {
        self.new += o.new;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.restated += o.restated;
        self.requeued += o.requeued;
        self.held_back += o.held_back;
        self.adopted += o.adopted;
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
    /// The most lines an earlier version of the order had since it last succeeded (0: none):
    /// lines above the order's own count up to this one may still be in Dynamics.
    pub earlier_lines: u32,
}

/// The `earlier_lines` column of a claimed row (NULL: none).
pub(crate) fn earlier_lines(column: Option<i64>) -> u32 {
    column.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
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

/// `INSERT INTO staged_orders … VALUES (…), … ON CONFLICT (channel, external_id) DO NOTHING`
/// for `n` rows. Values are bound directly (no JSON for SQLite to parse: the payload is most
/// of the bytes).
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
    sql.push_str(" ON CONFLICT (channel, external_id) DO NOTHING");
    sql
}

const CHUNK_IN: usize = 500;

/// A new `sending` batch row of `orders` orders; its id.
pub(super) async fn insert_batch_row(
    conn: &mut sqlx::SqliteConnection,
    run_id: i64,
    parent: Option<i64>,
    orders: usize,
    operations: usize,
    now: &str,
) -> Result<i64, StagingError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO batches (run_id, parent_batch_id, status, orders, operations, created_at)
         VALUES (?, ?, 'sending', ?, ?, ?) RETURNING id",
    )
    .bind(run_id)
    .bind(parent)
    .bind(orders as i64)
    .bind(operations as i64)
    .bind(now)
    .fetch_one(conn)
    .await?)
}

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

    pub(super) async fn take_over_file(
        &self,
        file_id: i64,
        f: &FileStart,
        run_id: i64,
    ) -> Result<bool, StagingError> {
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
        let taken = sqlx::query(
            "UPDATE source_files SET run_id = ?, path = ?, format = ?, encoding = ?, notes = ?, ingested_at = ?
             WHERE id = ? AND status = 'reading'",
        )
        .bind(run_id)
        .bind(&f.path)
        .bind(&f.format)
        .bind(&f.encoding)
        .bind(serde_json::to_string(&f.notes).unwrap_or_default())
        .bind(now_utc())
        .bind(file_id)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM rejected_rows WHERE source_file_id = ?")
            .bind(file_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn update_file_end(
        &self,
        file_id: i64,
        run_id: i64,
        t: &FileTotals,
        error: Option<(&str, &str)>,
    ) -> Result<(), StagingError> {
        // This commit is the file's last word before the file leaves the inbox (archive):
        // make it, and the log frames of the chunks before it, durable. Under `synchronous =
        // NORMAL` a WAL commit is not synced, so a power loss after the archive could roll the
        // whole file back while the file itself is gone from the inbox; `FULL` syncs the log
        // at this one commit (every earlier frame with it). Ingest pays one sync per file.
        let mut writer = self.writer().await?;
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut **writer)
            .await?;
        let ended = self
            .end_file_row(&mut writer, file_id, run_id, t, error)
            .await;
        let normal = sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut **writer)
            .await;
        let ended = ended?;
        normal?;
        if ended == 0 {
            return Err(StagingError::FileTakenOver { file_id, run_id });
        }
        Ok(())
    }

    /// The file row's end (`finish_file`); rows updated (0: not this run's any more).
    async fn end_file_row(
        &self,
        conn: &mut sqlx::SqliteConnection,
        file_id: i64,
        run_id: i64,
        t: &FileTotals,
        error: Option<(&str, &str)>,
    ) -> Result<u64, StagingError> {
        let ended = sqlx::query(
            "UPDATE source_files SET status = ?, error_code = ?, error = ?, rows = ?, rows_staged = ?, rejected = ?,
               orders = ?, orders_new = ?, orders_updated = ?, orders_unchanged = ?,
               format = COALESCE(?, format), encoding = COALESCE(?, encoding), notes = ?
             WHERE id = ? AND run_id = ? AND status = 'reading'",
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
        .bind(run_id)
        .execute(conn)
        .await?;
        Ok(ended.rows_affected())
    }

    /// Write one chunk of a file: rejected rows, new orders, changed orders, in one transaction.
    pub(super) async fn write_chunk(
        &self,
        file_id: i64,
        run_id: i64,
        chunk: PreparedChunk,
        rejected: Vec<RejectedRow>,
        read: &mut ReadMemory,
    ) -> Result<ChunkCounts, StagingError> {
        let now = now_utc();
        let mut counts = ChunkCounts {
            rejected: rejected.len() as u64,
            rows_staged: chunk.rows_staged,
            ..Default::default()
        };
        let merged = chunk.orders;
        let held_back = parts::held_back(file_id, &rejected);

        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
        // BEGIN IMMEDIATE semantics: take the write lock before the reads below. A deferred
        // transaction that reads first cannot upgrade once another connection (the lease
        // heartbeat) has committed meanwhile: SQLITE_BUSY_SNAPSHOT (517), which no busy
        // timeout resolves, and the whole ingest failed.
        sqlx::query("UPDATE lease SET name = name WHERE 0")
            .execute(&mut *tx)
            .await?;
        // Still this run's file (a run that lost its lease writes nothing more of it).
        let ours: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM source_files WHERE id = ? AND run_id = ? AND status = 'reading'",
        )
        .bind(file_id)
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?;
        if ours.is_none() {
            return Err(StagingError::FileTakenOver { file_id, run_id });
        }
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

        // New rows get ids above the largest one so far (SQLite's rowid rule; this
        // transaction holds the write lock, so nobody else inserts meanwhile). The ledger
        // takes them from the table: no `RETURNING id`, which sqlx hands over one row at a
        // time (~10 µs each, more than the insert itself).
        let max_before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM staged_orders")
            .fetch_one(&mut *tx)
            .await?;

        // Insert them all; a key that is already staged is left alone here (only that
        // conflict: any other constraint still fails the chunk) and compared below. A file of
        // new orders — the usual case — then costs one index probe per order, not two.
        let mut inserted = 0u64;
        for part in merged.chunks(INSERT_ROWS) {
            let sql = insert_orders_sql(part.len());
            let mut insert = sqlx::query(&sql);
            for p in part {
                insert = insert
                    .bind(p.channel.as_str())
                    .bind(p.external_id.as_str())
                    .bind(p.hash.as_str())
                    .bind(p.payload.as_str())
                    .bind(p.currency.as_str())
                    .bind(p.total.as_deref())
                    .bind(p.line_count)
                    .bind(p.row_count)
                    .bind(file_id)
                    .bind(p.source_rows.as_str())
                    .bind(to_db_time(p.created_at))
                    .bind(now.as_str())
                    .bind(now.as_str());
            }
            inserted += insert.execute(&mut *tx).await?.rows_affected();
        }
        counts.new = inserted;

        if inserted < merged.len() as u64 {
            let not_staged_before = self
                .compare_staged(
                    &mut tx,
                    file_id,
                    run_id,
                    &now,
                    max_before,
                    merged,
                    &mut counts,
                    read,
                )
                .await?;
            if not_staged_before != inserted {
                // Keys are unique within a chunk, so each order was either inserted or found.
                return Err(StagingError::Accounting {
                    file_id,
                    detail: format!(
                        "inserted {inserted} new orders but {not_staged_before} were not staged before"
                    ),
                });
            }
        }

        if inserted > 0 {
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
                return Err(StagingError::Accounting {
                    file_id,
                    detail: format!(
                        "staged {inserted} new orders but found {staged} above id {max_before}"
                    ),
                });
            }
        }
        counts.held_back = self
            .hold_back(&mut tx, file_id, run_id, &now, &held_back)
            .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Mark the orders of `held` (key, message) `failed` (`order_incomplete`) where this file
    /// staged them and they are not held back already: see [`parts::held_back`]. An order in
    /// flight loses its claim, so the sender's outcome is ignored. How many were.
    async fn hold_back(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        file_id: i64,
        run_id: i64,
        now: &str,
        held: &[(String, String)],
    ) -> Result<u64, StagingError> {
        if held.is_empty() {
            return Ok(0);
        }
        const HELD: &str =
            "SELECT json_extract(value, '$[0]') AS key, json_extract(value, '$[1]') AS message
             FROM json_each(?2)";
        const ORDER: &str = "channel = (SELECT channel FROM source_files WHERE id = ?1)
             AND source_file_id = ?1
             AND NOT (status = 'failed' AND COALESCE(last_error_code, '') = 'order_incomplete')";
        let list = serde_json::to_string(held).unwrap_or_default();
        sqlx::query(&format!(
            "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, error_code, message)
             SELECT o.id, ?3, ?4, o.status, 'failed', 'order_incomplete', h.message
             FROM staged_orders o JOIN ({HELD}) h ON o.external_id = h.key WHERE {ORDER}
             ORDER BY o.id"
        ))
        .bind(file_id)
        .bind(&list)
        .bind(run_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let updated = sqlx::query(&format!(
            "UPDATE staged_orders SET status = 'failed', retryable = 0, last_error_code = 'order_incomplete',
               last_error_message = (SELECT h.message FROM ({HELD}) h WHERE h.key = staged_orders.external_id),
               last_http_status = NULL, claim_token = NULL, claim_expires_at = NULL, updated_at = ?3
             WHERE external_id IN (SELECT key FROM ({HELD})) AND {ORDER}"
        ))
        .bind(file_id)
        .bind(&list)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(updated.rows_affected())
    }

    /// The orders of a chunk that were not inserted because their key was already staged:
    /// unchanged ones are counted, changed ones get the new payload (and go back to `pending`
    /// if they had been sent), lines of a key seen again in the same read are merged
    /// ([`parts::relate`]).
    #[allow(clippy::too_many_arguments)]
    async fn compare_staged(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        file_id: i64,
        run_id: i64,
        now: &str,
        max_before: i64,
        merged: Vec<PreparedOrder>,
        counts: &mut ChunkCounts,
        read: &mut ReadMemory,
    ) -> Result<u64, StagingError> {
        // Which of these orders were staged before this chunk?
        // (channel, external_id) → (id, content hash, status, its records when this file
        // staged it)
        // (…, the other file still being read that its copy came from)
        type Existing = (i64, String, String, Option<String>, Option<i64>);
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
                    "SELECT id, external_id, content_hash, status,
                            CASE WHEN source_file_id = ?1 THEN source_rows END AS same_file_rows,
                            CASE WHEN source_file_id != ?1 AND source_file_id IN
                                      (SELECT id FROM source_files WHERE status = 'reading')
                                 THEN source_file_id END AS adopt_from
                     FROM staged_orders
                     WHERE channel = ?2 AND external_id IN (SELECT value FROM json_each(?3)) AND id <= ?4",
                )
                .bind(file_id)
                .bind(channel)
                .bind(serde_json::to_string(part).unwrap_or_default())
                .bind(max_before)
                .fetch_all(&mut **tx)
                .await?;
                for r in rows {
                    existing.insert(
                        (channel.to_string(), r.get("external_id")),
                        (
                            r.get("id"),
                            r.get("content_hash"),
                            r.get("status"),
                            r.get("same_file_rows"),
                            r.get("adopt_from"),
                        ),
                    );
                }
            }
        }

        let mut not_staged_before = 0u64;
        let mut buf = Vec::with_capacity(4096);
        for mut prepared in merged {
            let key = (prepared.channel.clone(), prepared.external_id.clone());
            match existing.get(&key) {
                // Inserted by the caller.
                None => not_staged_before += 1,
                Some((id, old_hash, status, same_file_rows, adopt_from)) => {
                    let continued =
                        match parts::relate(&prepared, *id, same_file_rows.as_deref(), read) {
                            Relation::AlreadyStored { first } => {
                                counts.unchanged += u64::from(first);
                                continue;
                            }
                            Relation::Continues { earlier_rows } => {
                                // An earlier part of this read came before it: merge its lines.
                                let payload: String = sqlx::query_scalar(
                                    "SELECT payload FROM staged_orders WHERE id = ?",
                                )
                                .bind(id)
                                .fetch_one(&mut **tx)
                                .await?;
                                let restated = earlier_rows.is_some();
                                prepared = parts::continue_stored(
                                    &payload,
                                    same_file_rows.as_deref(),
                                    *id,
                                    &prepared,
                                    earlier_rows,
                                    &mut buf,
                                )?;
                                Some(restated)
                            }
                            Relation::Compare => None,
                        };
                    if prepared.has_hash(old_hash) {
                        if let Some(from) = adopt_from {
                            // The same content, from a file that is read to its end.
                            sqlx::query(
                                "UPDATE staged_orders SET payload = ?, source_file_id = ?, source_rows = ?,
                                   row_count = ?, updated_at = ? WHERE id = ?",
                            )
                            .bind(&prepared.payload)
                            .bind(file_id)
                            .bind(&prepared.source_rows)
                            .bind(prepared.row_count)
                            .bind(now)
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                            counts.adopted += 1;
                            read.adopted_from(*from);
                        } else if same_file_rows.is_none() {
                            read.remember_unchanged(*id, &prepared);
                        }
                        counts.unchanged += 1;
                        continue;
                    }
                    let p = prepared;
                    let requeue = changed::requeues(status);
                    let to_status = if requeue { "pending" } else { status.as_str() };
                    let updated = sqlx::query(
                        "UPDATE staged_orders SET payload = ?, content_hash = ?, currency = ?, total = ?, line_count = ?,
                           row_count = ?, source_rows = ?, order_created_at = ?, source_file_id = ?, updated_at = ?,
                           earlier_lines = MAX(COALESCE(earlier_lines, 0), line_count),
                           status = ?, retryable = CASE WHEN ? THEN 0 ELSE retryable END,
                           attempts = CASE WHEN ? THEN 0 ELSE attempts END,
                           claim_token = CASE WHEN ? THEN NULL ELSE claim_token END,
                           claim_expires_at = CASE WHEN ? THEN NULL ELSE claim_expires_at END
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
                    .bind(now)
                    .bind(to_status)
                    .bind(requeue)
                    .bind(requeue)
                    .bind(requeue)
                    .bind(requeue)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                    changed::check_updated(updated.rows_affected(), file_id, &key)?;
                    counts.count_update(continued);
                    if requeue {
                        counts.requeued += 1;
                        if status == "succeeded" {
                            read.requeued_after_success(*id);
                        }
                        sqlx::query(
                            "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message) VALUES (?, ?, ?, ?, 'pending', ?)",
                        )
                        .bind(id)
                        .bind(run_id)
                        .bind(now)
                        .bind(status)
                        .bind(changed::requeue_message(file_id, status))
                        .execute(&mut **tx)
                        .await?;
                    }
                }
            }
        }

        Ok(not_staged_before)
    }

    pub(super) async fn requeue_dead_claims(
        &self,
        run_id: i64,
        token: &str,
    ) -> Result<u64, StagingError> {
        let now = now_utc();
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
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
        // This run holds the lease, so a batch of another run still `sending` was cut off by
        // its run's death: it will never record its end. Its orders went back to pending above.
        sqlx::query(
            "UPDATE batches SET status = 'abandoned', finished_at = ? WHERE status = 'sending' AND run_id != ?",
        )
        .bind(&now)
        .bind(run_id)
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
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
        // Without a list: the first `limit` ids of each status in the status index (which
        // keeps them in id order), merged. The same set as one `ORDER BY id LIMIT` over
        // `pending OR failed`, which SQLite sorted in full (every pending order) each claim.
        let ready = parts::NOT_FROM_A_FILE_BEING_READ;
        let claimable = if only_json.is_some() {
            format!(
                "SELECT id FROM staged_orders
                 WHERE (status = 'pending'
                        OR (status = 'failed' AND retryable = 1 AND attempts < ?5 AND COALESCE(last_run_id, -1) != ?3))
                   AND id IN (SELECT value FROM json_each(?6)) AND {ready}
                 ORDER BY id LIMIT ?7"
            )
        } else {
            format!(
                "SELECT id FROM (
                   SELECT id FROM (SELECT id FROM staged_orders WHERE status = 'pending' AND {ready}
                                   ORDER BY id LIMIT ?7)
                   UNION ALL
                   SELECT id FROM (SELECT id FROM staged_orders
                                   WHERE status = 'failed' AND retryable = 1 AND attempts < ?5
                                     AND COALESCE(last_run_id, -1) != ?3 AND ?6 IS NULL AND {ready}
                                   ORDER BY id LIMIT ?7))
                 ORDER BY id LIMIT ?7"
            )
        };
        let rows = sqlx::query(&format!(
            "UPDATE staged_orders SET status = 'in_flight', claim_token = ?1, claim_expires_at = ?2, last_run_id = ?3,
                    attempts = attempts + 1, updated_at = ?4,
                    batch_id = NULL -- no batch until one starts with it (`live_claims`)
             WHERE id IN ({claimable})
             RETURNING id, payload, attempts, retryable, earlier_lines"
        ))
        .bind(token)
        .bind(&expires)
        .bind(run_id)
        .bind(&now)
        .bind(max_attempts as i64)
        .bind(&only_json)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        // (id, from status, message) of each claim's ledger event.
        let mut events: Vec<(i64, &str, String)> = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get("id");
            let payload: &str = r.get("payload");
            let order: Order = serde_json::from_str(payload)
                .map_err(|source| StagingError::Payload { id, source })?;
            // retryable = 1 means it came from `failed`; pending orders carry 0.
            let from = if r.get::<i64, _>("retryable") == 1 {
                "failed"
            } else {
                "pending"
            };
            let attempts: i64 = r.get("attempts");
            events.push((id, from, format!("claimed for attempt {attempts}")));
            claimed.push(ClaimedOrder {
                id,
                order,
                attempts,
                earlier_lines: earlier_lines(r.get("earlier_lines")),
            });
        }
        // Bound value by value, in parts well under SQLite's limit on bound values.
        for part in events.chunks(2000) {
            let mut sql = String::with_capacity(120 + part.len() * 32);
            sql.push_str(
                "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message) VALUES ",
            );
            for i in 0..part.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, 'in_flight', ?)");
            }
            // Anonymous placeholders: sqlx looks every numbered one up by name (quadratic).
            let mut insert = sqlx::query(&sql);
            for (id, from, message) in part {
                insert = insert
                    .bind(*id)
                    .bind(run_id)
                    .bind(&now)
                    .bind(*from)
                    .bind(message.as_str());
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    pub(super) async fn peek(
        &self,
        limit: usize,
        max_attempts: u32,
    ) -> Result<Vec<ClaimedOrder>, StagingError> {
        let rows = sqlx::query(&format!(
            "SELECT id, payload, attempts, earlier_lines FROM staged_orders
             WHERE (status = 'pending' OR (status = 'failed' AND retryable = 1 AND attempts < ?))
               AND {}
             ORDER BY id LIMIT ?",
            parts::NOT_FROM_A_FILE_BEING_READ
        ))
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
                    earlier_lines: earlier_lines(r.get("earlier_lines")),
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
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
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

    pub(super) async fn write_outcomes(
        &self,
        run_id: i64,
        batch_id: Option<i64>,
        token: &str,
        outcomes: &[OrderOutcome],
    ) -> Result<RecordedOutcome, StagingError> {
        let now = now_utc();
        let mut rec = RecordedOutcome::default();
        if outcomes.is_empty() {
            return self.finish_batch(batch_id, rec, &now).await;
        }
        // The outcomes are bound value by value as a small VALUES table (no JSON to parse);
        // orders are looked up by primary key. Only orders still claimed under `token` with a
        // live claim are updated; the ledger gets one event for each of them.
        // Anonymous placeholders throughout: sqlx looks every numbered one up by name, which
        // is quadratic in their number.
        let mut sql = String::with_capacity(600 + outcomes.len() * 40);
        sql.push_str("WITH j(id, status, retryable, http, code, message, ref) AS (VALUES ");
        for i in 0..outcomes.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?)");
        }
        sql.push_str(
            ")
             UPDATE staged_orders SET status = j.status, retryable = j.retryable, last_error_code = j.code,
                    last_error_message = j.message, last_http_status = j.http,
                    dynamics_ref = COALESCE(j.ref, staged_orders.dynamics_ref),
                    earlier_lines = CASE WHEN j.status = 'succeeded' THEN NULL ELSE staged_orders.earlier_lines END,
                    sent_hash = CASE WHEN j.status = 'succeeded' THEN staged_orders.content_hash ELSE staged_orders.sent_hash END,
                    batch_id = COALESCE(?, staged_orders.batch_id), claim_token = NULL, claim_expires_at = NULL,
                    updated_at = ?
             FROM j
             WHERE staged_orders.id = j.id AND staged_orders.status = 'in_flight'
               AND staged_orders.claim_token = ? AND staged_orders.claim_expires_at >= ?
               AND (? IS NULL OR staged_orders.batch_id = ?)
             RETURNING staged_orders.id",
        );
        let mut update = sqlx::query_scalar::<_, i64>(&sql);
        for o in outcomes {
            update = match &o.result {
                OrderResult::Succeeded { dynamics_ref } => update
                    .bind(o.order_id)
                    .bind("succeeded")
                    .bind(0i64)
                    .bind(None::<i64>)
                    .bind(None::<&str>)
                    .bind(None::<&str>)
                    .bind(dynamics_ref.as_str()),
                OrderResult::Failed {
                    retryable,
                    http_status,
                    code,
                    message,
                } => update
                    .bind(o.order_id)
                    .bind("failed")
                    .bind(*retryable as i64)
                    .bind(http_status.map(i64::from))
                    .bind(code.as_str())
                    .bind(message.as_str())
                    .bind(None::<&str>),
            };
        }
        let update = update
            .bind(batch_id)
            .bind(&now)
            .bind(token)
            .bind(&now)
            .bind(batch_id)
            .bind(batch_id);
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
        let updated: std::collections::HashSet<i64> =
            update.fetch_all(&mut *tx).await?.into_iter().collect();
        // One ledger event per recorded outcome, in the outcomes' order.
        let recorded: Vec<&OrderOutcome> = outcomes
            .iter()
            .filter(|o| updated.contains(&o.order_id))
            .collect();
        if !recorded.is_empty() {
            let mut sql = String::with_capacity(200 + recorded.len() * 40);
            sql.push_str(
                "INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, http_status, error_code, message) VALUES ",
            );
            for i in 0..recorded.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, 'in_flight', ?, ?, ?, ?)");
            }
            let mut insert = sqlx::query(&sql);
            for o in &recorded {
                let row = insert
                    .bind(o.order_id)
                    .bind(batch_id)
                    .bind(run_id)
                    .bind(&now);
                insert = match &o.result {
                    OrderResult::Succeeded { dynamics_ref } => row
                        .bind("succeeded")
                        .bind(None::<i64>)
                        .bind(None::<&str>)
                        .bind(format!("stored in Dynamics as {dynamics_ref}")),
                    OrderResult::Failed {
                        http_status,
                        code,
                        message,
                        ..
                    } => row
                        .bind("failed")
                        .bind(http_status.map(i64::from))
                        .bind(code.as_str())
                        .bind(message.as_str()),
                };
            }
            insert.execute(&mut *tx).await?;
        }
        for o in &recorded {
            match o.result {
                OrderResult::Succeeded { .. } => rec.succeeded += 1,
                OrderResult::Failed { .. } => rec.failed += 1,
            }
        }
        rec.stale = outcomes.len() as u64 - recorded.len() as u64;
        Self::update_batch_counts(&mut tx, batch_id, rec, &now).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// A batch with no outcome to record: only its row is finished.
    async fn finish_batch(
        &self,
        batch_id: Option<i64>,
        rec: RecordedOutcome,
        now: &str,
    ) -> Result<RecordedOutcome, StagingError> {
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
        Self::update_batch_counts(&mut tx, batch_id, rec, now).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn update_batch_counts(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        batch_id: Option<i64>,
        rec: RecordedOutcome,
        now: &str,
    ) -> Result<(), StagingError> {
        if let Some(b) = batch_id {
            sqlx::query(
                "UPDATE batches SET succeeded = succeeded + ?, failed = failed + ?, finished_at = ?,
                   status = CASE WHEN failed + ? = 0 THEN 'succeeded'
                                 WHEN succeeded + ? = 0 THEN 'failed' ELSE 'partially_failed' END
                 WHERE id = ?",
            )
            .bind(rec.succeeded as i64)
            .bind(rec.failed as i64)
            .bind(now)
            .bind(rec.failed as i64)
            .bind(rec.succeeded as i64)
            .bind(b)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
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
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
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
