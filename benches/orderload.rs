//! `cargo bench --bench orderload [-- SECTION ...]`: the performance figures of issue 6, each
//! printed with its ratio to a baseline measured in the same run (see BENCHMARKS.md).
//!
//! Sections: `ingest` (1M Shopify line rows vs a csv + rusqlite prepared-INSERT program),
//! `memory` (peak RSS at 10× the file size), `throttled` (submit against the emulator's
//! service-protection limits vs the ceiling they allow), `overhead` (submit vs ingest of
//! 100,000 orders, no latency, no limits), `report` (`orderload report` vs the sqlite3 CLI on
//! 1M orders), `workers` (1, 2 and 4 submit workers on PostgreSQL vs the ideal throughput;
//! skipped without a PostgreSQL server). No arguments runs them all.
//!
//! `ORDERLOAD_BENCH_SMOKE=1` runs small sizes in well under a minute (CI). Data is generated
//! at bench time (seeded) in a temp folder (`ORDERLOAD_BENCH_DIR` to choose it,
//! `ORDERLOAD_BENCH_KEEP=1` to keep it), and the release binary is run as a child process.
//!
//! Helper modes of this binary: `baseline FILE DB` (the ingest baseline, run as a child so its
//! memory is measured like orderload's), `submit-at-once DB` (the submit job against a target
//! that answers at once, run as a child of `overhead`) and `generate ROWS FILE` (write a file
//! for profiling).

mod answer_at_once;
mod baseline;
mod generate;
mod ingest;
mod measure;
mod report;
mod submit;
mod workers;

use anyhow::Context as _;
use std::path::PathBuf;

// The binary's allocator (src/main.rs), so that the job run here (`submit-at-once`, with
// SQLite allocating through it as in the binary) costs what it costs there. The baseline's
// work happens in SQLite's own allocator and in a reused csv record, which this does not touch.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What every section needs.
pub struct Bench {
    /// The release `orderload` binary under test.
    pub bin: PathBuf,
    /// This bench binary (re-executed as `baseline`).
    pub self_exe: PathBuf,
    /// Scratch folder for generated files and databases.
    pub dir: PathBuf,
    pub smoke: bool,
    /// `ORDERLOAD_BENCH_KEEP=1`: leave generated files and databases behind for profiling.
    pub keep: bool,
}

const SECTIONS: &[&str] = &[
    "ingest",
    "memory",
    "throttled",
    "overhead",
    "report",
    "workers",
];

fn main() -> anyhow::Result<()> {
    // cargo passes `--bench`; the harness has no flags of its own.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("baseline") if args.len() == 3 => {
            let rows = baseline::load_raw_rows(args[1].as_ref(), args[2].as_ref())?;
            println!("{rows}");
            return Ok(());
        }
        Some("submit-at-once") if args.len() == 2 => {
            let n = answer_at_once::submit(args[1].as_ref(), submit::BATCH_SIZE as usize)?;
            println!("{n}");
            return Ok(());
        }
        Some("generate") if args.len() == 3 => {
            let rows: u64 = args[1].parse().context("ROWS")?;
            let g = generate::shopify_export(args[2].as_ref(), generate::Size::Rows(rows), 1, "")?;
            println!("{} rows, {} orders, {} bytes", g.rows, g.orders, g.bytes);
            return Ok(());
        }
        _ => {}
    }
    for a in &args {
        if !SECTIONS.contains(&a.as_str()) {
            anyhow::bail!(
                "unknown section {a:?}; sections: {} (none = all)",
                SECTIONS.join(", ")
            );
        }
    }
    let wanted = |s: &str| args.is_empty() || args.iter().any(|a| a == s);

    let smoke = std::env::var("ORDERLOAD_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let keep = std::env::var("ORDERLOAD_BENCH_KEEP").is_ok_and(|v| v == "1");
    let tmp = match std::env::var_os("ORDERLOAD_BENCH_DIR") {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            tempfile::Builder::new()
                .prefix("orderload-bench-")
                .tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("orderload-bench-")
            .tempdir()?,
    };
    let bench = Bench {
        bin: measure::orderload_binary()?,
        self_exe: std::env::current_exe()?,
        dir: tmp.path().to_path_buf(),
        smoke,
        keep,
    };
    println!(
        "orderload benchmarks{} — binary {}, scratch {}",
        if smoke {
            " (SMOKE: small sizes, figures not meaningful)"
        } else {
            ""
        },
        bench.bin.display(),
        bench.dir.display()
    );
    println!("machine: {}", machine());

    let mut failures = Vec::new();
    let mut ingest_figures = None;
    if wanted("ingest") || wanted("memory") {
        match ingest::ingest(&bench) {
            Ok(f) => ingest_figures = Some(f),
            Err(e) => failures.push(("ingest", e)),
        }
    }
    if wanted("memory") {
        if let Some(f) = &ingest_figures {
            if let Err(e) = ingest::memory_at_scale(&bench, f) {
                failures.push(("memory", e));
            }
        }
    }
    if wanted("throttled") || wanted("overhead") || wanted("workers") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        if wanted("throttled") {
            if let Err(e) = submit::throttled(&bench, &rt) {
                failures.push(("throttled", e));
            }
        }
        if wanted("overhead") {
            if let Err(e) = submit::overhead(&bench, &rt) {
                failures.push(("overhead", e));
            }
        }
        if wanted("workers") {
            if let Err(e) = workers::workers(&bench, &rt) {
                failures.push(("workers", e));
            }
        }
    }
    if wanted("report") {
        if let Err(e) = report::report(&bench) {
            failures.push(("report", e));
        }
    }

    if keep {
        let kept = tmp.keep();
        println!("kept scratch folder {}", kept.display());
    }
    if failures.is_empty() {
        println!("\nall benchmarks ran");
        Ok(())
    } else {
        for (name, e) in &failures {
            eprintln!("benchmark {name} failed: {e:#}");
        }
        anyhow::bail!("{} benchmark section(s) failed", failures.len())
    }
}

/// CPU model, cores and memory, for the figures' context.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{model}, {cores} cores, {:.1} GiB",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}
