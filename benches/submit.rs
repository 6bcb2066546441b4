//! Submit: the real binary's `submit` against the in-process emulator — under scaled-down
//! service-protection limits (vs the ceiling those limits allow), and with no latency and no
//! limits (vs the time ingesting the same orders took).

use crate::generate::Size;
use crate::ingest::generate_file;
use crate::measure::{self, median, run_checked, thousands, verdict_at_most, ChildRun};
use crate::Bench;
use anyhow::{bail, Context as _};
use orderload::emulator::{EmulatorConfig, RunningEmulator};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Orders per `$batch` request: the loader's default `submit.batch_size`.
pub const BATCH_SIZE: u64 = 50;

fn write_config(
    b: &Bench,
    name: &str,
    db: &Path,
    emu: &RunningEmulator,
) -> anyhow::Result<PathBuf> {
    let path = b.dir.join(format!("{name}.toml"));
    let text = format!(
        "database_url = \"sqlite://{}\"\n[ingest]\nsettle_secs = 0\n[submit]\nbatch_size = {BATCH_SIZE}\n{}",
        db.display(),
        emu.target_toml()
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Copy a closed SQLite database (and its WAL, if one is left) to `to`.
fn copy_db(from: &Path, to: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal"] {
        let (mut f, mut t) = (from.as_os_str().to_owned(), to.as_os_str().to_owned());
        f.push(suffix);
        t.push(suffix);
        let f = PathBuf::from(f);
        if f.exists() {
            std::fs::copy(&f, PathBuf::from(t)).with_context(|| format!("copy {}", f.display()))?;
        }
    }
    Ok(())
}

/// `name.csv` with `orders` generated orders, in the scratch folder.
fn generate_orders(b: &Bench, name: &str, orders: u64) -> anyhow::Result<PathBuf> {
    let file = b.dir.join(format!("{name}.csv"));
    let g = generate_file(&file, Size::Orders(orders), 7, name)?;
    if g.orders != orders {
        bail!("generated {} orders, wanted {orders}", g.orders);
    }
    Ok(file)
}

/// Stage `orders` generated orders through the binary's ingest; returns the ingest run.
fn stage(b: &Bench, name: &str, config: &Path, orders: u64) -> anyhow::Result<ChildRun> {
    let file = generate_orders(b, name, orders)?;
    let run = run_checked(
        &mut ingest_cmd(b, config, &file),
        &b.dir,
        &format!("{name}-ingest"),
        &[0],
    )?;
    let _ = std::fs::remove_file(&file);
    Ok(run)
}

fn ingest_cmd(b: &Bench, config: &Path, file: &Path) -> std::process::Command {
    let mut cmd = measure::orderload(&b.bin);
    cmd.current_dir(&b.dir)
        .arg("--config")
        .arg(config)
        .args(["ingest", "--channel", "shop"])
        .arg(file);
    cmd
}

fn submit_cmd(b: &Bench, config: &Path) -> std::process::Command {
    let mut cmd = measure::orderload(&b.bin);
    cmd.current_dir(&b.dir)
        .arg("--config")
        .arg(config)
        .arg("submit");
    cmd
}

/// Every order succeeded in staging and exists exactly once in the emulator.
fn check_all_sent(db: &Path, state: &serde_json::Value, orders: u64) -> anyhow::Result<(i64, i64)> {
    let conn = rusqlite::Connection::open(db)?;
    let not_ok: i64 = conn.query_row(
        "SELECT COUNT(*) FROM staged_orders WHERE status != 'succeeded'",
        [],
        |r| r.get(0),
    )?;
    let throttled_failures: i64 = conn.query_row(
        "SELECT COUNT(*) FROM staged_orders WHERE status = 'failed' AND last_http_status = 429",
        [],
        |r| r.get(0),
    )?;
    let in_emulator = state["salesorders"].as_u64().unwrap_or(0);
    if in_emulator != orders {
        bail!("the emulator holds {in_emulator} sales orders; {orders} were staged");
    }
    Ok((not_ok, throttled_failures))
}

fn start_emulator(rt: &Runtime, config: EmulatorConfig) -> anyhow::Result<Arc<RunningEmulator>> {
    Ok(Arc::new(
        rt.block_on(orderload::emulator::start(config))
            .context("start the emulator")?,
    ))
}

fn stop_emulator(rt: &Runtime, emu: Arc<RunningEmulator>) {
    if let Ok(emu) = Arc::try_unwrap(emu) {
        rt.block_on(emu.shutdown());
    }
}

pub fn throttled(b: &Bench, rt: &Runtime) -> anyhow::Result<()> {
    // Dataverse allows 6,000 requests and 1,200 s of execution per user per 300 s; the bench
    // scales the window down and the request budget with it so the limit binds in a minute.
    let (orders, window, limit, latency_ms, per_op_ms) = if b.smoke {
        (1_000u64, 2u64, 4u64, 20u64, 0u64)
    } else {
        (18_000, 10, 60, 150, 1)
    };
    let ceiling = (limit * BATCH_SIZE) as f64 / window as f64;
    println!(
        "\n== submit under throttling: {} orders, {limit} requests per {window} s window, latency {latency_ms} ms + {per_op_ms} ms per operation",
        thousands(orders)
    );
    let emu = start_emulator(
        rt,
        EmulatorConfig {
            limit_requests: limit,
            limit_window_secs: window,
            limit_exec_ms: 4_000 * window,
            latency_ms,
            latency_per_op_ms: per_op_ms,
            ..Default::default()
        },
    )?;
    let db = b.dir.join("throttled.db");
    remove_db(&db);
    let config = write_config(b, "throttled", &db, &emu)?;
    stage(b, "throttled", &config, orders)?;

    // Sample the emulator's order count while the binary submits.
    let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sampler = {
        let (emu, samples, done) = (emu.clone(), samples.clone(), done.clone());
        rt.spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let n = emu.state().await["salesorders"].as_u64().unwrap_or(0);
                samples
                    .lock()
                    .unwrap()
                    .push((start.elapsed().as_secs_f64(), n));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let run = run_checked(
        &mut submit_cmd(b, &config),
        &b.dir,
        "throttled-submit",
        &[0],
    );
    done.store(true, Ordering::Relaxed);
    let _ = rt.block_on(sampler);
    let run = run?;
    let state = rt.block_on(emu.state());
    stop_emulator(rt, emu);
    let (not_ok, throttled_failures) = check_all_sent(&db, &state, orders)?;
    remove_db(&db);

    let secs = run.wall.as_secs_f64();
    let overall = orders as f64 / secs;
    // Sustained: from the end of the first window (when the first burst's requests start to
    // leave the sliding window) until the last order arrived.
    let samples = samples.lock().unwrap().clone();
    let end = samples
        .iter()
        .find(|(_, n)| *n >= orders)
        .copied()
        .unwrap_or((secs, orders));
    let from = samples.iter().find(|(t, _)| *t >= window as f64).copied();
    let sustained = match from {
        Some((t0, n0)) if end.0 > t0 + window as f64 / 2.0 => (end.1 - n0) as f64 / (end.0 - t0),
        _ => overall,
    };
    let fraction = sustained / ceiling;
    println!(
        "  ceiling: {limit} requests × {BATCH_SIZE} orders ÷ {window} s = {ceiling:.0} orders/s"
    );
    println!(
        "  submit: {secs:.1} s wall, {overall:.0} orders/s overall (incl. the first window's burst), {sustained:.0} orders/s sustained"
    );
    println!(
        "  sustained / ceiling = {:.1} % — target ≥ 90 %: {}",
        fraction * 100.0,
        if fraction >= 0.9 { "met" } else { "MISSED" }
    );
    println!(
        "  emulator: {} requests, {} answered 429; orders not succeeded: {not_ok}, failed by throttling: {throttled_failures} — {}",
        state["requests"],
        state["throttled"],
        if not_ok == 0 && throttled_failures == 0 { "no order failed" } else { "ORDERS FAILED" }
    );
    println!("  {}", run.stdout.lines().next().unwrap_or(""));
    if not_ok != 0 {
        bail!("{not_ok} orders did not succeed under throttling");
    }
    Ok(())
}

pub fn overhead(b: &Bench, rt: &Runtime) -> anyhow::Result<()> {
    let orders = if b.smoke { 2_000 } else { 100_000 };
    let runs = if b.smoke { 1 } else { 3 };
    println!(
        "\n== submit overhead: {} orders, emulator without latency or limits, median of {runs} (ingest, submit and the job alone alternated)",
        thousands(orders)
    );
    let file = generate_orders(b, "overhead", orders)?;
    let (mut ingests, mut submits, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    let mut emulator_cpus = Vec::new();
    let mut last_state = serde_json::Value::Null;
    for run in 1..=runs {
        // A fresh emulator each run: every order is created, as on a first night.
        let emu = start_emulator(
            rt,
            EmulatorConfig {
                limit_requests: u64::MAX / 4,
                limit_exec_ms: u64::MAX / 4,
                limit_concurrent: 10_000,
                ..Default::default()
            },
        )?;
        let db = b.dir.join(format!("overhead-{run}.db"));
        remove_db(&db);
        let config = write_config(b, &format!("overhead-{run}"), &db, &emu)?;
        let ingest = run_checked(
            &mut ingest_cmd(b, &config, &file),
            &b.dir,
            &format!("overhead-{run}-ingest"),
            &[0],
        )?;
        // The same staged orders for the job without Dataverse (below).
        let at_once_db = b.dir.join(format!("overhead-{run}-at-once.db"));
        remove_db(&at_once_db);
        copy_db(&db, &at_once_db)?;
        let emulator_cpu = measure::own_cpu_secs();
        let submit = run_checked(
            &mut submit_cmd(b, &config),
            &b.dir,
            &format!("overhead-{run}-submit"),
            &[0],
        );
        emulator_cpus.push(measure::own_cpu_secs() - emulator_cpu);
        let state = rt.block_on(emu.state());
        stop_emulator(rt, emu);
        let submit = submit?;
        let (not_ok, _) = check_all_sent(&db, &state, orders)?;
        remove_db(&db);
        if not_ok != 0 {
            bail!("{not_ok} orders did not succeed");
        }
        let mut cmd = std::process::Command::new(&b.self_exe);
        cmd.arg("submit-at-once").arg(&at_once_db);
        let at_once = run_checked(&mut cmd, &b.dir, &format!("overhead-{run}-at-once"), &[0])?;
        remove_db(&at_once_db);
        let answered: u64 = at_once
            .stdout
            .trim()
            .parse()
            .context("submit-at-once output")?;
        if answered != orders {
            bail!("the job without Dataverse recorded {answered} succeeded orders; {orders} were staged");
        }
        println!(
            "  run {run}: ingest {:.2} s, submit {:.2} s, job alone {:.2} s",
            ingest.wall.as_secs_f64(),
            submit.wall.as_secs_f64(),
            at_once.wall.as_secs_f64()
        );
        last_state = state;
        ingests.push(ingest);
        submits.push(submit);
        alone.push(at_once);
    }
    let _ = std::fs::remove_file(&file);
    let wall = |v: &[ChildRun]| median(v.iter().map(|r| r.wall.as_secs_f64()).collect());
    let cpu = |v: &[ChildRun]| median(v.iter().map(|r| r.cpu_secs).collect());
    let (i, s, a) = (wall(&ingests), wall(&submits), wall(&alone));
    let ratio = s / i;
    // Peak RSS is not shown here: a child forked from this process (which holds the
    // emulator) may count the parent's pages before exec.
    println!(
        "  ingest (baseline): {i:>7.2} s  {:>9} orders/s  CPU {:>6.1} s  1.00×",
        thousands((orders as f64 / i) as u64),
        cpu(&ingests)
    );
    println!(
        "  submit:            {s:>7.2} s  {:>9} orders/s  CPU {:>6.1} s  {ratio:.2}×  {}",
        thousands((orders as f64 / s) as u64),
        cpu(&submits),
        verdict_at_most(ratio, 2.0)
    );
    println!(
        "  job alone:         {a:>7.2} s  {:>9} orders/s  CPU {:>6.1} s  {:.2}×  (the same job against a target that answers at once: no HTTP, no emulator)",
        thousands((orders as f64 / a) as u64),
        cpu(&alone),
        a / i
    );
    let e = median(emulator_cpus);
    println!(
        "  emulator (in this process) during the submit: CPU {e:>6.1} s; on both of this machine's {} cores that alone is {:.2}× the ingest",
        cores(),
        e / cores() as f64 / i
    );
    println!(
        "  the job alone is the floor of the submit with this ledger (its claims, batch rows, outcomes and ledger events); the emulator's share is the floor of its side"
    );
    println!(
        "  emulator (last run): {} requests ({} $batch); every order succeeded, once",
        last_state["requests"], last_state["batches"]
    );
    Ok(())
}

/// CPUs this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
