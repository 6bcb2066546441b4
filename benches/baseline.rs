//! The ingest baseline from `perf-baseline.md`: a minimal csv + rusqlite program that loads a
//! file's raw rows (every column as text) with one prepared INSERT in one transaction, default
//! rollback journal. It runs as a child process (`orderload-bench baseline FILE DB`) so that
//! its peak memory is measured the same way as orderload's.

use anyhow::Context as _;
use std::path::Path;

pub fn load_raw_rows(file: &Path, db: &Path) -> anyhow::Result<u64> {
    let _ = std::fs::remove_file(db);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("open {}", file.display()))?;
    let columns = reader.headers()?.len();
    let mut conn = rusqlite::Connection::open(db)?;
    let names: Vec<String> = (0..columns).map(|i| format!("c{i} TEXT")).collect();
    conn.execute_batch(&format!("CREATE TABLE raw_rows ({})", names.join(", ")))?;
    let placeholders = vec!["?"; columns].join(", ");
    let tx = conn.transaction()?;
    let mut rows = 0u64;
    {
        let mut insert = tx.prepare(&format!("INSERT INTO raw_rows VALUES ({placeholders})"))?;
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record)? {
            insert.execute(rusqlite::params_from_iter(
                (0..columns).map(|i| record.get(i).unwrap_or("")),
            ))?;
            rows += 1;
        }
    }
    tx.commit()?;
    Ok(rows)
}
