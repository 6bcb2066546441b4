//! The SQLite backend: opening the file, pragmas, migrations.

use super::{checkpoint, StagingError};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// Page size of new database files (existing files keep theirs).
const PAGE_SIZE: u32 = 8192;

/// Connections of a process's pool: the kept writer, readers, the checkpoint task.
const MAX_CONNECTIONS: u32 = 4;

/// Staging in one SQLite file.
#[derive(Clone)]
pub struct SqliteStaging {
    pub(crate) pool: SqlitePool,
    /// The background checkpoint task, stopped with the last clone.
    _checkpointer: std::sync::Arc<checkpoint::Checkpointer>,
    /// The connection every write transaction runs on (ingest chunks, claims, batch starts,
    /// outcomes, requeues), kept between transactions. SQLite's page cache is per connection
    /// and is dropped whenever another connection wrote since: taking whichever pooled
    /// connection is idle (the pool hands them out in turn) re-read the B-tree paths of every
    /// table and index from the file for each transaction. `close` hands it back first.
    writer: std::sync::Arc<tokio::sync::Mutex<Option<PoolConnection<Sqlite>>>>,
}

impl SqliteStaging {
    /// The one function that opens a database: creates the parent folder and the file (mode
    /// 0600: it holds customer data), sets pragmas, runs the embedded migrations.
    pub async fn open(url: &str) -> Result<Self, StagingError> {
        let path = crate::config::database_path(url);
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| StagingError::Folder {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
        }
        create_private_file(&path).map_err(|source| StagingError::Folder {
            path: path.display().to_string(),
            source,
        })?;
        super::sqlite_memory::configure();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|source| StagingError::Open {
                path: path.display().to_string(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .page_size(PAGE_SIZE)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Checkpoints run beside the writer instead of inside its commits (checkpoint.rs).
            .pragma("wal_autocheckpoint", "0")
            .pragma(
                "journal_size_limit",
                checkpoint::LOG_LIMIT_BYTES.to_string(),
            )
            // Statement journals in memory: every multi-row UPDATE inside a transaction (claim,
            // outcomes) copies the pages it touches into one, which otherwise is a temporary
            // file written with a system call per page. They are small: one statement's pages.
            .pragma("temp_store", "memory");
        // Switching a brand-new file to WAL takes a lock the busy timeout does not wait for;
        // two processes opening a new database at once can see SQLITE_BUSY here: retry.
        let mut attempt: u64 = 0;
        let pool = loop {
            match SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                Err(e) if attempt < 10 && is_busy(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(source) => {
                    return Err(StagingError::Open {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        };
        // Two processes opening a new database at once (two cron runs on the first night)
        // both apply the migrations; the loser's CREATE TABLE fails once the winner has
        // committed. Running them again then finds them applied.
        let migrator = sqlx::migrate!("sql/sqlite");
        let mut attempt: u64 = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                // A lost race is a database error while running a migration; anything else
                // (a migration this binary does not have, one changed since) stays so.
                Err(
                    sqlx::migrate::MigrateError::Execute(_)
                    | sqlx::migrate::MigrateError::ExecuteMigration(..),
                ) if attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(super::migration_error(e, &migrator)),
            }
        }
        let checkpointer = std::sync::Arc::new(checkpoint::start(pool.clone()));
        Ok(Self {
            pool,
            _checkpointer: checkpointer,
            writer: Default::default(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Hand the kept writer connection back to the pool (`close` waits for every
    /// connection to be back; a kept one never would be).
    pub(crate) async fn release_writer(&self) {
        self.writer.lock().await.take();
    }

    /// The kept writer connection (taken from the pool on first use), locked for one
    /// transaction's time.
    pub(crate) async fn writer(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, PoolConnection<Sqlite>>, StagingError> {
        let mut slot = self.writer.lock().await;
        if slot.is_none() {
            *slot = Some(self.pool.acquire().await?);
        }
        Ok(tokio::sync::MutexGuard::map(slot, |c| {
            c.as_mut().expect("filled above")
        }))
    }
}

/// SQLITE_BUSY / SQLITE_LOCKED (primary codes 5 and 6).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

#[cfg(unix)]
fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::Staging;

    /// `close` (which `report` and the tests end with) waited forever for the kept writer
    /// once the checkpoint task had used a connection of the pool meanwhile: a CI run hung
    /// on it. The writer goes back to the pool first now. Without that, 37 of 40 of these
    /// rounds hung here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_returns_after_the_writer_was_used() {
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("c.db").display());
            let staging = SqliteStaging::open(&url).await.unwrap();
            sqlx::query("CREATE TABLE t (a)")
                .execute(&mut **staging.writer().await.unwrap())
                .await
                .unwrap();
            // Long enough for the checkpoint task (every 50 ms) to take its turn.
            tokio::time::sleep(Duration::from_millis(60)).await;
            sqlx::query("SELECT 1")
                .execute(staging.pool())
                .await
                .unwrap();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), Staging::close(&staging)).await;
            assert!(closed.is_ok(), "round {round}: close did not return");
        }
    }

    /// A database made before migration 4 (full indexes on `batch_id`) is upgraded on open:
    /// the indexes become partial, lookups by batch still use them and find the same rows,
    /// and the connections are back to temporary storage in memory afterwards.
    #[tokio::test]
    async fn a_database_from_before_the_partial_batch_indexes_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("u.db").display());
        let staging = SqliteStaging::open(&url).await.unwrap();
        let mut w = staging.writer().await.unwrap();
        for sql in [
            "DROP INDEX staged_orders_by_batch",
            "CREATE INDEX staged_orders_by_batch ON staged_orders (batch_id)",
            "DROP INDEX ledger_by_batch",
            "CREATE INDEX ledger_by_batch ON ledger (batch_id)",
            "DELETE FROM _sqlx_migrations WHERE version = 4",
            "INSERT INTO staged_orders (channel, external_id, status, content_hash, payload, currency,
                 line_count, row_count, source_rows, order_created_at, staged_at, updated_at, batch_id)
             VALUES ('shop', '#1', 'succeeded', 'h', '{}', 'EUR', 1, 1, '[1]', 't', 't', 't', 7),
                    ('shop', '#2', 'pending', 'h', '{}', 'EUR', 1, 1, '[2]', 't', 't', 't', NULL)",
            "INSERT INTO ledger (order_id, batch_id, at, to_status)
             VALUES (1, NULL, 't', 'pending'), (1, 7, 't', 'succeeded'), (2, NULL, 't', 'pending')",
        ] {
            sqlx::query(sql).execute(&mut **w).await.unwrap();
        }
        drop(w);
        Staging::close(&staging).await;

        let staging = SqliteStaging::open(&url).await.unwrap();
        let pool = staging.pool();
        let index_sql: Vec<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE name IN ('staged_orders_by_batch', 'ledger_by_batch') ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(index_sql.len(), 2);
        assert!(
            index_sql
                .iter()
                .all(|s| s.ends_with("WHERE batch_id IS NOT NULL")),
            "{index_sql:?}"
        );
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT order_id FROM ledger WHERE batch_id IN (SELECT value FROM json_each('[7]'))",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(
            plan.iter().any(|p| p.3.contains("ledger_by_batch")),
            "{plan:?}"
        );
        let found: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM staged_orders WHERE batch_id = 7
             UNION ALL SELECT order_id FROM ledger WHERE batch_id = 7",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(found, vec![1, 1]);
        // 2 = MEMORY on every connection of the pool (the migration's among them): the
        // migration's switch to files did not outlive it.
        let mut writer = staging.writer().await.unwrap();
        let mut others = Vec::new();
        for _ in 1..MAX_CONNECTIONS {
            others.push(pool.acquire().await.unwrap());
        }
        let mut temp_store = vec![sqlx::query_scalar::<_, i64>("PRAGMA temp_store")
            .fetch_one(&mut **writer)
            .await
            .unwrap()];
        for c in &mut others {
            temp_store.push(
                sqlx::query_scalar("PRAGMA temp_store")
                    .fetch_one(&mut **c)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(temp_store, vec![2; MAX_CONNECTIONS as usize]);
        drop(others);
        drop(writer);
        Staging::close(&staging).await;
    }
}
