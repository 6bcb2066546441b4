//! The shared throttling budget in PostgreSQL: one `throttle_budget` row per application
//! user (locked for the few milliseconds of a decision) and a log of the requests sent under
//! it. Every worker, on any host, takes each request from here, so together they never exceed
//! the window's requests or execution time, or the concurrency, and a 429 seen by one pauses
//! all of them. The decision itself is [`crate::submit::budget::decide`], shared with SQLite.

use crate::submit::budget::{
    decide, BudgetError, BudgetLimits, Decision, SharedBudget, Ticket, Usage, WaitReason,
};
use sqlx::postgres::PgPool;
use sqlx::Row;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct PgBudget {
    pool: PgPool,
    key: String,
    worker: String,
    limits: BudgetLimits,
    /// The budget's row exists (created by the first request of this process).
    row_exists: AtomicBool,
}

impl PgBudget {
    pub fn new(pool: PgPool, key: String, worker: String, limits: BudgetLimits) -> Self {
        Self {
            pool,
            key,
            worker,
            limits,
            row_exists: AtomicBool::new(false),
        }
    }
}

fn db(e: sqlx::Error) -> BudgetError {
    BudgetError(e.to_string())
}

#[async_trait::async_trait]
impl SharedBudget for PgBudget {
    async fn try_take(&self) -> Result<Result<Ticket, (Duration, WaitReason)>, BudgetError> {
        let window = self.limits.counted_secs();
        let timeout = self.limits.request_timeout_secs as f64;
        if !self.row_exists.load(Ordering::Relaxed) {
            sqlx::query(
                "INSERT INTO throttle_budget (budget_key, updated_at) VALUES ($1, now())
                 ON CONFLICT (budget_key) DO NOTHING",
            )
            .bind(&self.key)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            self.row_exists.store(true, Ordering::Relaxed);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The lock serializes decisions per budget; everything below is one short transaction.
        let row = sqlx::query(
            "SELECT COALESCE(EXTRACT(EPOCH FROM paused_until - statement_timestamp()), 0)::FLOAT8 AS paused_for,
                    dop_hint
             FROM throttle_budget WHERE budget_key = $1 FOR UPDATE",
        )
        .bind(&self.key)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        // Forget what no longer matters to any limit.
        sqlx::query(
            "DELETE FROM throttle_requests
             WHERE budget_key = $1 AND at < statement_timestamp() - make_interval(secs => $2)",
        )
        .bind(&self.key)
        .bind(window.max(timeout))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let used = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE at >= statement_timestamp() - make_interval(secs => $2)) AS requests,
                    COALESCE(EXTRACT(EPOCH FROM statement_timestamp()
                        - MIN(at) FILTER (WHERE at >= statement_timestamp() - make_interval(secs => $2))), 0)::FLOAT8 AS oldest,
                    COALESCE(SUM(exec_ms) FILTER (WHERE at >= statement_timestamp() - make_interval(secs => $2)), 0)::BIGINT AS exec_ms,
                    COALESCE(EXTRACT(EPOCH FROM statement_timestamp()
                        - MIN(at) FILTER (WHERE at >= statement_timestamp() - make_interval(secs => $2) AND exec_ms IS NOT NULL)), 0)::FLOAT8 AS oldest_exec,
                    COUNT(*) FILTER (WHERE exec_ms IS NULL AND at >= statement_timestamp() - make_interval(secs => $3)) AS in_flight,
                    COALESCE(AVG(exec_ms) FILTER (WHERE at >= statement_timestamp() - make_interval(secs => $2)), 0)::FLOAT8 AS avg_exec
             FROM throttle_requests
             WHERE budget_key = $1",
        )
        .bind(&self.key)
        .bind(window)
        .bind(timeout)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let usage = Usage {
            requests: used.get::<i64, _>("requests") as u64,
            oldest_request_age: used.get("oldest"),
            execution_ms: used.get::<i64, _>("exec_ms").max(0) as u64,
            oldest_execution_age: used.get("oldest_exec"),
            in_flight: used.get::<i64, _>("in_flight") as u64,
            in_flight_execution_ms: (used.get::<i64, _>("in_flight") as f64
                * used.get::<f64, _>("avg_exec"))
            .max(0.0) as u64,
            paused_for: row.get::<f64, _>("paused_for").max(0.0),
            dop_hint: row
                .get::<Option<i64>, _>("dop_hint")
                .map(|h| h.max(1) as u64),
        };
        match decide(&self.limits, &usage) {
            Decision::Send => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO throttle_requests (budget_key, worker, at) VALUES ($1, $2, statement_timestamp())
                     RETURNING id",
                )
                .bind(&self.key)
                .bind(&self.worker)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(Ok(Ticket(id)))
            }
            Decision::Wait(d, why) => {
                tx.rollback().await.map_err(db)?;
                Ok(Err((d, why)))
            }
        }
    }

    async fn finish(&self, ticket: Ticket, exec: Duration) -> Result<(), BudgetError> {
        sqlx::query("UPDATE throttle_requests SET exec_ms = $2 WHERE id = $1")
            .bind(ticket.0)
            .bind(exec.as_millis().min(i64::MAX as u128) as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn pause(&self, retry_after: Duration) -> Result<(), BudgetError> {
        sqlx::query(
            "INSERT INTO throttle_budget (budget_key, paused_until, updated_at)
             VALUES ($1, statement_timestamp() + make_interval(secs => $2), now())
             ON CONFLICT (budget_key) DO UPDATE SET
               paused_until = GREATEST(COALESCE(throttle_budget.paused_until, '-infinity'), excluded.paused_until),
               updated_at = now()",
        )
        .bind(&self.key)
        .bind(retry_after.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn set_dop_hint(&self, hint: u64) -> Result<(), BudgetError> {
        sqlx::query(
            "INSERT INTO throttle_budget (budget_key, dop_hint, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (budget_key) DO UPDATE SET dop_hint = excluded.dop_hint, updated_at = now()
             WHERE throttle_budget.dop_hint IS DISTINCT FROM excluded.dop_hint",
        )
        .bind(&self.key)
        .bind(hint.max(1) as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}
