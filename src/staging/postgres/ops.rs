//! PostgreSQL: runs, the scheduler lease, source files, reruns and reconciliation.

use super::PgStaging;
use crate::staging::lease::LEASE_NAME;
use crate::staging::{
    FileRecord, FileStart, FileTotals, LeaseError, LeaseInfo, Reconciliation, RerunCandidate,
    RerunFilter, RunStart, StagingError,
};
use sqlx::postgres::PgRow;
use sqlx::Row;

const LEASE_COLUMNS: &str = "holder, run_id, host, pid, ol_ts(heartbeat_at) AS heartbeat_at,
    ol_ts(expires_at) AS expires_at, expires_at > now() AS live";

fn lease_info(r: &PgRow) -> LeaseInfo {
    LeaseInfo {
        holder: r.get("holder"),
        run_id: r.get("run_id"),
        host: r.get("host"),
        pid: r.get("pid"),
        heartbeat_at: r.get("heartbeat_at"),
        expires_at: r.get("expires_at"),
    }
}

impl PgStaging {
    pub(super) async fn insert_run(&self, start: RunStart) -> Result<i64, StagingError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO runs (command, args, host, pid, os_user, started_at)
             VALUES ($1, $2, $3, $4, $5, now()) RETURNING id",
        )
        .bind(&start.command)
        .bind(&start.args)
        .bind(&start.host)
        .bind(start.pid as i64)
        .bind(&start.os_user)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn update_run_end(
        &self,
        run_id: i64,
        outcome: &str,
        exit_code: u8,
        summary: &serde_json::Value,
    ) -> Result<(), StagingError> {
        sqlx::query(
            "UPDATE runs SET finished_at = now(), outcome = $1, exit_code = $2, summary = $3 WHERE id = $4",
        )
        .bind(outcome)
        .bind(exit_code as i64)
        .bind(summary.to_string())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn last_ok_run(&self) -> Result<Option<String>, StagingError> {
        Ok(sqlx::query_scalar(
            "SELECT ol_ts(MAX(finished_at)) FROM runs WHERE outcome = 'ok' AND command IN ('run', 'submit')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Take the scheduler lease: one row, locked for the length of one short transaction.
    /// A live lease of another holder is refused; an expired one is taken over. No advisory
    /// locks (poolers break them).
    pub(super) async fn take_lease(
        &self,
        holder: &str,
        run_id: i64,
        ttl_secs: u64,
    ) -> Result<Option<LeaseInfo>, LeaseError> {
        let host = crate::staging::runs::host_name();
        let mut tx = self.pool.begin().await?;
        // The row may not exist yet: create it expired, then lock it.
        sqlx::query(
            "INSERT INTO lease (name, holder, run_id, host, pid, acquired_at, heartbeat_at, expires_at)
             VALUES ($1, '', NULL, '', 0, now(), now(), '1970-01-01T00:00:00Z') ON CONFLICT (name) DO NOTHING",
        )
        .bind(LEASE_NAME)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {LEASE_COLUMNS} FROM lease WHERE name = $1 FOR UPDATE"
        ))
        .bind(LEASE_NAME)
        .fetch_one(&mut *tx)
        .await?;
        let existing = lease_info(&row);
        let live: bool = row.get("live");
        // Expiry only: across hosts (containers, cloned VMs) a host name and a pid do not
        // identify a process, so a live-looking lease is never taken over early.
        if live && existing.holder != holder {
            return Err(LeaseError::Held(existing));
        }
        sqlx::query(
            "UPDATE lease SET holder = $2, run_id = $3, host = $4, pid = $5, acquired_at = now(),
                    heartbeat_at = now(), expires_at = now() + make_interval(secs => $6)
             WHERE name = $1",
        )
        .bind(LEASE_NAME)
        .bind(holder)
        .bind(run_id)
        .bind(&host)
        .bind(std::process::id() as i64)
        .bind(ttl_secs as f64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(existing).filter(|e| !e.holder.is_empty() && e.holder != holder))
    }

    pub(super) async fn beat(&self, holder: &str, ttl_secs: u64) -> Result<bool, StagingError> {
        let r = sqlx::query(
            "UPDATE lease SET heartbeat_at = now(), expires_at = now() + make_interval(secs => $3)
             WHERE name = $1 AND holder = $2",
        )
        .bind(LEASE_NAME)
        .bind(holder)
        .bind(ttl_secs as f64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(super) async fn beat_run(&self, run_id: i64, ttl_secs: u64) -> Result<(), StagingError> {
        sqlx::query(
            "UPDATE runs SET alive_until = now() + make_interval(secs => $2)
             WHERE id = $1 AND finished_at IS NULL",
        )
        .bind(run_id)
        .bind(ttl_secs as f64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn drop_lease(&self, holder: &str) -> Result<(), StagingError> {
        sqlx::query("DELETE FROM lease WHERE name = $1 AND holder = $2")
            .bind(LEASE_NAME)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn live_lease(&self) -> Result<Option<LeaseInfo>, StagingError> {
        Ok(sqlx::query(&format!(
            "SELECT {LEASE_COLUMNS} FROM lease WHERE name = $1 AND expires_at > now() AND holder != ''"
        ))
        .bind(LEASE_NAME)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| lease_info(&r)))
    }

    pub(super) async fn select_file(
        &self,
        sha256: &str,
    ) -> Result<Option<FileRecord>, StagingError> {
        Ok(sqlx::query(
            "SELECT id, path, channel, status, ol_ts(ingested_at) AS ingested_at FROM source_files WHERE sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| FileRecord {
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'reading', $8, now()) RETURNING id",
        )
        .bind(&f.sha256)
        .bind(&f.path)
        .bind(&f.channel)
        .bind(&f.format)
        .bind(&f.encoding)
        .bind(serde_json::to_string(&f.notes).unwrap_or_default())
        .bind(f.size_bytes as i64)
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn take_over_file(
        &self,
        file_id: i64,
        f: &FileStart,
        run_id: i64,
    ) -> Result<bool, StagingError> {
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(
            "UPDATE source_files SET run_id = $1, path = $2, format = $3, encoding = $4, notes = $5, ingested_at = now()
             WHERE id = $6 AND status = 'reading'",
        )
        .bind(run_id)
        .bind(&f.path)
        .bind(&f.format)
        .bind(&f.encoding)
        .bind(serde_json::to_string(&f.notes).unwrap_or_default())
        .bind(file_id)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM rejected_rows WHERE source_file_id = $1")
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
        let ended = sqlx::query(
            "UPDATE source_files SET status = $1, error_code = $2, error = $3, rows = $4, rows_staged = $5,
               rejected = $6, orders = $7, orders_new = $8, orders_updated = $9, orders_unchanged = $10,
               format = COALESCE($11, format), encoding = COALESCE($12, encoding), notes = $13
             WHERE id = $14 AND run_id = $15 AND status = 'reading'",
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
        .execute(&self.pool)
        .await?;
        if ended.rows_affected() == 0 {
            return Err(StagingError::FileTakenOver { file_id, run_id });
        }
        Ok(())
    }

    pub(super) async fn reconcile(&self) -> Result<Reconciliation, StagingError> {
        let files = sqlx::query(
            "SELECT COALESCE(SUM(rows), 0)::BIGINT AS r, COALESCE(SUM(rows_staged), 0)::BIGINT AS s,
                    COALESCE(SUM(rejected), 0)::BIGINT AS j
             FROM source_files WHERE status != 'reading'",
        )
        .fetch_one(&self.pool)
        .await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM rejected_rows r JOIN source_files f ON f.id = r.source_file_id WHERE f.status != 'reading'",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut rec = Reconciliation {
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

    pub(super) async fn candidates(
        &self,
        filter: &RerunFilter,
    ) -> Result<Vec<RerunCandidate>, StagingError> {
        const COLUMNS: &str = "id, channel, external_id, status, attempts, batch_id, last_error_code, last_error_message, dynamics_ref";
        let mut rows = Vec::new();
        if !filter.batches.is_empty() {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM staged_orders WHERE id IN
                       (SELECT order_id FROM ledger WHERE batch_id = ANY($1)) ORDER BY id"
                ))
                .bind(&filter.batches)
                .fetch_all(&self.pool)
                .await?,
            );
        }
        if filter.failed {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM staged_orders WHERE status = 'failed'
                       AND ($1::TEXT IS NULL OR channel = $1) AND ($2::TEXT IS NULL OR updated_at >= $2::TIMESTAMPTZ)
                       AND ($3::TEXT IS NULL OR last_error_code = $3)
                     ORDER BY id"
                ))
                .bind(&filter.channel)
                .bind(&filter.since)
                .bind(&filter.error_code)
                .fetch_all(&self.pool)
                .await?,
            );
        }
        for (channel, id) in &filter.orders {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM staged_orders WHERE channel = $1 AND external_id = $2"
                ))
                .bind(channel)
                .bind(id)
                .fetch_all(&self.pool)
                .await?,
            );
        }
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .into_iter()
            .filter(|r| seen.insert(r.get::<i64, _>("id")))
            .map(|r| {
                RerunCandidate::new(
                    filter,
                    r.get("id"),
                    r.get("channel"),
                    r.get("external_id"),
                    r.get("status"),
                    r.get("attempts"),
                    r.get("batch_id"),
                    r.get("last_error_code"),
                    r.get("last_error_message"),
                    r.get("dynamics_ref"),
                )
            })
            .collect())
    }

    pub(super) async fn insert_rerun(
        &self,
        run_id: i64,
        requested_by: &str,
        filter: &RerunFilter,
        orders: usize,
        mode: &str,
    ) -> Result<i64, StagingError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO reruns (run_id, requested_by, requested_at, filter, orders, mode)
             VALUES ($1, $2, now(), $3, $4, $5) RETURNING id",
        )
        .bind(run_id)
        .bind(requested_by)
        .bind(serde_json::to_string(filter).unwrap_or_default())
        .bind(orders as i64)
        .bind(mode)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn has_batch(&self, id: i64) -> Result<bool, StagingError> {
        Ok(
            sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM batches WHERE id = $1)")
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
