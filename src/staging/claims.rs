//! Claims for SQLite: expiry sweep, heartbeat and the view of other holders' claims. Times are
//! this host's clock (one SQLite file is used from one host).

use super::{now_utc, to_db_time, ForeignClaims, SqliteStaging, StagingError, StartedBatch};
use sqlx::Row;

impl SqliteStaging {
    pub(super) async fn sweep_expired(&self, run_id: i64) -> Result<u64, StagingError> {
        let now = now_utc();
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
        sqlx::query(
            "INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, error_code, message)
             SELECT id, batch_id, ?, ?, 'in_flight', 'pending', 'claim_expired',
                    'recovered: the claim of ' || COALESCE(claim_token, '?') || ' expired at ' || COALESCE(claim_expires_at, '?')
                    || ' without an outcome (its worker died or stalled); it will be sent again (upsert by key, no duplicate)'
             FROM staged_orders WHERE status = 'in_flight' AND COALESCE(claim_expires_at, '') < ?",
        )
        .bind(run_id)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query(
            "UPDATE staged_orders SET status = 'pending', claim_token = NULL, claim_expires_at = NULL, updated_at = ?
             WHERE status = 'in_flight' AND COALESCE(claim_expires_at, '') < ?",
        )
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    pub(super) async fn extend_claims(
        &self,
        token: &str,
        ttl_secs: u64,
    ) -> Result<u64, StagingError> {
        let expires = to_db_time(chrono::Utc::now() + chrono::Duration::seconds(ttl_secs as i64));
        let r = sqlx::query(
            "UPDATE staged_orders SET claim_expires_at = ?
             WHERE status = 'in_flight' AND claim_token = ? AND claim_expires_at >= ?",
        )
        .bind(&expires)
        .bind(token)
        .bind(now_utc())
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
        let now = now_utc();
        let expires = to_db_time(chrono::Utc::now() + chrono::Duration::seconds(ttl_secs as i64));
        let mut writer = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut **writer).await?;
        let id = super::orders::insert_batch_row(
            &mut tx,
            run_id,
            parent,
            order_ids.len(),
            operations,
            &now,
        )
        .await?;
        // One pass over the batch's orders: tag the run's in-flight ones with the batch (a swept
        // claim is someone else's now) and extend the live claims held under the token. The ids are bound one by one (no JSON for SQLite to parse), as anonymous
        // placeholders: sqlx looks every numbered one up by name, quadratic in their number.
        let sql = format!(
            "UPDATE staged_orders SET batch_id = CASE WHEN last_run_id = ? THEN ? ELSE batch_id END,
                    claim_expires_at = CASE WHEN claim_token = ? AND claim_expires_at >= ? THEN ?
                                            ELSE claim_expires_at END
             WHERE id IN ({}) AND status = 'in_flight' AND (last_run_id = ? OR claim_token = ?)
             RETURNING id, COALESCE(claim_token = ? AND claim_expires_at >= ?, 0)",
            placeholders(order_ids.len())
        );
        let mut update = sqlx::query_as::<_, (i64, bool)>(&sql)
            .bind(run_id)
            .bind(id)
            .bind(token)
            .bind(&now)
            .bind(&expires);
        for order_id in order_ids {
            update = update.bind(order_id);
        }
        let update = update.bind(run_id).bind(token).bind(token).bind(&now);
        let rows = update.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut live: Vec<i64> = rows
            .into_iter()
            .filter(|(_, live)| *live)
            .map(|(id, _)| id)
            .collect();
        live.sort_unstable();
        Ok(StartedBatch { id, live })
    }

    pub(super) async fn others_claims(&self, token: &str) -> Result<ForeignClaims, StagingError> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(claim_expires_at) AS first FROM staged_orders
             WHERE status = 'in_flight' AND COALESCE(claim_token, '') != ?",
        )
        .bind(token)
        .fetch_one(&self.pool)
        .await?;
        let first: Option<String> = r.get("first");
        let first_expiry_secs = first
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| {
                (t.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0
            })
            .unwrap_or(0.0);
        Ok(ForeignClaims {
            orders: r.get::<i64, _>("n") as u64,
            first_expiry_secs,
        })
    }
}

/// `?, ?, …`: `n` anonymous placeholders for a list bound value by value.
pub(super) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}
