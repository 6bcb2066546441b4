//! PostgreSQL: staging chunks, claiming with `FOR UPDATE SKIP LOCKED`, outcomes recorded only
//! under a live claim, heartbeats and the sweep of expired claims. Lists travel as arrays
//! (`unnest`, `= ANY`), so a chunk or a batch is a handful of statements whatever its size.

use super::PgStaging;
use crate::channels::RejectedRow;
use crate::staging::changed;
use crate::staging::parts::{self, ReadMemory, Relation};
use crate::staging::prepare::{PreparedChunk, PreparedOrder};
use crate::staging::{
    ChunkCounts, ClaimedOrder, ForeignClaims, RecordedOutcome, StagingError, StartedBatch,
};
use crate::submit::target::{OrderOutcome, OrderResult, PlanError};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use std::collections::HashMap;

/// A retryable failure is claimed again only after this long. With one submitter that is the
/// next run; with several workers (each its own run) it keeps them from using up an order's
/// attempts in seconds, one after another, while Dynamics has trouble.
const RETRY_COOLDOWN_SECS: f64 = 900.0;

/// A new `sending` batch row of `orders` orders; its id.
async fn insert_batch_row(
    conn: &mut sqlx::PgConnection,
    run_id: i64,
    parent: Option<i64>,
    orders: usize,
    operations: usize,
) -> Result<i64, StagingError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO batches (run_id, parent_batch_id, status, orders, operations, created_at)
         VALUES ($1, $2, 'sending', $3, $4, now()) RETURNING id",
    )
    .bind(run_id)
    .bind(parent)
    .bind(orders as i64)
    .bind(operations as i64)
    .fetch_one(conn)
    .await?)
}

fn claimed(rows: Vec<PgRow>) -> Result<Vec<ClaimedOrder>, StagingError> {
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
                earlier_lines: crate::staging::orders::earlier_lines(r.get("earlier_lines")),
            })
        })
        .collect()
}

/// Mark the orders of `held` (key, message) `failed` (`order_incomplete`) where this file
/// staged them and they are not held back already: see [`parts::held_back`]. The rows are
/// locked first, so the ledger and the update see the same status; an order in flight loses
/// its claim, so the sender's outcome is ignored. How many were.
async fn hold_back(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    file_id: i64,
    run_id: i64,
    held: &[(String, String)],
) -> Result<u64, StagingError> {
    if held.is_empty() {
        return Ok(0);
    }
    let (keys, messages): (Vec<&str>, Vec<&str>) =
        held.iter().map(|(k, m)| (k.as_str(), m.as_str())).unzip();
    let rows = sqlx::query(
        "WITH target AS (
           SELECT o.id, o.status, h.message
           FROM staged_orders o JOIN unnest($2::TEXT[], $3::TEXT[]) AS h(key, message) ON o.external_id = h.key
           WHERE o.channel = (SELECT channel FROM source_files WHERE id = $1) AND o.source_file_id = $1
             AND NOT (o.status = 'failed' AND COALESCE(o.last_error_code, '') = 'order_incomplete')
           ORDER BY o.id
           FOR UPDATE OF o
         ), held AS (
           UPDATE staged_orders o SET status = 'failed', retryable = false, last_error_code = 'order_incomplete',
             last_error_message = t.message, last_http_status = NULL, claim_token = NULL,
             claim_expires_at = NULL, updated_at = now()
           FROM target t WHERE o.id = t.id
           RETURNING o.id, t.status AS from_status, t.message
         )
         INSERT INTO ledger (order_id, run_id, at, from_status, to_status, error_code, message)
         SELECT id, $4, now(), from_status, 'failed', 'order_incomplete', message FROM held ORDER BY id",
    )
    .bind(file_id)
    .bind(&keys)
    .bind(&messages)
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(rows.rows_affected())
}

impl PgStaging {
    /// One chunk of a file in one transaction: rejected rows, new orders, changed orders.
    pub(super) async fn write_chunk(
        &self,
        file_id: i64,
        run_id: i64,
        chunk: PreparedChunk,
        rejected: Vec<RejectedRow>,
        read: &mut ReadMemory,
    ) -> Result<ChunkCounts, StagingError> {
        let mut counts = ChunkCounts {
            rejected: rejected.len() as u64,
            rows_staged: chunk.rows_staged,
            ..Default::default()
        };
        let merged = chunk.orders;
        let held_back = parts::held_back(file_id, &rejected);

        let mut tx = self.pool.begin().await?;
        // Still this run's file (a run that lost its lease writes nothing more of it); the
        // share lock makes a takeover wait for this chunk.
        let ours: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM source_files WHERE id = $1 AND run_id = $2 AND status = 'reading' FOR SHARE",
        )
        .bind(file_id)
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?;
        if ours.is_none() {
            return Err(StagingError::FileTakenOver { file_id, run_id });
        }
        if !rejected.is_empty() {
            let rows: Vec<i64> = rejected.iter().map(|r| r.row_number as i64).collect();
            let columns: Vec<Option<String>> = rejected.iter().map(|r| r.column.clone()).collect();
            let reasons: Vec<String> = rejected.iter().map(|r| r.reason_code.to_string()).collect();
            let messages: Vec<String> = rejected.iter().map(|r| r.message.clone()).collect();
            let raws: Vec<String> = rejected.iter().map(|r| r.raw.clone()).collect();
            sqlx::query(
                "INSERT INTO rejected_rows (source_file_id, row_number, column_name, reason_code, message, raw, created_at)
                 SELECT $1, r.n, r.c, r.reason, r.message, r.raw, now()
                 FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[]) AS r(n, c, reason, message, raw)",
            )
            .bind(file_id)
            .bind(&rows)
            .bind(&columns)
            .bind(&reasons)
            .bind(&messages)
            .bind(&raws)
            .execute(&mut *tx)
            .await?;
        }

        // Which of these orders exist already? Locked, so a concurrent writer waits.
        // (channel, external_id) → (id, content hash, status, its records when this file
        // staged it)
        // (…, the other file still being read that its copy came from)
        type Existing = (i64, String, String, Option<String>, Option<i64>);
        let mut existing: HashMap<(String, String), Existing> = HashMap::new();
        if !merged.is_empty() {
            let channels: Vec<&str> = merged.iter().map(|p| p.channel.as_str()).collect();
            let ids: Vec<&str> = merged.iter().map(|p| p.external_id.as_str()).collect();
            for r in sqlx::query(
                "SELECT o.id, o.channel, o.external_id, o.content_hash, o.status,
                        CASE WHEN o.source_file_id = $3 THEN o.source_rows END AS same_file_rows,
                        CASE WHEN o.source_file_id != $3 AND o.source_file_id IN
                                  (SELECT id FROM source_files WHERE status = 'reading')
                             THEN o.source_file_id END AS adopt_from
                 FROM staged_orders o JOIN unnest($1::TEXT[], $2::TEXT[]) AS k(channel, external_id)
                   ON o.channel = k.channel AND o.external_id = k.external_id
                 ORDER BY o.id FOR UPDATE OF o",
            )
            .bind(&channels)
            .bind(&ids)
            .bind(file_id)
            .fetch_all(&mut *tx)
            .await?
            {
                existing.insert(
                    (r.get("channel"), r.get("external_id")),
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

        let mut new_orders: Vec<PreparedOrder> = Vec::new();
        let mut buf = Vec::with_capacity(4096);
        for mut prepared in merged {
            let key = (prepared.channel.clone(), prepared.external_id.clone());
            let Some((id, old_hash, status, same_file_rows, adopt_from)) = existing.get(&key)
            else {
                new_orders.push(prepared);
                counts.new += 1;
                continue;
            };
            let continued = match parts::relate(&prepared, *id, same_file_rows.as_deref(), read) {
                Relation::AlreadyStored { first } => {
                    counts.unchanged += u64::from(first);
                    continue;
                }
                Relation::Continues { earlier_rows } => {
                    // An earlier part of this read came before it: merge its lines.
                    let payload: String =
                        sqlx::query_scalar("SELECT payload FROM staged_orders WHERE id = $1")
                            .bind(id)
                            .fetch_one(&mut *tx)
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
                        "UPDATE staged_orders SET payload = $1, source_file_id = $2, source_rows = $3,
                           row_count = $4, updated_at = now() WHERE id = $5",
                    )
                    .bind(&prepared.payload)
                    .bind(file_id)
                    .bind(&prepared.source_rows)
                    .bind(prepared.row_count)
                    .bind(id)
                    .execute(&mut *tx)
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
                "UPDATE staged_orders SET payload = $1, content_hash = $2, currency = $3, total = $4, line_count = $5,
                   row_count = $6, source_rows = $7, order_created_at = $8, source_file_id = $9, updated_at = now(),
                   earlier_lines = GREATEST(COALESCE(earlier_lines, 0), line_count),
                   status = $10, retryable = CASE WHEN $11 THEN false ELSE retryable END,
                   attempts = CASE WHEN $11 THEN 0 ELSE attempts END,
                   claim_token = CASE WHEN $11 THEN NULL ELSE claim_token END,
                   claim_expires_at = CASE WHEN $11 THEN NULL ELSE claim_expires_at END
                 WHERE id = $12",
            )
            .bind(p.payload)
            .bind(p.hash)
            .bind(p.currency)
            .bind(p.total)
            .bind(p.line_count)
            .bind(p.row_count)
            .bind(p.source_rows)
            .bind(p.created_at)
            .bind(file_id)
            .bind(to_status)
            .bind(requeue)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            changed::check_updated(updated.rows_affected(), file_id, &key)?;
            counts.count_update(continued);
            if requeue {
                counts.requeued += 1;
                if status == "succeeded" {
                    read.requeued_after_success(*id);
                }
                sqlx::query(
                    "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message)
                     VALUES ($1, $2, now(), $3, 'pending', $4)",
                )
                .bind(id)
                .bind(run_id)
                .bind(status)
                .bind(changed::requeue_message(file_id, status))
                .execute(&mut *tx)
                .await?;
            }
        }

        if !new_orders.is_empty() {
            let n = new_orders.len();
            let mut channel = Vec::with_capacity(n);
            let mut external_id = Vec::with_capacity(n);
            let mut hash = Vec::with_capacity(n);
            let mut payload = Vec::with_capacity(n);
            let mut currency = Vec::with_capacity(n);
            let mut total: Vec<Option<String>> = Vec::with_capacity(n);
            let mut line_count = Vec::with_capacity(n);
            let mut row_count = Vec::with_capacity(n);
            let mut source_rows = Vec::with_capacity(n);
            let mut created_at: Vec<DateTime<Utc>> = Vec::with_capacity(n);
            for p in new_orders {
                currency.push(p.currency);
                total.push(p.total);
                line_count.push(p.line_count);
                row_count.push(p.row_count);
                source_rows.push(p.source_rows);
                created_at.push(p.created_at);
                channel.push(p.channel);
                external_id.push(p.external_id);
                hash.push(p.hash);
                payload.push(p.payload);
            }
            // A concurrent insert of the same key fails the chunk (and its transaction)
            // rather than being skipped silently; the scheduler lease makes it not happen.
            let ids: Vec<i64> = sqlx::query_scalar(
                "INSERT INTO staged_orders (channel, external_id, status, content_hash, payload, currency, total,
                   line_count, row_count, source_file_id, source_rows, order_created_at, staged_at, updated_at)
                 SELECT channel, external_id, 'pending', hash, payload, currency, total, line_count, row_count,
                        $1, source_rows, created_at, now(), now()
                 FROM unnest($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::BIGINT[],
                             $9::BIGINT[], $10::TEXT[], $11::TIMESTAMPTZ[])
                      WITH ORDINALITY AS n(channel, external_id, hash, payload, currency, total, line_count, row_count,
                                           source_rows, created_at, ord)
                 ORDER BY ord
                 RETURNING id",
            )
            .bind(file_id)
            .bind(&channel)
            .bind(&external_id)
            .bind(&hash)
            .bind(&payload)
            .bind(&currency)
            .bind(&total)
            .bind(&line_count)
            .bind(&row_count)
            .bind(&source_rows)
            .bind(&created_at)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message)
                 SELECT id, $2, now(), NULL, 'pending', $3 FROM unnest($1::BIGINT[]) AS id",
            )
            .bind(&ids)
            .bind(run_id)
            .bind(format!("staged from file {file_id}"))
            .execute(&mut *tx)
            .await?;
        }
        counts.held_back = hold_back(&mut tx, file_id, run_id, &held_back).await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Every claim not held under `token` back to pending (one submitter per database only;
    /// with workers, [`Self::sweep_expired`] is the recovery).
    pub(super) async fn requeue_dead_claims(
        &self,
        run_id: i64,
        token: &str,
    ) -> Result<u64, StagingError> {
        self.requeue_claims(
            run_id,
            "claim_token IS DISTINCT FROM $2",
            Some(token),
            "recovered",
            "the run that claimed it ended without recording an outcome",
        )
        .await
    }

    /// Claims whose holder stopped heartbeating go back to pending, with a ledger event.
    pub(super) async fn sweep_expired(&self, run_id: i64) -> Result<u64, StagingError> {
        self.requeue_claims(
            run_id,
            "(claim_expires_at IS NULL OR claim_expires_at < now())",
            None,
            "claim_expired",
            "its worker died or stalled past the claim's expiry",
        )
        .await
    }

    async fn requeue_claims(
        &self,
        run_id: i64,
        condition: &str,
        token: Option<&str>,
        code: &str,
        why: &str,
    ) -> Result<u64, StagingError> {
        let sql = format!(
            "WITH gone AS (
                SELECT id, batch_id, claim_token, claim_expires_at FROM staged_orders
                WHERE status = 'in_flight' AND {condition}
                FOR UPDATE SKIP LOCKED
             ), upd AS (
                UPDATE staged_orders o SET status = 'pending', claim_token = NULL, claim_expires_at = NULL,
                       updated_at = now()
                FROM gone WHERE o.id = gone.id
                RETURNING o.id
             )
             INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, error_code, message)
             SELECT gone.id, gone.batch_id, $1, now(), 'in_flight', 'pending', $3,
                    'recovered: the claim of ' || COALESCE(gone.claim_token, '?') || ' (expiring '
                    || COALESCE(ol_ts(gone.claim_expires_at), '?') || ') ended without an outcome: ' || $4
                    || '; it will be sent again (upsert by key, no duplicate)'
             FROM gone JOIN upd ON upd.id = gone.id"
        );
        let r = sqlx::query(&sql)
            .bind(run_id)
            .bind(token.unwrap_or(""))
            .bind(code)
            .bind(why)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    pub(super) async fn extend_claims(
        &self,
        token: &str,
        ttl_secs: u64,
    ) -> Result<u64, StagingError> {
        let r = sqlx::query(
            "UPDATE staged_orders SET claim_expires_at = now() + make_interval(secs => $2)
             WHERE status = 'in_flight' AND claim_token = $1 AND claim_expires_at > now()",
        )
        .bind(token)
        .bind(ttl_secs as f64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub(super) async fn others_claims(&self, token: &str) -> Result<ForeignClaims, StagingError> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n,
                    COALESCE(GREATEST(EXTRACT(EPOCH FROM MIN(claim_expires_at) - now()), 0), 0)::FLOAT8 AS first
             FROM staged_orders WHERE status = 'in_flight' AND claim_token IS DISTINCT FROM $1",
        )
        .bind(token)
        .fetch_one(&self.pool)
        .await?;
        Ok(ForeignClaims {
            orders: r.get::<i64, _>("n") as u64,
            first_expiry_secs: r.get("first"),
        })
    }

    /// Claim up to `limit` orders in one short transaction: the rows are picked with
    /// `FOR UPDATE SKIP LOCKED` (workers never wait for, or take, each other's rows), marked
    /// in flight under `token` with an expiry, and a ledger event is written for each.
    pub(super) async fn claim(
        &self,
        run_id: i64,
        token: &str,
        limit: usize,
        max_attempts: u32,
        lease_secs: u64,
        only: Option<&[i64]>,
    ) -> Result<Vec<ClaimedOrder>, StagingError> {
        let rows = sqlx::query(&format!(
            "WITH picked AS (
                SELECT id, status AS from_status FROM staged_orders
                WHERE (status = 'pending'
                       OR (status = 'failed' AND retryable AND attempts < $1 AND COALESCE(last_run_id, -1) != $2
                           AND updated_at < now() - make_interval(secs => $7)))
                  AND ($3::BIGINT[] IS NULL OR id = ANY($3)) AND {}
                ORDER BY id LIMIT $4
                FOR UPDATE SKIP LOCKED
             ), upd AS (
                UPDATE staged_orders o SET status = 'in_flight', claim_token = $5,
                       claim_expires_at = now() + make_interval(secs => $6), last_run_id = $2,
                       attempts = o.attempts + 1, updated_at = now(),
                       batch_id = NULL -- no batch until one starts with it (`live_claims`)
                FROM picked WHERE o.id = picked.id
                RETURNING o.id, o.payload, o.attempts, o.earlier_lines, picked.from_status
             ), led AS (
                INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message)
                SELECT id, $2, now(), from_status, 'in_flight', 'claimed for attempt ' || attempts FROM upd
             )
             SELECT id, payload, attempts, earlier_lines FROM upd ORDER BY id",
            parts::NOT_FROM_A_FILE_BEING_READ
        ))
        .bind(max_attempts as i64)
        .bind(run_id)
        .bind(only)
        .bind(limit.min(i64::MAX as usize) as i64)
        .bind(token)
        .bind(lease_secs as f64)
        .bind(RETRY_COOLDOWN_SECS)
        .fetch_all(&self.pool)
        .await?;
        claimed(rows)
    }

    pub(super) async fn peek(
        &self,
        limit: usize,
        max_attempts: u32,
    ) -> Result<Vec<ClaimedOrder>, StagingError> {
        let rows = sqlx::query(&format!(
            "SELECT id, payload, attempts, earlier_lines FROM staged_orders
             WHERE (status = 'pending' OR (status = 'failed' AND retryable AND attempts < $1))
               AND {}
             ORDER BY id LIMIT $2",
            parts::NOT_FROM_A_FILE_BEING_READ
        ))
        .bind(max_attempts as i64)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await?;
        claimed(rows)
    }

    pub(super) async fn requeue(
        &self,
        run_id: i64,
        order_ids: &[i64],
        reason: &str,
    ) -> Result<u64, StagingError> {
        let r = sqlx::query(
            "WITH picked AS (
                SELECT id, batch_id, status FROM staged_orders
                WHERE id = ANY($1) AND status IN ('failed', 'succeeded', 'pending') FOR UPDATE
             ), upd AS (
                UPDATE staged_orders o SET status = 'pending', attempts = 0, retryable = false, updated_at = now()
                FROM picked WHERE o.id = picked.id RETURNING o.id
             )
             INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, error_code, message)
             SELECT picked.id, picked.batch_id, $2, now(), picked.status, 'pending', 'rerun', $3
             FROM picked JOIN upd ON upd.id = picked.id",
        )
        .bind(order_ids)
        .bind(run_id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub(super) async fn open_batch(
        &self,
        run_id: i64,
        token: &str,
        order_ids: &[i64],
        operations: usize,
        parent: Option<i64>,
        ttl_secs: u64,
    ) -> Result<StartedBatch, StagingError> {
        let mut tx = self.pool.begin().await?;
        let id = insert_batch_row(&mut tx, run_id, parent, order_ids.len(), operations).await?;
        // Tag the run's in-flight orders with the batch (a swept claim is someone else's now)
        // and extend the live claims held under the token, in one pass.
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "UPDATE staged_orders SET batch_id = CASE WHEN last_run_id = $3 THEN $1 ELSE batch_id END,
                    claim_expires_at = CASE WHEN claim_token = $4 AND claim_expires_at > now()
                                            THEN now() + make_interval(secs => $5) ELSE claim_expires_at END
             WHERE id = ANY($2) AND status = 'in_flight' AND (last_run_id = $3 OR claim_token = $4)
             RETURNING id, COALESCE(claim_token = $4 AND claim_expires_at > now(), false)",
        )
        .bind(id)
        .bind(order_ids)
        .bind(run_id)
        .bind(token)
        .bind(ttl_secs as f64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut live: Vec<i64> = rows
            .into_iter()
            .filter(|(_, live)| *live)
            .map(|(id, _)| id)
            .collect();
        live.sort_unstable();
        Ok(StartedBatch { id, live })
    }

    /// Record outcomes, only for orders still claimed under `token` with the claim live
    /// (not expired): a worker that stalled past its claim records nothing.
    pub(super) async fn write_outcomes(
        &self,
        run_id: i64,
        batch_id: Option<i64>,
        token: &str,
        outcomes: &[OrderOutcome],
    ) -> Result<RecordedOutcome, StagingError> {
        let n = outcomes.len();
        let mut ids = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut retryables = Vec::with_capacity(n);
        let mut https: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut codes: Vec<Option<String>> = Vec::with_capacity(n);
        let mut messages: Vec<Option<String>> = Vec::with_capacity(n);
        let mut refs: Vec<Option<String>> = Vec::with_capacity(n);
        for o in outcomes {
            ids.push(o.order_id);
            match &o.result {
                OrderResult::Succeeded { dynamics_ref } => {
                    statuses.push("succeeded");
                    retryables.push(false);
                    https.push(None);
                    codes.push(None);
                    messages.push(None);
                    refs.push(Some(dynamics_ref.clone()));
                }
                OrderResult::Failed {
                    retryable,
                    http_status,
                    code,
                    message,
                } => {
                    statuses.push("failed");
                    retryables.push(*retryable);
                    https.push(http_status.map(i64::from));
                    codes.push(Some(code.clone()));
                    messages.push(Some(message.clone()));
                    refs.push(None);
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        let updated: Vec<String> = sqlx::query_scalar(
            "WITH j AS (
                SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::BOOLEAN[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::TEXT[])
                       AS j(id, status, retryable, http, code, message, ref)
             ), upd AS (
                UPDATE staged_orders o SET status = j.status, retryable = j.retryable, last_error_code = j.code,
                       last_error_message = j.message, last_http_status = j.http,
                       dynamics_ref = COALESCE(j.ref, o.dynamics_ref), batch_id = COALESCE($8, o.batch_id),
                       earlier_lines = CASE WHEN j.status = 'succeeded' THEN NULL ELSE o.earlier_lines END,
                       sent_hash = CASE WHEN j.status = 'succeeded' THEN o.content_hash ELSE o.sent_hash END,
                       claim_token = NULL, claim_expires_at = NULL, updated_at = now()
                FROM j
                WHERE o.id = j.id AND o.status = 'in_flight' AND o.claim_token = $9 AND o.claim_expires_at > now()
                  AND ($8::BIGINT IS NULL OR o.batch_id = $8)
                RETURNING o.id, j.status, j.http, j.code, j.message, j.ref
             ), led AS (
                INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, http_status, error_code, message)
                SELECT id, $8, $10, now(), 'in_flight', status, http, code, COALESCE(message, 'stored in Dynamics as ' || ref)
                FROM upd
             )
             SELECT status FROM upd",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&retryables)
        .bind(&https)
        .bind(&codes)
        .bind(&messages)
        .bind(&refs)
        .bind(batch_id)
        .bind(token)
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut rec = RecordedOutcome::default();
        for s in &updated {
            if s == "succeeded" {
                rec.succeeded += 1;
            } else {
                rec.failed += 1;
            }
        }
        rec.stale = n as u64 - updated.len() as u64;
        if let Some(b) = batch_id {
            sqlx::query(
                "UPDATE batches SET succeeded = succeeded + $1, failed = failed + $2, finished_at = now(),
                   status = CASE WHEN failed + $2 = 0 THEN 'succeeded'
                                 WHEN succeeded + $1 = 0 THEN 'failed' ELSE 'partially_failed' END
                 WHERE id = $3",
            )
            .bind(rec.succeeded as i64)
            .bind(rec.failed as i64)
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
        sqlx::query(
            "WITH mine AS (
                SELECT id, batch_id FROM staged_orders
                WHERE id = ANY($1) AND status = 'in_flight' AND claim_token = $2 FOR UPDATE
             ), upd AS (
                UPDATE staged_orders o SET status = 'pending', attempts = GREATEST(o.attempts - 1, 0),
                       claim_token = NULL, claim_expires_at = NULL, updated_at = now()
                FROM mine WHERE o.id = mine.id RETURNING o.id
             )
             INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, message)
             SELECT mine.id, mine.batch_id, $3, now(), 'in_flight', 'pending', $4
             FROM mine JOIN upd ON upd.id = mine.id",
        )
        .bind(order_ids)
        .bind(token)
        .bind(run_id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
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
}
