//! Workers: throughput of 1, 2 and 4 `submit` workers on one PostgreSQL database against a
//! latency-bound emulator, beside the ideal `min(workers × in-flight × batch / latency, budget
//! ceiling)`. Needs a PostgreSQL server: `ORDERLOAD_BENCH_POSTGRES_URL` (or the tests'
//! `ORDERLOAD_TEST_POSTGRES_URL`; `.ci/postgres start` gives one), password in `PGPASSWORD`.

use crate::generate::Size;
use crate::ingest::generate_file;
use crate::measure::{self, run_checked};
use crate::Bench;
use anyhow::{bail, Context as _};
use orderload::emulator::EmulatorConfig;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const BATCH: u64 = 20;
const IN_FLIGHT: u64 = 2;
const LATENCY_MS: u64 = 250;
/// The shared budget: requests per window. Its ceiling sits between 2 and 4 workers' ideal,
/// to show where adding workers stops helping.
const BUDGET_REQUESTS: u64 = 60;
const WINDOW_SECS: u64 = 3;

fn server() -> Option<String> {
    [
        "ORDERLOAD_BENCH_POSTGRES_URL",
        "ORDERLOAD_TEST_POSTGRES_URL",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// A new database on the server; its URL.
fn fresh_database(server: &str, name: &str) -> anyhow::Result<String> {
    let db = format!("ol_bench_{name}_{}", std::process::id());
    let ok = Command::new("psql")
        .args(["-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", server])
        .env("PGOPTIONS", "--client-min-messages=warning")
        .args(["-c", &format!("DROP DATABASE IF EXISTS {db}")])
        .args(["-c", &format!("CREATE DATABASE {db}")])
        .status()
        .context("run psql")?
        .success();
    if !ok {
        bail!("could not create database {db} on {server}");
    }
    let (head, _) = server
        .rsplit_once('/')
        .context("server URL has no database")?;
    Ok(format!("{head}/{db}"))
}

fn psql_i64(url: &str, sql: &str) -> anyhow::Result<i64> {
    let out = Command::new("psql")
        .args(["-X", "-w", "-q", "-t", "-A", "-d", url, "-c", sql])
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("{sql}: {}", String::from_utf8_lossy(&out.stderr)))
}

pub fn workers(b: &Bench, rt: &Runtime) -> anyhow::Result<()> {
    let Some(server) = server() else {
        println!(
            "\n== workers: SKIPPED (no PostgreSQL: set ORDERLOAD_BENCH_POSTGRES_URL, or run `.ci/postgres start` and export its variables)"
        );
        return Ok(());
    };
    let orders: u64 = if b.smoke { 120 } else { 2400 };
    let latency = LATENCY_MS as f64 / 1000.0;
    let ceiling = BUDGET_REQUESTS as f64 / WINDOW_SECS as f64 * BATCH as f64;
    println!(
        "\n== workers: {orders} orders per run, batch {BATCH}, {IN_FLIGHT} in flight per worker, emulator latency {LATENCY_MS} ms, \
         shared budget {BUDGET_REQUESTS} requests / {WINDOW_SECS} s (ceiling {ceiling:.0} orders/s)"
    );
    println!("workers | orders/s | ideal | fraction | bound by | result");
    for n in [1u64, 2, 4] {
        let url = fresh_database(&server, &format!("w{n}"))?;
        let emu = rt
            .block_on(orderload::emulator::start(EmulatorConfig {
                latency_ms: LATENCY_MS,
                dop_hint: 16,
                limit_concurrent: 16,
                limit_requests: BUDGET_REQUESTS,
                limit_window_secs: WINDOW_SECS,
                ..Default::default()
            }))
            .context("start the emulator")?;
        let config = b.dir.join(format!("workers-{n}.toml"));
        std::fs::write(
            &config,
            format!(
                "database_url = \"{url}\"\n[ingest]\nsettle_secs = 0\n[submit]\nbatch_size = {BATCH}\nmax_parallel = {IN_FLIGHT}\nlease_secs = 30\n\
                 [budget]\nrequests = {BUDGET_REQUESTS}\nwindow_secs = {WINDOW_SECS}\nconcurrent = 16\n{}",
                emu.target_toml()
            ),
        )?;
        let file = b.dir.join(format!("workers-{n}.csv"));
        let g = generate_file(&file, Size::Orders(orders), 11, &format!("w{n}"))?;
        let mut ingest = measure::orderload(&b.bin);
        ingest
            .current_dir(&b.dir)
            .arg("--config")
            .arg(&config)
            .args(["ingest", "--channel", "shop"])
            .arg(&file);
        run_checked(&mut ingest, &b.dir, &format!("workers-{n}-ingest"), &[0])?;
        let _ = std::fs::remove_file(&file);
        if g.orders != orders {
            bail!("generated {} orders, wanted {orders}", g.orders);
        }

        let mut children = Vec::new();
        for i in 0..n {
            let log = std::fs::File::create(b.dir.join(format!("workers-{n}-{i}.log")))?;
            let mut cmd = measure::orderload(&b.bin);
            cmd.current_dir(&b.dir)
                .arg("--config")
                .arg(&config)
                .arg("submit")
                .stdout(std::process::Stdio::null())
                .stderr(log);
            children.push(cmd.spawn().context("start a worker")?);
        }
        // Sustained rate: from the first order in the emulator to the last.
        let mut first: Option<(Instant, u64)> = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        let last = loop {
            let count = rt.block_on(emu.state())["salesorders"]
                .as_u64()
                .unwrap_or(0);
            let now = Instant::now();
            if count > 0 && first.is_none() {
                first = Some((now, count));
            }
            if count >= orders {
                break now;
            }
            if children
                .iter_mut()
                .all(|c| matches!(c.try_wait(), Ok(Some(_))))
                || now > deadline
            {
                bail!("workers stopped with {count} of {orders} orders in the emulator");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for mut c in children {
            let status = c.wait()?;
            if !status.success() {
                bail!("a worker exited with {status}");
            }
        }
        let state = rt.block_on(emu.state());
        let duplicates_free = state["salesorders"].as_u64() == Some(orders);
        let succeeded = psql_i64(
            &url,
            "SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'",
        )?;
        if succeeded != orders as i64 || !duplicates_free {
            bail!(
                "{succeeded} succeeded, emulator holds {}",
                state["salesorders"]
            );
        }
        let (t0, c0) = first.context("no order arrived")?;
        let rate = (orders - c0) as f64 / (last - t0).as_secs_f64().max(1e-3);
        let by_workers = (n * IN_FLIGHT * BATCH) as f64 / latency;
        let ideal = by_workers.min(ceiling);
        let fraction = rate / ideal;
        println!(
            "{n:>7} | {rate:>8.0} | {ideal:>5.0} | {:>7.1} % | {} | {}",
            fraction * 100.0,
            if by_workers < ceiling {
                "workers"
            } else {
                "budget"
            },
            if b.smoke {
                "smoke: not judged".to_string()
            } else if fraction >= 0.8 {
                "met (>= 80 %)".to_string()
            } else {
                format!("MISSED (< 80 %, by {:.1} points)", 80.0 - fraction * 100.0)
            }
        );
        println!(
            "        emulator: {} requests, {} throttled (429), peak {} concurrent",
            state["requests"], state["throttled"], state["peaks"]["concurrent"]
        );
        rt.block_on(emu.shutdown());
    }
    let knee = (ceiling * latency / (IN_FLIGHT * BATCH) as f64).ceil();
    println!(
        "adding workers stops helping at about {knee:.0} workers here: beyond that the shared budget ({ceiling:.0} orders/s), \
         not the workers, is the ceiling"
    );
    Ok(())
}
