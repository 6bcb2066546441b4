//! Ingest: orderload's `ingest` of a generated Shopify export vs the csv + rusqlite baseline on
//! the same file, alternating runs; then peak memory at 10× the file size.

use crate::generate::{self, Generated, Size};
use crate::measure::{self, median, run_checked, thousands, verdict_at_most, ChildRun};
use crate::Bench;
use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the memory section compares against.
pub struct IngestFigures {
    pub generated: Generated,
    pub orderload_rss_mib: f64,
    pub orderload_secs: f64,
    pub db_bytes: u64,
}

const PEAK_RSS_TARGET_MIB: f64 = 64.0;

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn db_size(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            std::fs::metadata(PathBuf::from(p))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

/// `orderload --database sqlite://DB ingest --channel shop FILE`, checked against what was
/// generated.
pub fn run_orderload_ingest(
    b: &Bench,
    file: &Path,
    db: &Path,
    expect: &Generated,
    label: &str,
) -> anyhow::Result<ChildRun> {
    remove_db(db);
    let mut cmd = measure::orderload(&b.bin);
    cmd.current_dir(&b.dir)
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .args(["ingest", "--channel", "shop"])
        .arg(file);
    let run = run_checked(&mut cmd, &b.dir, label, &[0])?;
    let conn = rusqlite::Connection::open(db)?;
    let orders: i64 = conn.query_row("SELECT COUNT(*) FROM staged_orders", [], |r| r.get(0))?;
    let (rows, staged): (i64, i64) = conn.query_row(
        "SELECT SUM(rows), SUM(rows_staged) FROM source_files",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if orders as u64 != expect.orders || rows as u64 != expect.rows || staged != rows {
        bail!(
            "{label}: staged {orders} orders from {rows} rows ({staged} staged); generated {} orders in {} rows",
            expect.orders,
            expect.rows
        );
    }
    Ok(run)
}

fn run_baseline(b: &Bench, file: &Path, db: &Path, expect: &Generated) -> anyhow::Result<ChildRun> {
    remove_db(db);
    let mut cmd = std::process::Command::new(&b.self_exe);
    cmd.arg("baseline").arg(file).arg(db);
    let run = run_checked(&mut cmd, &b.dir, "baseline", &[0])?;
    let rows: u64 = run.stdout.trim().parse().context("baseline row count")?;
    if rows != expect.rows {
        bail!("baseline loaded {rows} rows, generated {}", expect.rows);
    }
    Ok(run)
}

pub fn generate_file(
    path: &Path,
    size: Size,
    seed: u64,
    prefix: &str,
) -> anyhow::Result<Generated> {
    let t = Instant::now();
    let g = generate::shopify_export(path, size, seed, prefix)
        .with_context(|| format!("generate {}", path.display()))?;
    println!(
        "  generated {}: {} line rows, {} orders, {:.1} MB in {:.1} s",
        path.file_name().unwrap_or_default().to_string_lossy(),
        thousands(g.rows),
        thousands(g.orders),
        g.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(g)
}

pub fn ingest(b: &Bench) -> anyhow::Result<IngestFigures> {
    let rows = if b.smoke { 20_000 } else { 1_000_000 };
    // Five alternated runs: single runs of the same binary spread 2.3–4.9 s on this VM's disk.
    let runs = if b.smoke { 1 } else { 5 };
    println!(
        "\n== ingest: Shopify export, {} line rows, median of {runs}",
        thousands(rows)
    );
    let file = b.dir.join("shopify-1x.csv");
    let g = generate_file(&file, Size::Rows(rows), 1, "")?;
    let base_db = b.dir.join("baseline.db");
    let ol_db = b.dir.join("ingest.db");
    let mut base = Vec::new();
    let mut ol = Vec::new();
    let mut db_bytes = 0;
    for i in 0..runs {
        base.push(run_baseline(b, &file, &base_db, &g)?);
        ol.push(run_orderload_ingest(
            b,
            &file,
            &ol_db,
            &g,
            &format!("ingest-{i}"),
        )?);
        db_bytes = db_size(&ol_db);
        eprintln!(
            "  run {}: baseline {:.2} s, orderload {:.2} s",
            i + 1,
            base[i].wall.as_secs_f64(),
            ol[i].wall.as_secs_f64()
        );
    }
    remove_db(&base_db);
    remove_db(&ol_db);
    let b_secs = median(base.iter().map(|r| r.wall.as_secs_f64()).collect());
    let o_secs = median(ol.iter().map(|r| r.wall.as_secs_f64()).collect());
    let b_rss = median(base.iter().map(ChildRun::rss_mib).collect());
    let o_rss = ol.iter().map(ChildRun::rss_mib).fold(0.0, f64::max);
    let ratio = o_secs / b_secs;
    println!(
        "  {:<46} {:>8} {:>12} {:>10} {:>7}",
        "method", "wall s", "rows/s", "peak RSS", "ratio"
    );
    println!(
        "  {:<46} {:>8.2} {:>12} {:>6.0} MiB {:>6.2}×",
        "baseline: csv + rusqlite prepared INSERT, 1 tx",
        b_secs,
        thousands((g.rows as f64 / b_secs) as u64),
        b_rss,
        1.0
    );
    println!(
        "  {:<46} {:>8.2} {:>12} {:>6.0} MiB {:>6.2}×",
        "orderload ingest (validated, staged)",
        o_secs,
        thousands((g.rows as f64 / o_secs) as u64),
        o_rss,
        ratio
    );
    println!("  ingest time: {}", verdict_at_most(ratio, 1.5));
    println!(
        "  peak RSS {o_rss:.0} MiB: {}",
        if o_rss <= PEAK_RSS_TARGET_MIB {
            format!("target ≤ {PEAK_RSS_TARGET_MIB} MiB: met")
        } else {
            format!("target ≤ {PEAK_RSS_TARGET_MIB} MiB: MISSED")
        }
    );
    println!(
        "  database: {:.0} MB ({:.2}× the file)",
        db_bytes as f64 / 1e6,
        db_bytes as f64 / g.bytes as f64
    );
    Ok(IngestFigures {
        generated: g,
        orderload_rss_mib: o_rss,
        orderload_secs: o_secs,
        db_bytes,
    })
}

/// Free bytes on the filesystem holding `dir` (`df -Pk`).
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

pub fn memory_at_scale(b: &Bench, one: &IngestFigures) -> anyhow::Result<()> {
    let wanted = 10u64;
    let per_x = one.generated.bytes + one.db_bytes;
    let free = free_bytes(&b.dir).unwrap_or(u64::MAX);
    // Leave 2 GB of head room for everyone else.
    let fits = (free.saturating_sub(2_000_000_000) / per_x.max(1)).min(wanted);
    println!(
        "\n== memory: peak RSS of orderload ingest at {wanted}× the file size ({} line rows)",
        thousands(one.generated.rows * wanted)
    );
    if fits < 2 {
        println!(
            "  skipped: {:.1} GB free, {:.1} GB needed per 1× (file + database)",
            free as f64 / 1e9,
            per_x as f64 / 1e9
        );
        return Ok(());
    }
    if fits < wanted {
        println!(
            "  only {:.1} GB free; running at {fits}× instead of {wanted}× ({:.1} GB per 1×)",
            free as f64 / 1e9,
            per_x as f64 / 1e9
        );
    }
    let file = b.dir.join(format!("shopify-{fits}x.csv"));
    let g = generate_file(&file, Size::Rows(one.generated.rows * fits), 2, "")?;
    let db = b.dir.join("ingest-scale.db");
    let run = run_orderload_ingest(b, &file, &db, &g, "ingest-scale")?;
    remove_db(&db);
    let _ = std::fs::remove_file(&file);
    let secs = run.wall.as_secs_f64();
    let growth = run.rss_mib() / one.orderload_rss_mib;
    println!(
        "  {:>4}×: {:>12} rows in {:>7.2} s ({:>9} rows/s), peak RSS {:>5.0} MiB",
        1,
        thousands(one.generated.rows),
        one.orderload_secs,
        thousands((one.generated.rows as f64 / one.orderload_secs) as u64),
        one.orderload_rss_mib
    );
    println!(
        "  {:>4}×: {:>12} rows in {:>7.2} s ({:>9} rows/s), peak RSS {:>5.0} MiB ({growth:.2}× the 1× peak)",
        fits,
        thousands(g.rows),
        secs,
        thousands((g.rows as f64 / secs) as u64),
        run.rss_mib()
    );
    let flat = run.rss_mib() <= PEAK_RSS_TARGET_MIB && growth <= 1.25;
    println!(
        "  memory flat and ≤ {PEAK_RSS_TARGET_MIB} MiB at {fits}×: {}",
        if flat { "met" } else { "MISSED" }
    );
    Ok(())
}
