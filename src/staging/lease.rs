//! The lease: one submitter per database. A holder heartbeats; a lease whose holder died
//! expires and is taken over by the next run.

use super::{now_utc, to_db_time, SqliteStaging, StagingError};
use chrono::{Duration, Utc};

pub const LEASE_NAME: &str = "submitter";

/// Who holds (or held) the lease.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeaseInfo {
    pub holder: String,
    pub run_id: Option<i64>,
    pub host: String,
    pub pid: i64,
    pub heartbeat_at: String,
    pub expires_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another run holds the lease on this database: run {run} (pid {pid} on {host}), last heartbeat {heartbeat_at}, expires {expires_at}", run = .0.run_id.map(|r| r.to_string()).unwrap_or_else(|| "?".into()), pid = .0.pid, host = .0.host, heartbeat_at = .0.heartbeat_at, expires_at = .0.expires_at)]
    Held(LeaseInfo),
    #[error(transparent)]
    Staging(#[from] StagingError),
}

impl From<sqlx::Error> for LeaseError {
    fn from(e: sqlx::Error) -> Self {
        LeaseError::Staging(StagingError::Db(e))
    }
}

fn row_to_info(row: &sqlx::sqlite::SqliteRow) -> LeaseInfo {
    use sqlx::Row;
    LeaseInfo {
        holder: row.get("holder"),
        run_id: row.get("run_id"),
        host: row.get("host"),
        pid: row.get("pid"),
        heartbeat_at: row.get("heartbeat_at"),
        expires_at: row.get("expires_at"),
    }
}

/// Whether the process a run or a lease holder recorded (`host`, `pid`) is known to be gone:
/// it ran on this host and no process has its pid now. A holder on this host that died need
/// not wait for its lease to expire; a run that died shows so in the report. A process on
/// another host is never known to be gone.
pub fn process_gone(host: &str, pid: i64) -> bool {
    host == super::runs::host_name() && !process_alive(pid)
}

/// Whether a process with this pid runs on this host. Linux: `/proc/<pid>`; elsewhere assume
/// alive.
fn process_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl SqliteStaging {
    /// Take the lease. Returns the previous holder when a stale (expired) lease was taken over.
    pub(super) async fn take_lease(
        &self,
        holder: &str,
        run_id: i64,
        ttl_secs: u64,
    ) -> Result<Option<LeaseInfo>, LeaseError> {
        let now = Utc::now();
        let expires = to_db_time(now + Duration::seconds(ttl_secs as i64));
        let now_s = to_db_time(now);
        let mut tx = self.pool.begin().await?;
        // BEGIN IMMEDIATE semantics: take the write lock before reading.
        sqlx::query("UPDATE lease SET name = name WHERE 0")
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query("SELECT * FROM lease WHERE name = ?")
            .bind(LEASE_NAME)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| row_to_info(&r));
        let host = super::runs::host_name();
        if let Some(info) = &existing {
            let holder_dead = process_gone(&info.host, info.pid);
            if info.expires_at > now_s && info.holder != holder && !holder_dead {
                return Err(LeaseError::Held(info.clone()));
            }
        }
        sqlx::query(
            "INSERT INTO lease (name, holder, run_id, host, pid, acquired_at, heartbeat_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, run_id = excluded.run_id,
               host = excluded.host, pid = excluded.pid, acquired_at = excluded.acquired_at,
               heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
        )
        .bind(LEASE_NAME)
        .bind(holder)
        .bind(run_id)
        .bind(&host)
        .bind(std::process::id() as i64)
        .bind(&now_s)
        .bind(&now_s)
        .bind(&expires)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existing.filter(|e| e.holder != holder))
    }

    pub(super) async fn beat(&self, holder: &str, ttl_secs: u64) -> Result<bool, StagingError> {
        let now = Utc::now();
        let r = sqlx::query(
            "UPDATE lease SET heartbeat_at = ?, expires_at = ? WHERE name = ? AND holder = ?",
        )
        .bind(to_db_time(now))
        .bind(to_db_time(now + Duration::seconds(ttl_secs as i64)))
        .bind(LEASE_NAME)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(super) async fn drop_lease(&self, holder: &str) -> Result<(), StagingError> {
        sqlx::query("DELETE FROM lease WHERE name = ? AND holder = ?")
            .bind(LEASE_NAME)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live lease, if any (for reports).
    pub(super) async fn live_lease(&self) -> Result<Option<LeaseInfo>, StagingError> {
        let lease = sqlx::query("SELECT * FROM lease WHERE name = ?")
            .bind(LEASE_NAME)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| row_to_info(&r));
        Ok(lease.filter(|i| i.expires_at > now_utc()))
    }
}
