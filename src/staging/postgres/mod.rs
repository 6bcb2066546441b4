//! The PostgreSQL backend: the same schema and meanings as SQLite (`sql/postgres/`), for
//! several workers on several hosts. Claims are taken with `FOR UPDATE SKIP LOCKED` in one
//! short transaction; expiry, heartbeats and the sweep use the server's clock, so hosts with
//! skewed clocks cannot steal each other's live claims.
//!
//! No session state is relied on (no advisory locks, no temporary tables, no `SET`), so a
//! transaction-mode connection pooler (PgBouncer) can sit in front. Migrations are the
//! exception: they take sqlx's advisory lock, so they run over `database_migration_url` (a
//! direct connection) when one is configured.

mod budget;
mod ops;
mod orders;
mod report;

use super::*;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Staging in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStaging {
    pub(crate) pool: PgPool,
}

impl PgStaging {
    /// Connect, and bring the schema up to date over `migration_url` (a direct connection,
    /// not a pooler) or, when that is not given, over `url` itself.
    pub async fn open_with(url: &str, migration_url: Option<&str>) -> Result<Self, StagingError> {
        let pool = connect(url, 8).await?;
        let migrator = sqlx::migrate!("sql/postgres");
        match migration_url {
            Some(direct) => {
                let direct_pool = connect(direct, 1).await?;
                let r = migrator.run(&direct_pool).await;
                direct_pool.close().await;
                r.map_err(|e| super::migration_error(e, &migrator))?;
            }
            None => migrator
                .run(&pool)
                .await
                .map_err(|e| super::migration_error(e, &migrator))?,
        }
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn connect(url: &str, max: u32) -> Result<PgPool, StagingError> {
    let redacted = redact_url(url);
    let options = PgConnectOptions::from_str(url)
        .map_err(|source| StagingError::Open {
            path: redacted.clone(),
            source,
        })?
        .application_name("orderload");
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|source| StagingError::Open {
            path: redacted,
            source,
        })
}

#[async_trait::async_trait]
impl Staging for PgStaging {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    fn allows_workers(&self) -> bool {
        true
    }
    async fn close(&self) {
        self.pool.close().await;
    }
    async fn begin_run(&self, start: RunStart) -> Result<i64, StagingError> {
        self.insert_run(start).await
    }
    async fn finish_run(
        &self,
        run_id: i64,
        outcome: &str,
        exit_code: u8,
        summary: &serde_json::Value,
    ) -> Result<(), StagingError> {
        self.update_run_end(run_id, outcome, exit_code, summary)
            .await
    }
    async fn acquire_lease(
        &self,
        holder: &str,
        run_id: i64,
        ttl_secs: u64,
    ) -> Result<Option<LeaseInfo>, LeaseError> {
        self.take_lease(holder, run_id, ttl_secs).await
    }
    async fn heartbeat_lease(&self, holder: &str, ttl_secs: u64) -> Result<bool, StagingError> {
        self.beat(holder, ttl_secs).await
    }
    async fn release_lease(&self, holder: &str) -> Result<(), StagingError> {
        self.drop_lease(holder).await
    }
    async fn find_file(&self, sha256: &str) -> Result<Option<FileRecord>, StagingError> {
        self.select_file(sha256).await
    }
    async fn start_file(&self, start: &FileStart, run_id: i64) -> Result<i64, StagingError> {
        self.insert_file(start, run_id).await
    }
    async fn reopen_file(
        &self,
        file_id: i64,
        start: &FileStart,
        run_id: i64,
    ) -> Result<bool, StagingError> {
        self.take_over_file(file_id, start, run_id).await
    }
    async fn stage_chunk(
        &self,
        file_id: i64,
        run_id: i64,
        chunk: PreparedChunk,
        rejected: Vec<RejectedRow>,
        read: &mut ReadMemory,
    ) -> Result<ChunkCounts, StagingError> {
        self.write_chunk(file_id, run_id, chunk, rejected, read)
            .await
    }
    async fn finish_file(
        &self,
        file_id: i64,
        run_id: i64,
        totals: &FileTotals,
        error: Option<(&str, &str)>,
    ) -> Result<(), StagingError> {
        self.update_file_end(file_id, run_id, totals, error).await
    }
    async fn recover_in_flight(&self, run_id: i64, token: &str) -> Result<u64, StagingError> {
        self.requeue_dead_claims(run_id, token).await
    }
    async fn claim_orders(
        &self,
        run_id: i64,
        token: &str,
        limit: usize,
        max_attempts: u32,
        lease_secs: u64,
        only: Option<&[i64]>,
    ) -> Result<Vec<ClaimedOrder>, StagingError> {
        self.claim(run_id, token, limit, max_attempts, lease_secs, only)
            .await
    }
    async fn peek_claimable(
        &self,
        limit: usize,
        max_attempts: u32,
    ) -> Result<Vec<ClaimedOrder>, StagingError> {
        self.peek(limit, max_attempts).await
    }
    async fn requeue_for_rerun(
        &self,
        run_id: i64,
        order_ids: &[i64],
        reason: &str,
    ) -> Result<u64, StagingError> {
        self.requeue(run_id, order_ids, reason).await
    }
    async fn start_batch(
        &self,
        run_id: i64,
        token: &str,
        order_ids: &[i64],
        operations: usize,
        parent: Option<i64>,
        ttl_secs: u64,
    ) -> Result<StartedBatch, StagingError> {
        self.open_batch(run_id, token, order_ids, operations, parent, ttl_secs)
            .await
    }
    async fn record_outcomes(
        &self,
        run_id: i64,
        batch_id: Option<i64>,
        token: &str,
        outcomes: &[OrderOutcome],
    ) -> Result<RecordedOutcome, StagingError> {
        self.write_outcomes(run_id, batch_id, token, outcomes).await
    }
    async fn fail_unplannable(
        &self,
        run_id: i64,
        token: &str,
        order_id: i64,
        error: &PlanError,
    ) -> Result<(), StagingError> {
        self.mark_unplannable(run_id, token, order_id, error).await
    }
    async fn release_claims(
        &self,
        run_id: i64,
        token: &str,
        order_ids: &[i64],
        reason: &str,
    ) -> Result<(), StagingError> {
        self.unclaim(run_id, token, order_ids, reason).await
    }
    async fn settle_requeued(
        &self,
        file_id: i64,
        run_id: i64,
        order_ids: &[i64],
    ) -> Result<u64, StagingError> {
        if order_ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        // As on SQLite: a hash sent before the current hash version is compared in its own
        // form, and where the content is the same, written again in the current one.
        let older: Vec<(i64, String, String)> = sqlx::query_as(&format!(
            "SELECT id, payload, sent_hash FROM staged_orders
             WHERE id = ANY($1) AND status = 'pending' AND source_file_id = $2 AND {}",
            crate::staging::prepare::OLDER_HASH
        ))
        .bind(order_ids)
        .bind(file_id)
        .fetch_all(&mut *tx)
        .await?;
        let same = crate::staging::prepare::sent_as_stored(older);
        if !same.is_empty() {
            sqlx::query("UPDATE staged_orders SET sent_hash = content_hash WHERE id = ANY($1)")
                .bind(&same)
                .execute(&mut *tx)
                .await?;
        }
        let settled = sqlx::query(
            "WITH upd AS (
                UPDATE staged_orders o SET status = 'succeeded', earlier_lines = NULL, updated_at = now()
                WHERE o.id = ANY($1) AND o.status = 'pending' AND o.source_file_id = $2
                  AND o.sent_hash = o.content_hash
                  AND EXISTS (SELECT 1 FROM source_files f
                              WHERE f.id = $2 AND f.run_id = $3 AND f.status = 'reading')
                RETURNING o.id
             )
             INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message)
             SELECT id, $3, now(), 'pending', 'succeeded', $4 FROM upd ORDER BY id",
        )
        .bind(order_ids)
        .bind(file_id)
        .bind(run_id)
        .bind(crate::staging::parts::settled_message(file_id))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(settled)
    }
    async fn waiting_for_reads(&self) -> Result<u64, StagingError> {
        let n: i64 = sqlx::query_scalar(crate::staging::parts::WAITING_FOR_READS)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }
    async fn live_claims(
        &self,
        token: &str,
        batch_id: i64,
        order_ids: &[i64],
    ) -> Result<Vec<i64>, StagingError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM staged_orders
             WHERE id = ANY($1) AND status = 'in_flight' AND claim_token = $2 AND batch_id = $3
               AND claim_expires_at > now()",
        )
        .bind(order_ids)
        .bind(token)
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?)
    }
    async fn reconciliation(&self) -> Result<Reconciliation, StagingError> {
        self.reconcile().await
    }
    async fn sweep_expired_claims(&self, run_id: i64) -> Result<u64, StagingError> {
        self.sweep_expired(run_id).await
    }
    async fn heartbeat_claims(&self, token: &str, ttl_secs: u64) -> Result<u64, StagingError> {
        self.extend_claims(token, ttl_secs).await
    }
    async fn heartbeat_run(&self, run_id: i64, ttl_secs: u64) -> Result<(), StagingError> {
        self.beat_run(run_id, ttl_secs).await
    }
    async fn foreign_claims(&self, token: &str) -> Result<ForeignClaims, StagingError> {
        self.others_claims(token).await
    }
    fn budget(&self, key: &str, worker: &str, limits: BudgetLimits) -> Arc<dyn SharedBudget> {
        Arc::new(budget::PgBudget::new(
            self.pool.clone(),
            key.to_string(),
            worker.to_string(),
            limits,
        ))
    }
    async fn current_lease(&self) -> Result<Option<LeaseInfo>, StagingError> {
        self.live_lease().await
    }
    async fn report_summary(&self, scope: &Scope) -> Result<Summary, ReportError> {
        report::summary(self, scope).await
    }
    async fn report_failed(&self, scope: &Scope) -> Result<FailedReport, ReportError> {
        report::failed(self, scope).await
    }
    async fn report_batch(&self, id: i64) -> Result<BatchReport, ReportError> {
        report::batch(self, id).await
    }
    async fn report_order(
        &self,
        channel: &str,
        external_id: &str,
        since: Option<&str>,
    ) -> Result<OrderHistory, ReportError> {
        report::order(self, channel, external_id, since).await
    }
    async fn last_success_at(&self) -> Result<Option<String>, StagingError> {
        self.last_ok_run().await
    }
    async fn rerun_candidates(
        &self,
        filter: &RerunFilter,
    ) -> Result<Vec<RerunCandidate>, StagingError> {
        self.candidates(filter).await
    }
    async fn record_rerun(
        &self,
        run_id: i64,
        requested_by: &str,
        filter: &RerunFilter,
        orders: usize,
        mode: &str,
    ) -> Result<i64, StagingError> {
        self.insert_rerun(run_id, requested_by, filter, orders, mode)
            .await
    }
    async fn batch_exists(&self, id: i64) -> Result<bool, StagingError> {
        self.has_batch(id).await
    }
}
