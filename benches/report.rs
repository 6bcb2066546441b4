//! Report: `orderload report` (table and JSON) on a database of 1,000,000 orders and their
//! ledger, vs the sqlite3 command-line tool counting orders by status on the same file.
//!
//! The database is built fast: the binary ingests a small generated file (so the schema and
//! its migration record are the real ones), then SQL multiplies it into 100 nightly runs of
//! 10,000 orders each — files, orders (payload copied from a real staged order), batches of
//! 50, rejected rows, and a ledger with staged → claimed → outcome events per order.

use crate::generate::Size;
use crate::ingest::generate_file;
use crate::measure::{self, median, run_checked, thousands, verdict_at_most};
use crate::Bench;
use anyhow::{bail, Context as _};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn build_database(b: &Bench, db: &Path, orders: u64, per_file: u64) -> anyhow::Result<()> {
    let t = Instant::now();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let file = b.dir.join("report-seed.csv");
    generate_file(&file, Size::Orders(10), 3, "T")?;
    let mut cmd = measure::orderload(&b.bin);
    cmd.current_dir(&b.dir)
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .args(["ingest", "--channel", "shop"])
        .arg(&file);
    run_checked(&mut cmd, &b.dir, "report-seed", &[0])?;
    let _ = std::fs::remove_file(&file);

    let conn = rusqlite::Connection::open(db)?;
    let nights = orders.div_ceil(per_file);
    let sql = format!(
        r#"
PRAGMA synchronous = OFF;
BEGIN;
CREATE TEMP TABLE nights AS
  WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < {nights})
  SELECT n, (SELECT MAX(id) FROM runs) + 1 + n AS run_id, (SELECT MAX(id) FROM source_files) + 1 + n AS file_id,
         strftime('%Y-%m-%dT02:00:00Z', '2025-01-01', '+' || n || ' days') AS at,
         CASE n % 3 WHEN 0 THEN 'shop' WHEN 1 THEN 'amazon' ELSE 'woo' END AS channel
  FROM s;
INSERT INTO runs (id, command, args, host, pid, os_user, started_at, finished_at, outcome, exit_code, summary)
  SELECT run_id, 'run', 'orderload run', 'bench', 1000 + n, 'bench', at, at, 'some_failed', 3, '{{}}' FROM nights;
INSERT INTO source_files (id, sha256, path, channel, format, size_bytes, status, rows, rows_staged, rejected,
                          orders, orders_new, run_id, ingested_at)
  SELECT file_id, printf('%064d', n), '/srv/inbox/' || channel || '/orders-' || n || '.csv', channel, 'shopify',
         4000000, 'ingested', {per_file} * 5 / 2 + 20, {per_file} * 5 / 2, 20, {per_file}, {per_file}, run_id, at
  FROM nights;
INSERT INTO rejected_rows (source_file_id, row_number, column_name, reason_code, message, raw, created_at)
  WITH RECURSIVE r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r WHERE k + 1 < 20)
  SELECT file_id, 2 + k * 97, 'Lineitem price', 'bad_number', '"Lineitem price" is "12,5O"; expected a number',
         '#R' || k || ',buyer@example.com,,,,,,,,,,,,2025-03-01 10:00:00 +0100,1,Tee,"12,5O"', at
  FROM nights, r;
CREATE TEMP TABLE template AS SELECT * FROM staged_orders ORDER BY id LIMIT 1;
INSERT INTO staged_orders (channel, external_id, status, retryable, attempts, last_error_code, last_error_message,
                           last_http_status, batch_id, last_run_id, dynamics_ref, content_hash, payload, currency,
                           total, line_count, row_count, source_file_id, source_rows, order_created_at,
                           staged_at, updated_at)
  WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {orders})
  SELECT g.channel, '#B' || (1001 + s.i),
         CASE WHEN s.i % 100 < 2 THEN 'pending' WHEN s.i % 100 < 5 THEN 'failed' ELSE 'succeeded' END,
         CASE WHEN s.i % 100 = 2 THEN 1 ELSE 0 END,
         CASE WHEN s.i % 100 < 2 THEN 0 WHEN s.i % 100 = 2 THEN 5 ELSE 1 END,
         CASE WHEN s.i % 100 < 2 THEN NULL WHEN s.i % 100 = 2 THEN 'throttled' WHEN s.i % 100 < 5 THEN 'validation' END,
         CASE WHEN s.i % 100 < 2 THEN NULL WHEN s.i % 100 = 2 THEN 'still throttled after 5 attempts'
              WHEN s.i % 100 < 5 THEN 'salesorderdetail.quantity: value -1 is out of range' END,
         CASE WHEN s.i % 100 < 2 THEN NULL WHEN s.i % 100 = 2 THEN 429 WHEN s.i % 100 < 5 THEN 400 END,
         CASE WHEN s.i % 100 < 2 THEN NULL ELSE 1 + s.i / 50 END,
         CASE WHEN s.i % 100 < 2 THEN NULL ELSE g.run_id END,
         CASE WHEN s.i % 100 < 5 THEN NULL ELSE lower(hex(randomblob(16))) END,
         printf('%064x', s.i), replace(t.payload, '#T1001', '#B' || (1001 + s.i)), t.currency, t.total,
         t.line_count, t.row_count, g.file_id, t.source_rows, t.order_created_at, g.at, g.at
  FROM s JOIN nights g ON g.n = s.i / {per_file} JOIN template t;
INSERT INTO batches (id, run_id, status, orders, operations, succeeded, failed, created_at, finished_at)
  SELECT batch_id, MIN(last_run_id),
         CASE WHEN SUM(status = 'failed') = 0 THEN 'succeeded' ELSE 'partially_failed' END,
         COUNT(*), COUNT(*) * 4, SUM(status = 'succeeded'), SUM(status = 'failed'), MIN(staged_at), MIN(staged_at)
  FROM staged_orders WHERE batch_id IS NOT NULL GROUP BY batch_id;
INSERT INTO ledger (order_id, run_id, at, from_status, to_status, message)
  SELECT o.id, g.run_id, o.staged_at, NULL, 'pending', 'staged from file ' || o.source_file_id
  FROM staged_orders o JOIN nights g ON g.file_id = o.source_file_id;
INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, message)
  SELECT id, batch_id, last_run_id, staged_at, 'pending', 'in_flight', 'claimed for attempt 1'
  FROM staged_orders WHERE batch_id IS NOT NULL;
INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, http_status, error_code, message)
  SELECT id, batch_id, last_run_id, staged_at, 'in_flight', status, last_http_status, last_error_code,
         COALESCE(last_error_message, 'stored in Dynamics as ' || dynamics_ref)
  FROM staged_orders WHERE batch_id IS NOT NULL;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
"#
    );
    conn.execute_batch(&sql)
        .context("build the report database")?;
    let (n, ledger): (i64, i64) = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM staged_orders), (SELECT COUNT(*) FROM ledger)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    drop(conn);
    let bytes = std::fs::metadata(db)?.len();
    println!(
        "  built: {} orders, {} ledger events, {nights} files and runs, {:.0} MB, in {:.0} s",
        thousands(n as u64),
        thousands(ledger as u64),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Median wall seconds of `runs` runs of `make()` after one warm-up run.
fn time_runs(
    b: &Bench,
    label: &str,
    runs: usize,
    mut make: impl FnMut() -> Command,
    ok: &[i32],
) -> anyhow::Result<(f64, String)> {
    let warm = run_checked(&mut make(), &b.dir, label, ok)?;
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(
            run_checked(&mut make(), &b.dir, label, ok)?
                .wall
                .as_secs_f64(),
        );
    }
    Ok((median(times), warm.stdout))
}

pub fn report(b: &Bench) -> anyhow::Result<()> {
    let (orders, per_file) = if b.smoke {
        (20_000, 2_000)
    } else {
        (1_000_000, 10_000)
    };
    let runs = if b.smoke { 1 } else { 5 };
    println!(
        "\n== report: {} orders and their ledger, median of {runs} warm runs",
        thousands(orders)
    );
    let db = b.dir.join("report.db");
    build_database(b, &db, orders, per_file)?;
    let url = format!("sqlite://{}", db.display());
    let report = |extra: &'static [&'static str]| {
        let url = url.clone();
        move || {
            let mut c = measure::orderload(&b.bin);
            c.current_dir(&b.dir)
                .arg("--database")
                .arg(&url)
                .arg("report")
                .args(extra);
            c
        }
    };
    let (table, out) = time_runs(b, "report-table", runs, report(&[]), &[0, 3])?;
    if !out.contains("succeeded") {
        bail!("report printed no order counts:\n{out}");
    }
    let (json, out) = time_runs(
        b,
        "report-json",
        runs,
        report(&["--format", "json"]),
        &[0, 3],
    )?;
    let parsed: serde_json::Value = serde_json::from_str(&out).context("report --format json")?;
    if parsed["orders"]["total"].as_u64() != Some(orders + 10) {
        bail!(
            "report JSON counts {} orders, the database holds {}",
            parsed["orders"]["total"],
            orders + 10
        );
    }
    let (failed, _) = time_runs(b, "report-failed", runs, report(&["--failed"]), &[0, 3])?;

    let sqlite3 = Command::new("sqlite3").arg("--version").output();
    let cli = match sqlite3 {
        Ok(o) if o.status.success() => {
            let db = db.clone();
            let (secs, out) = time_runs(
                b,
                "sqlite3-cli",
                runs,
                move || {
                    let mut c = Command::new("sqlite3");
                    c.arg(&db)
                        .arg("SELECT status, count(*) FROM staged_orders GROUP BY status");
                    c
                },
                &[0],
            )?;
            if !out.contains("succeeded|") {
                bail!("sqlite3 printed no counts: {out}");
            }
            Some(secs)
        }
        _ => None,
    };
    if b.keep {
        println!("  kept {}", db.display());
    } else {
        let _ = std::fs::remove_file(&db);
    }
    match cli {
        Some(c) => {
            println!(
                "  {:<58} {:>7.3} s  1.00×",
                "sqlite3 CLI: SELECT status, count(*) … GROUP BY status", c
            );
            for (label, secs, target) in [
                ("orderload report (table)", table, true),
                ("orderload report --format json", json, true),
                ("orderload report --failed (for information)", failed, false),
            ] {
                let ratio = secs / c;
                println!(
                    "  {label:<58} {secs:>7.3} s  {ratio:.2}×  {}",
                    if target {
                        verdict_at_most(ratio, 2.0)
                    } else {
                        String::new()
                    }
                );
            }
        }
        None => {
            println!("  sqlite3 CLI not installed (apt-get install sqlite3): no baseline, ratios skipped");
            println!("  orderload report (table) {table:.3} s, --format json {json:.3} s, --failed {failed:.3} s");
        }
    }
    Ok(())
}
