//! Choosing orders for an operator rerun, and recording the rerun.

use super::{now_utc, SqliteStaging, StagingError};
use sqlx::Row;

/// What the operator asked to rerun.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RerunFilter {
    pub batches: Vec<i64>,
    pub failed: bool,
    pub channel: Option<String>,
    /// UTC RFC 3339 or date; orders whose last change is at or after it.
    pub since: Option<String>,
    pub error_code: Option<String>,
    /// (channel, external_id)
    pub orders: Vec<(String, String)>,
    pub include_succeeded: bool,
}

/// One order the filter matched, and whether (and why) it is in the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RerunCandidate {
    pub id: i64,
    pub channel: String,
    pub external_id: String,
    pub status: String,
    pub attempts: i64,
    pub batch_id: Option<i64>,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub dynamics_ref: Option<String>,
    pub included: bool,
    pub why: String,
}

impl RerunCandidate {
    /// An order the filter matched, with whether (and why) the rerun includes it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        filter: &RerunFilter,
        id: i64,
        channel: String,
        external_id: String,
        status: String,
        attempts: i64,
        batch_id: Option<i64>,
        error_code: Option<String>,
        message: Option<String>,
        dynamics_ref: Option<String>,
    ) -> Self {
        let (included, why) = match status.as_str() {
            "failed" => (
                true,
                format!(
                    "failed in batch {}: {} {}",
                    batch_id
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "-".into()),
                    error_code.as_deref().unwrap_or(""),
                    message.as_deref().unwrap_or("")
                )
                .trim_end()
                .to_string(),
            ),
            "pending" => (
                true,
                "pending: not sent yet; sent with this rerun".to_string(),
            ),
            "succeeded" if filter.include_succeeded => (
                true,
                "succeeded; sent again as an update (--include-succeeded)".to_string(),
            ),
            "succeeded" => (
                false,
                "already succeeded; add --include-succeeded to send it again".to_string(),
            ),
            _ => (false, "in flight in another run; left alone".to_string()),
        };
        RerunCandidate {
            id,
            channel,
            external_id,
            status,
            attempts,
            batch_id,
            error_code,
            message,
            dynamics_ref,
            included,
            why,
        }
    }
}

const COLUMNS: &str = "id, channel, external_id, status, attempts, batch_id, last_error_code, last_error_message, dynamics_ref";

impl SqliteStaging {
    /// The orders matching `filter`, each with the reason it is (or is not) included.
    pub(super) async fn candidates(
        &self,
        filter: &RerunFilter,
    ) -> Result<Vec<RerunCandidate>, StagingError> {
        let mut rows = Vec::new();
        if !filter.batches.is_empty() {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM staged_orders WHERE id IN
                       (SELECT order_id FROM ledger WHERE batch_id IN (SELECT value FROM json_each(?)))
                     ORDER BY id"
                ))
                .bind(serde_json::to_string(&filter.batches).unwrap_or_default())
                .fetch_all(&self.pool)
                .await?,
            );
        }
        if filter.failed {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM staged_orders WHERE status = 'failed'
                       AND (? IS NULL OR channel = ?) AND (? IS NULL OR updated_at >= ?)
                       AND (? IS NULL OR last_error_code = ?)
                     ORDER BY id"
                ))
                .bind(&filter.channel)
                .bind(&filter.channel)
                .bind(&filter.since)
                .bind(&filter.since)
                .bind(&filter.error_code)
                .bind(&filter.error_code)
                .fetch_all(&self.pool)
                .await?,
            );
        }
        for (channel, id) in &filter.orders {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM staged_orders WHERE channel = ? AND external_id = ?"
                ))
                .bind(channel)
                .bind(id)
                .fetch_all(&self.pool)
                .await?,
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in rows {
            let id: i64 = r.get("id");
            if !seen.insert(id) {
                continue;
            }
            out.push(RerunCandidate::new(
                filter,
                id,
                r.get("channel"),
                r.get("external_id"),
                r.get("status"),
                r.get("attempts"),
                r.get("batch_id"),
                r.get("last_error_code"),
                r.get("last_error_message"),
                r.get("dynamics_ref"),
            ));
        }
        Ok(out)
    }

    /// Record who asked for a rerun, when, with which filter.
    pub(super) async fn insert_rerun(
        &self,
        run_id: i64,
        requested_by: &str,
        filter: &RerunFilter,
        orders: usize,
        mode: &str,
    ) -> Result<i64, StagingError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO reruns (run_id, requested_by, requested_at, filter, orders, mode) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(requested_by)
        .bind(now_utc())
        .bind(serde_json::to_string(filter).unwrap_or_default())
        .bind(orders as i64)
        .bind(mode)
        .fetch_one(&self.pool)
        .await?)
    }

    /// True when a batch with this id exists.
    pub(super) async fn has_batch(&self, id: i64) -> Result<bool, StagingError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batches WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }
}
