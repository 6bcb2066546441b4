//! Several `submit` workers on one PostgreSQL database against a latency-bound, failing,
//! throttling emulator: one worker is SIGKILLed while it holds claims, another SIGSTOPped past
//! its claims' expiry and then resumed. Every order must end in Dynamics exactly once, no
//! outcome may come from an expired claim, and the workers together must stay within the
//! shared throttling budget. Skipped (visibly) without a PostgreSQL server.

use crate::common::*;
use serde_json::Value;
use std::process::Child;
use std::time::{Duration, Instant};

const ORDERS: usize = 400;
const BUDGET_REQUESTS: u64 = 40;
const WINDOW_SECS: u64 = 5;
const CONCURRENT: u64 = 6;
const CLAIM_SECS: u64 = 3;

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {}", child.id());
}

/// The run id of the worker with this pid, once it has started.
fn run_of(ws: &Workspace, child: &Child) -> Option<i64> {
    ws.query_strings(&format!(
        "SELECT id FROM runs WHERE command = 'submit' AND pid = {}",
        child.id()
    ))
    .first()
    .and_then(|s| s.parse().ok())
}

/// Wait until the worker holds claims; returns its run id.
async fn until_it_holds_claims(ws: &Workspace, child: &Child) -> i64 {
    let start = Instant::now();
    loop {
        if let Some(run) = run_of(ws, child) {
            let held = ws.query_i64(&format!(
                "SELECT COUNT(*) FROM staged_orders WHERE status = 'in_flight' AND last_run_id = {run}"
            ));
            if held > 0 {
                return run;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "worker {} never held claims",
            child.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn four_workers_with_a_kill_and_a_stall_send_every_order_once_within_the_budget() {
    let Some(url) = pg::fresh_database("four_workers") else {
        return;
    };
    let emu = emulator(|c| {
        c.latency_ms = 120;
        c.fail_rate = 0.05;
        c.drop_rate = 0.03;
        c.seed = 11;
        c.limit_requests = BUDGET_REQUESTS;
        c.limit_window_secs = WINDOW_SECS;
        c.limit_concurrent = CONCURRENT;
        c.dop_hint = CONCURRENT as u32;
    })
    .await;
    let ws = Workspace::with_postgres(url);
    ws.write_config(
        Some(&emu.base_url),
        &format!(
            "[budget]\nrequests = {BUDGET_REQUESTS}\nwindow_secs = {WINDOW_SECS}\nconcurrent = {CONCURRENT}\n\
             [[channel]]\nname = \"shop\"\nformat = \"shopify\"\n"
        ),
    );
    ws.edit_config("lease_secs = 5", &format!("lease_secs = {CLAIM_SECS}"));
    let file = ws.write_file("in/o.csv", &shopify_csv(ORDERS, 2, "W"));
    assert_code(
        &ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]),
        0,
    );

    let mut workers: Vec<Child> = (0..4)
        .map(|_| ws.cmd().arg("submit").spawn().expect("start worker"))
        .collect();
    let killed_run = until_it_holds_claims(&ws, &workers[0]).await;
    signal(&workers[0], "-KILL");
    let stalled_run = until_it_holds_claims(&ws, &workers[1]).await;
    signal(&workers[1], "-STOP");
    // Past its claims' expiry: the others sweep them and send them again.
    tokio::time::sleep(Duration::from_secs(CLAIM_SECS * 3)).await;
    signal(&workers[1], "-CONT");

    let deadline = Instant::now() + Duration::from_secs(240);
    for w in workers.iter_mut() {
        loop {
            if w.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "a worker did not finish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for (i, w) in workers.iter_mut().enumerate().skip(1) {
        let code = w.wait().unwrap().code();
        assert_eq!(code, Some(0), "worker {i} exit code");
    }

    // Every order succeeded, exactly once in Dynamics.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        ORDERS as i64
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, ORDERS);
    let state = emu.state().await;
    assert_eq!(state["salesorderdetails"], 2 * ORDERS as u64, "{state}");

    // The killed and the stalled worker's claims expired and were swept back.
    for run in [killed_run, stalled_run] {
        let swept = ws.query_i64(&format!(
            "SELECT COUNT(*) FROM ledger WHERE error_code = 'claim_expired' AND message LIKE '%worker-{run}-%'"
        ));
        assert!(swept > 0, "run {run}'s claims were never swept");
    }
    // No outcome from an expired claim: each outcome follows, immediately, a claim by the
    // same run (a sweep in between would make it someone else's order).
    let bad = ws.query_i64(
        "SELECT COUNT(*) FROM ledger o
         WHERE o.from_status = 'in_flight' AND o.to_status IN ('succeeded', 'failed')
           AND NOT EXISTS (
             SELECT 1 FROM ledger c
             WHERE c.id = (SELECT MAX(p.id) FROM ledger p WHERE p.order_id = o.order_id AND p.id < o.id)
               AND c.to_status = 'in_flight' AND c.run_id = o.run_id)",
    );
    assert_eq!(bad, 0, "outcomes recorded without a live claim");
    // In particular the resumed worker: after its claims were swept, it recorded an outcome
    // only for orders it had claimed again.
    let stale_ledger = ws.query_i64(&format!(
        "SELECT COUNT(*) FROM ledger o
         JOIN ledger e ON e.order_id = o.order_id AND e.error_code = 'claim_expired'
                      AND e.message LIKE '%worker-{stalled_run}-%' AND e.id < o.id
         WHERE o.run_id = {stalled_run} AND o.from_status = 'in_flight'
           AND o.to_status IN ('succeeded', 'failed')
           AND NOT EXISTS (SELECT 1 FROM ledger c WHERE c.order_id = o.order_id
                             AND c.to_status = 'in_flight' AND c.run_id = {stalled_run}
                             AND c.id > e.id AND c.id < o.id)"
    ));
    assert_eq!(stale_ledger, 0, "the stalled worker recorded swept orders");

    // The shared budget: never more than BUDGET_REQUESTS requests in any window, never more
    // than CONCURRENT at once (the log of every request the workers sent).
    let peak_window = ws.query_i64(&format!(
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) OVER (ORDER BY at
             RANGE BETWEEN INTERVAL '{WINDOW_SECS} seconds' PRECEDING AND CURRENT ROW) AS n
           FROM throttle_requests) w"
    ));
    assert!(
        peak_window > 0 && peak_window <= BUDGET_REQUESTS as i64 + 1,
        "{peak_window}"
    );
    let peak_concurrent = ws.query_i64(
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT (SELECT COUNT(*) FROM throttle_requests b
             WHERE b.at <= a.at AND b.at + make_interval(secs => COALESCE(b.exec_ms, 120000) / 1000.0) > a.at) AS n
           FROM throttle_requests a) c",
    );
    assert!(peak_concurrent <= CONCURRENT as i64, "{peak_concurrent}");
    // The emulator agrees: it never saw more in flight than the budget allows.
    assert!(
        state["peaks"]["concurrent"].as_u64().unwrap() <= CONCURRENT,
        "{state}"
    );
    // Reconciliation balances.
    let out = ws.run(&["report", "--format", "json"]);
    assert_code(&out, 0);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["reconciliation"]["balanced"], true, "{report}");
    assert_eq!(report["orders"]["in_flight"], 0, "{report}");
    // The killed worker never recorded its end; its heartbeat stopped, so the report says it
    // died (not "running" for ever). The others, the stalled one included, finished.
    let runs = report["runs"].as_array().expect("runs");
    let run = |id: i64| {
        runs.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("run {id} not in the report: {report}"))
    };
    assert_eq!(run(killed_run)["finished_at"], Value::Null, "{report}");
    assert_eq!(run(killed_run)["died"], true, "{report}");
    for w in &workers[1..] {
        let r = run(run_of(&ws, w).expect("worker's run"));
        assert_eq!(r["died"], false, "{report}");
        assert!(r["finished_at"].is_string(), "{report}");
    }
    eprintln!(
        "four workers: {ORDERS} orders; peak {peak_window} requests per {WINDOW_SECS}s window (budget {BUDGET_REQUESTS}), \
         peak {peak_concurrent} concurrent (budget {CONCURRENT}); emulator: {} requests, {} throttled, {} injected 5xx, {} dropped",
        state["requests"], state["throttled"], state["failed_injected"], state["dropped"]
    );
    emu.shutdown().await;
}

/// The nightly `run` on the scheduler host beside extra workers on others: the run holds the
/// lease (a second `run` exits 4), the workers take no lease and share the orders with it.
#[tokio::test(flavor = "multi_thread")]
async fn the_nightly_run_and_extra_workers_share_the_orders_and_a_second_run_exits_4() {
    let Some(url) = pg::fresh_database("run_and_workers") else {
        return;
    };
    let emu = emulator(|c| c.latency_ms = 250).await;
    let ws = Workspace::with_postgres(url);
    ws.write_config(
        Some(&emu.base_url),
        &format!(
            "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\ninbox = \"{0}/inbox\"\narchive = \"{0}/archive\"\n",
            ws.path().display()
        ),
    );
    ws.write_file("inbox/night.csv", &shopify_csv(400, 1, "N"));
    let mut run = ws.cmd().arg("run").spawn().unwrap();
    // Once the run has staged the file, two workers join it.
    let start = Instant::now();
    while ws
        .query_strings(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'source_files'",
        )
        .first()
        .map(String::as_str)
        != Some("1")
        || ws.query_i64("SELECT COUNT(*) FROM source_files WHERE status = 'ingested'") == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never ingested"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = run_async(&ws, &["run"]).await;
    assert_code(&second, 4);
    let mut workers: Vec<Child> = (0..2)
        .map(|_| ws.cmd().arg("submit").spawn().unwrap())
        .collect();
    assert_eq!(run.wait().unwrap().code(), Some(0));
    for w in workers.iter_mut() {
        assert_eq!(w.wait().unwrap().code(), Some(0));
    }
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        400
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 400);
    // More than one process sent orders.
    let senders =
        ws.query_i64("SELECT COUNT(DISTINCT run_id) FROM ledger WHERE to_status = 'succeeded'");
    assert!(senders >= 2, "only {senders} process sent orders");
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM lease WHERE holder != '' AND expires_at > now()"),
        0
    );
    emu.shutdown().await;
}
