//! WAL checkpoints off the writer's path.
//!
//! By default SQLite checkpoints inside the commit that pushes the write-ahead log past 1,000
//! pages: the connection that writes stops to copy the log back into the database file
//! (~5 % of a large ingest, plus its `fsync`, all on the one thread that bounds ingest's
//! speed). Instead every connection opened here has automatic checkpoints off, and this task
//! checkpoints on a pool connection of its own every 50 ms, beside the writer:
//!
//! - `PASSIVE` copies whatever the log holds without waiting for anyone;
//! - once the log is past [`RESTART_FRAMES`] and nearly all of it is copied, `RESTART` copies
//!   the rest and makes the next writer start the log from the beginning (it waits for the
//!   writer of the moment, briefly), so the log does not grow with the size of the load;
//! - `journal_size_limit` then truncates the file back to [`LOG_LIMIT_BYTES`].
//!
//! A reader that holds an old snapshot for long (a big report) keeps any checkpoint from
//! passing it, exactly as with automatic checkpoints; the log grows meanwhile and is copied
//! once the reader is done. When the last connection closes, SQLite checkpoints and removes
//! the log as usual.

use sqlx::SqlitePool;
use std::time::Duration;

/// Log size (in pages) after which the log is restarted once it is copied.
pub(super) const RESTART_FRAMES: i64 = 4096;

/// What the log file is truncated to after a restart.
pub(super) const LOG_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

const EVERY: Duration = Duration::from_millis(50);

/// Stops the checkpoint task when the last handle on the database is dropped.
pub(super) struct Checkpointer(tokio::task::AbortHandle);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start checkpointing `pool`'s database in the background.
pub(super) fn start(pool: SqlitePool) -> Checkpointer {
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(EVERY).await;
            if pool.is_closed() {
                break;
            }
            // (busy, pages in the log, pages copied); busy or an error: try again next time.
            let passive: Result<(i64, i64, i64), _> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&pool)
                    .await;
            if let Ok((_, log, copied)) = passive {
                if log > RESTART_FRAMES && copied * 10 >= log * 9 {
                    let _ = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                        .execute(&pool)
                        .await;
                }
            }
        }
    });
    Checkpointer(task.abort_handle())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::SqliteStaging;

    fn size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// A writer that keeps committing: the log is copied into the database while it writes,
    /// and restarted, instead of growing with everything written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_copied_and_restarted_while_a_writer_keeps_writing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let wal = dir.path().join("w.db-wal");
        let staging = SqliteStaging::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let pool = staging.pool();
        sqlx::query("CREATE TABLE filler (b BLOB NOT NULL)")
            .execute(pool)
            .await
            .unwrap();
        // 256 MiB in 1 MiB transactions: eight times the restart threshold (32 MiB of 8 KiB
        // pages), with the pauses a pipeline's writer has between chunks. Without the task the
        // log grows to all 256 MiB; the bound leaves the task room to fall behind on a machine
        // whose cores are busy with other work (CI runs builds beside the tests).
        let mut largest_log = 0;
        for _ in 0..256 {
            let mut tx = pool.begin().await.unwrap();
            for _ in 0..16 {
                sqlx::query("INSERT INTO filler (b) VALUES (randomblob(65536))")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            largest_log = largest_log.max(size(&wal));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM filler")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(rows, 256 * 16);
        assert!(
            largest_log < 128 * 1024 * 1024,
            "the log grew to {largest_log} bytes while 256 MiB were written"
        );
        assert!(
            size(&db) > 128 * 1024 * 1024,
            "only {} bytes reached the database file while the writer wrote",
            size(&db)
        );
    }
}
