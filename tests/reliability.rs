//! Reliability under crashes, target faults and concurrent runs: nothing lost, nothing sent
//! twice, every failure recorded with its reason. See RELIABILITY.md for the figures.

use crate::common::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHOP: &str = "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n";

/// Replace `from` with `to` in the workspace configuration (the text must be there).
pub fn edit_config(ws: &Workspace, from: &str, to: &str) {
    ws.edit_config(from, to);
}

pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

pub async fn post_json(url: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "POST {url}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// `orderload report --format json`, parsed.
pub async fn report_json(ws: &Workspace) -> Value {
    let out = run_async(ws, &["report", "--format", "json"]).await;
    assert_code(&out, 0);
    serde_json::from_str(&stdout(&out)).expect("report JSON")
}

pub fn count(ws: &Workspace, status: &str) -> i64 {
    ws.query_i64(&format!(
        "SELECT COUNT(*) FROM staged_orders WHERE status = '{status}'"
    ))
}

/// Staging invariants after any run: nothing left in flight, every failure has a code and a
/// message, and the reconciliation in the report balances.
pub async fn assert_consistent(ws: &Workspace) -> Value {
    assert_eq!(count(ws, "in_flight"), 0, "orders stuck in flight");
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM staged_orders WHERE status = 'failed' AND (COALESCE(last_error_code, '') = '' OR COALESCE(last_error_message, '') = '')"
        ),
        0,
        "a failed order without a reason"
    );
    let report = report_json(ws).await;
    assert_eq!(report["reconciliation"]["balanced"], true, "{report}");
    let o = &report["orders"];
    assert_eq!(
        o["pending"].as_i64().unwrap()
            + o["in_flight"].as_i64().unwrap()
            + o["succeeded"].as_i64().unwrap()
            + o["failed"].as_i64().unwrap(),
        o["total"].as_i64().unwrap(),
        "{report}"
    );
    report
}

/// Submit settings for the fault tests: small batches, sent one request at a time or a few.
fn small_batches(ws: &Workspace, batch_size: usize) {
    edit_config(ws, "batch_size = 10", &format!("batch_size = {batch_size}"));
}

fn ingest_generated(ws: &Workspace, orders: usize, lines: usize, prefix: &str) {
    let file = ws.write_file(
        &format!("in/{prefix}.csv"),
        &shopify_csv(orders, lines, prefix),
    );
    assert_code(
        &ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]),
        0,
    );
}

/// Wait for a child without blocking the runtime (the in-process emulator keeps serving).
async fn wait_child(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("child did not finish within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Crashes: SIGKILL at seeded random moments, then a run to completion.
// ---------------------------------------------------------------------------------------------

pub const CRASH_TRIALS: usize = 24;
pub const CRASH_ORDERS: usize = 150;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    let emu = emulator(|c| {
        c.latency_ms = 120;
        c.latency_per_op_ms = 5;
    })
    .await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    small_batches(&ws, 2);
    edit_config(&ws, "lease_secs = 5", "lease_secs = 5\nmax_parallel = 2");
    ingest_generated(&ws, CRASH_ORDERS, 2, "K");

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0dd1_7e57);
    let mut left_in_flight = 0i64;
    let mut kills_with_orders_in_flight = 0;
    let mut kills_after_some_success = 0;
    for trial in 0..CRASH_TRIALS {
        let succeeded_before = count(&ws, "succeeded");
        let child = ws
            .cmd()
            .arg("submit")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.gen_range(150..1100);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mut child = child;
        let finished_by_itself = child.try_wait().unwrap().is_some();
        assert!(
            !finished_by_itself,
            "trial {trial}: the submit ended before the kill; use more orders"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let in_flight = count(&ws, "in_flight");
        left_in_flight += in_flight;
        if in_flight > 0 {
            kills_with_orders_in_flight += 1;
        }
        if count(&ws, "succeeded") > succeeded_before {
            kills_after_some_success += 1;
        }
        // A kill never loses a status change half-way: every order has a valid status.
        assert_eq!(
            ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status NOT IN ('pending', 'in_flight', 'succeeded', 'failed')"),
            0
        );
    }
    eprintln!("crash trials: kills_with_in_flight={kills_with_orders_in_flight} kills_after_some_success={kills_after_some_success} left_in_flight={left_in_flight} succeeded={}", count(&ws, "succeeded"));
    assert!(
        count(&ws, "succeeded") < CRASH_ORDERS as i64,
        "work was left for the final run"
    );
    assert!(
        kills_with_orders_in_flight >= CRASH_TRIALS / 3,
        "only {kills_with_orders_in_flight} of {CRASH_TRIALS} kills caught orders in flight"
    );
    assert!(
        kills_after_some_success >= CRASH_TRIALS / 6,
        "{kills_after_some_success}"
    );

    // The final run recovers what the last kill left and finishes the job.
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(count(&ws, "succeeded"), CRASH_ORDERS as i64);
    // Every order that a kill left in flight was recovered by the next run, with a ledger event.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'recovered'"),
        left_in_flight
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'recovered' AND (from_status != 'in_flight' OR to_status != 'pending')"),
        0
    );
    // Every run but the last was killed, so it never finished; each later run took over at once.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE command = 'submit' AND finished_at IS NULL"),
        CRASH_TRIALS as i64
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, CRASH_ORDERS);
    // The batches the kills cut off were marked abandoned by the run that took over; none is
    // left `sending` for ever.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM batches WHERE status = 'sending'"),
        0
    );
    assert!(
        ws.query_i64(
            "SELECT COUNT(*) FROM batches WHERE status = 'abandoned' AND finished_at IS NOT NULL"
        ) > 0
    );
    let state = emu.state().await;
    assert_eq!(state["salesorders"], CRASH_ORDERS, "{state}");
    assert_eq!(state["salesorderdetails"], CRASH_ORDERS * 2, "{state}");
    let report = assert_consistent(&ws).await;
    assert_eq!(report["orders"]["succeeded"], CRASH_ORDERS);
    eprintln!(
        "crash figures: trials={CRASH_TRIALS} orders={CRASH_ORDERS} kills_with_in_flight={kills_with_orders_in_flight} recovered_events={left_in_flight} emulator_requests={} batches={}",
        state["requests"], state["batches"]
    );
    emu.shutdown().await;
}

/// What a SIGKILLed `rerun` left behind.
struct KilledRerun {
    /// Its row in `runs` (none when the kill came before the run was recorded).
    run_id: Option<i64>,
    /// Orders it put back to pending (its `rerun` ledger events).
    requeued: i64,
    /// Orders it sent and recorded as succeeded before the kill.
    succeeded: i64,
    /// Orders it had claimed and not recorded: still in flight under its claim.
    in_flight: i64,
    /// Batches it had started and not recorded (requests on the wire or waiting for one).
    sending: i64,
}

/// `orderload rerun ARGS` as a child process, SIGKILLed after `delay`; panics if it ended
/// by itself before that (the kill must land mid-work).
async fn kill_rerun_after(ws: &Workspace, args: &[&str], delay: Duration) -> KilledRerun {
    let runs_before = ws.query_i64("SELECT COALESCE(MAX(id), 0) FROM runs");
    let mut child = ws
        .cmd()
        .arg("rerun")
        .args(args)
        .stdout(std::fs::File::create(ws.path().join("rerun.out")).unwrap())
        .stderr(std::fs::File::create(ws.path().join("rerun.err")).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(delay).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "rerun {args:?} ended before the kill after {delay:?}; give it more work\n{}\n{}",
        std::fs::read_to_string(ws.path().join("rerun.out")).unwrap(),
        std::fs::read_to_string(ws.path().join("rerun.err")).unwrap()
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run_id = ws
        .query_strings(&format!(
            "SELECT CAST(id AS TEXT) FROM runs WHERE command = 'rerun' AND pid = {} AND id > {runs_before}",
            child.id()
        ))
        .first()
        .map(|id| id.parse::<i64>().unwrap());
    let of_run =
        |sql: &str| run_id.map_or(0, |r| ws.query_i64(&sql.replace("RUN", &r.to_string())));
    KilledRerun {
        run_id,
        requeued: of_run("SELECT COUNT(*) FROM ledger WHERE run_id = RUN AND error_code = 'rerun'"),
        succeeded: of_run(
            "SELECT COUNT(*) FROM ledger WHERE run_id = RUN AND to_status = 'succeeded'",
        ),
        in_flight: of_run(
            "SELECT COUNT(*) FROM staged_orders WHERE status = 'in_flight' AND last_run_id = RUN",
        ),
        sending: of_run("SELECT COUNT(*) FROM batches WHERE run_id = RUN AND status = 'sending'"),
    }
}

/// `submit --max-orders N` with every answer from Dynamics lost after it stored the orders:
/// N orders end `failed` (retries exhausted) in one batch while Dynamics has them. The batch.
async fn fail_one_batch(ws: &Workspace, emu: &str, orders: usize) -> i64 {
    post_json(
        &format!("{emu}/_emulator/faults"),
        json!({"drop_rate": 1.0, "latency_ms": 0, "latency_per_op_ms": 0}),
    )
    .await;
    edit_config(ws, "batch_size = 2", &format!("batch_size = {orders}"));
    let out = run_async(ws, &["submit", "--max-orders", &orders.to_string()]).await;
    edit_config(ws, &format!("batch_size = {orders}"), "batch_size = 2");
    assert_code(&out, 3);
    let batch = ws.query_i64("SELECT MAX(id) FROM batches");
    assert_eq!(
        ws.query_strings(&format!(
            "SELECT orders || ' ' || failed FROM batches WHERE id = {batch}"
        )),
        [format!("{orders} {orders}")]
    );
    batch
}

pub const RERUN_KILL_ROUNDS: usize = 8;
pub const RERUN_KILL_ORDERS: usize = 120;

/// `rerun` SIGKILLed at seeded moments while it resends, in its three writing forms:
/// `--batch ID` (a batch whose orders failed), `--failed`, and `--include-succeeded --batch …`
/// (orders Dynamics has, sent again as updates). Each round first makes two batches of 16
/// orders fail with their answers lost (Dynamics stored them), then kills the three reruns one
/// after the other, each finding what the kill before it left. The last one is then run again
/// to its end (it must send every order of its batches, those the kill left in flight too),
/// and a `submit` finishes the job: every order once in Dynamics with its lines once, nothing
/// stuck, each rerun that got far enough recorded in `reruns` and in the ledger, and no order
/// sent by a rerun that had not chosen it.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_rerun_at_random_moments_loses_nothing_and_duplicates_nothing() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    small_batches(&ws, 2);
    // A failed order stays failed until an operator reruns it (one attempt per claim).
    edit_config(
        &ws,
        "lease_secs = 5",
        "lease_secs = 5\nmax_parallel = 2\nmax_attempts = 1",
    );
    edit_config(&ws, "max_retries = 8", "max_retries = 1");
    ingest_generated(&ws, RERUN_KILL_ORDERS, 2, "V");
    assert_code(&run_async(&ws, &["submit", "--max-orders", "40"]).await, 0);
    let sent_batches = ws.query_strings("SELECT CAST(id AS TEXT) FROM batches ORDER BY id");
    assert_eq!(sent_batches.len(), 20);
    let mut include_succeeded = vec!["--include-succeeded", "--batch"];
    include_succeeded.extend(sent_batches.iter().map(String::as_str));

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x2e_2a11);
    let mut kills = Vec::new();
    for _round in 0..RERUN_KILL_ROUNDS {
        let failed_batch = fail_one_batch(&ws, &emu.base_url, 16).await.to_string();
        fail_one_batch(&ws, &emu.base_url, 16).await;
        // Answers come back again, slowly: 50 ms a request and 50 ms an operation (a batch
        // of 2 orders of 2 lines is 6 operations), so that kills land while batches are out.
        post_json(
            &format!("{}/_emulator/faults", emu.base_url),
            json!({"drop_rate": 0.0, "latency_ms": 50, "latency_per_op_ms": 50}),
        )
        .await;
        for args in [
            vec!["--batch", failed_batch.as_str()],
            vec!["--failed"],
            include_succeeded.clone(),
        ] {
            let delay = Duration::from_millis(rng.gen_range(100..1200));
            let killed = kill_rerun_after(&ws, &args, delay).await;
            // A kill never leaves a status half-changed or a failure without its reason.
            assert_eq!(
                ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status NOT IN ('pending', 'in_flight', 'succeeded', 'failed')"),
                0
            );
            assert_eq!(
                ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'failed' AND (COALESCE(last_error_code, '') = '' OR COALESCE(last_error_message, '') = '')"),
                0,
                "a failed order without a reason"
            );
            let report = report_json(&ws).await;
            assert_eq!(report["reconciliation"]["balanced"], true, "{report}");
            kills.push((
                args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                delay,
                killed,
            ));
        }
    }
    for (args, delay, k) in &kills {
        eprintln!(
            "rerun kill after {:>4} ms: run {:?}, {} requeued, {} succeeded, {} left in flight, {} batches out: rerun {}",
            delay.as_millis(),
            k.run_id,
            k.requeued,
            k.succeeded,
            k.in_flight,
            k.sending,
            args[..args.len().min(2)].join(" ")
        );
    }
    let mid_send = kills
        .iter()
        .filter(|(_, _, k)| k.in_flight > 0 && k.sending > 0)
        .count();
    let after_some_success = kills.iter().filter(|(_, _, k)| k.succeeded > 0).count();
    assert!(
        mid_send >= kills.len() / 2,
        "only {mid_send} of {} kills landed while a batch was out",
        kills.len()
    );
    assert!(
        after_some_success >= kills.len() / 4,
        "{after_some_success}"
    );
    // No rerun sends an order it did not choose: an order nothing ever claimed is not in
    // Dynamics (and there are such orders: the rest of the file).
    let never_claimed = ws.query_strings(
        "SELECT 'shop ' || external_id FROM staged_orders WHERE id NOT IN (SELECT order_id FROM ledger WHERE to_status = 'in_flight')",
    );
    assert!(never_claimed.len() >= 20, "{never_claimed:?}");
    let stored: Vec<Value> = stored_orders(&emu.base_url).await;
    assert!(
        stored
            .iter()
            .all(|o| !never_claimed.iter().any(|n| o["name"] == n.as_str())),
        "an order no run claimed is in Dynamics"
    );

    // Each killed rerun that got that far recorded its request in `reruns` and a `rerun`
    // ledger event for each order it put back to pending — both or neither — and claimed only
    // those orders; the batches of a `rerun --batch ID` name the batch they resend.
    for (args, _, k) in &kills {
        let Some(run) = k.run_id else { continue };
        let recorded = ws.query_strings(&format!(
            "SELECT orders || ' ' || mode || ' ' || filter FROM reruns WHERE run_id = {run}"
        ));
        if k.requeued == 0 {
            assert!(
                recorded.is_empty(),
                "rerun {args:?}: recorded as {recorded:?}, but no order was put back to pending"
            );
            assert_eq!(k.in_flight + k.succeeded, 0, "rerun {args:?}");
            continue;
        }
        assert_eq!(recorded.len(), 1, "rerun {args:?}: {recorded:?}");
        let (head, filter) = recorded[0].split_at(recorded[0].find('{').unwrap());
        assert_eq!(head, format!("{} submit ", k.requeued), "rerun {args:?}");
        let filter: Value = serde_json::from_str(filter).unwrap();
        assert_eq!(
            filter["failed"],
            args.iter().any(|a| a == "--failed"),
            "{filter}"
        );
        assert_eq!(
            filter["include_succeeded"],
            args.iter().any(|a| a == "--include-succeeded"),
            "{filter}"
        );
        let batches: Vec<Value> = args
            .iter()
            .filter_map(|a| a.parse::<i64>().ok())
            .map(Value::from)
            .collect();
        assert_eq!(filter["batches"], Value::Array(batches), "{filter}");
        assert_eq!(
            ws.query_i64(&format!(
                "SELECT COUNT(*) FROM ledger WHERE run_id = {run} AND to_status = 'in_flight'
                   AND order_id NOT IN (SELECT order_id FROM ledger WHERE run_id = {run} AND error_code = 'rerun')"
            )),
            0,
            "rerun {args:?} claimed an order it had not chosen"
        );
        if args[0] == "--batch" {
            assert_eq!(
                ws.query_i64(&format!(
                    "SELECT COUNT(*) FROM batches WHERE run_id = {run} AND parent_batch_id IS NOT {}",
                    args[1]
                )),
                0
            );
        }
    }

    // Answers at once again. The last kill's rerun, run again to its end, sends every order
    // of its batches, also those the kill left in flight: this rerun holds the lease, so their
    // run is dead (it used to skip them as "in flight in another run" and leave them pending).
    post_json(
        &format!("{}/_emulator/faults", emu.base_url),
        json!({"latency_ms": 0, "latency_per_op_ms": 0}),
    )
    .await;
    let left_by_the_last_kill = kills.last().unwrap().2.in_flight;
    assert!(left_by_the_last_kill > 0);
    let mut again = vec!["rerun"];
    again.extend(include_succeeded.iter().copied());
    let out = run_async(&ws, &again).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains(&format!(
            "put back to pending {left_by_the_last_kill} orders left in flight by a run that died"
        )) && !stdout(&out).contains("in flight in another run"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        ws.query_strings(&format!(
            "SELECT DISTINCT status FROM staged_orders
             WHERE id IN (SELECT order_id FROM ledger WHERE batch_id IN ({}))",
            sent_batches.join(", ")
        )),
        ["succeeded"],
        "the rerun left orders of its batches unsent"
    );
    // What the last `rerun --failed` did not take is rerun, and a normal submit sends
    // everything left.
    if count(&ws, "failed") > 0 {
        assert_code(&run_async(&ws, &["rerun", "--failed"]).await, 0);
    }
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(count(&ws, "succeeded"), RERUN_KILL_ORDERS as i64);
    let left_in_flight: i64 = kills.iter().map(|(_, _, k)| k.in_flight).sum();
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'recovered'"),
        left_in_flight,
        "one recovered event per order a kill left in flight"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'recovered' AND (from_status != 'in_flight' OR to_status != 'pending')"),
        0
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE command = 'rerun' AND finished_at IS NULL"),
        kills.iter().filter(|(_, _, k)| k.run_id.is_some()).count() as i64,
        "every killed rerun, and only those, never finished"
    );
    // The ledger tells each order's story without a gap: every event starts where the one
    // before it ended, the last ends at the order's status, and every failure has a reason.
    assert_eq!(
        ws.query_strings(
            "SELECT order_id || ': ' || COALESCE(prev, '-') || ', then ' || COALESCE(from_status, '-') || ' -> ' || to_status
             FROM (SELECT order_id, from_status, to_status,
                          LAG(to_status) OVER (PARTITION BY order_id ORDER BY id) AS prev FROM ledger)
             WHERE prev IS NOT from_status LIMIT 5"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM staged_orders o
             WHERE status IS NOT (SELECT to_status FROM ledger WHERE order_id = o.id ORDER BY id DESC LIMIT 1)"
        ),
        0
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE to_status = 'failed' AND (COALESCE(error_code, '') = '' OR COALESCE(message, '') = '')"),
        0
    );
    // Dynamics has every order once, each with its 2 lines once.
    let stored = stored_orders(&emu.base_url).await;
    assert_eq!(stored.len(), RERUN_KILL_ORDERS);
    for o in &stored {
        let name = o["name"].as_str().unwrap().replace(' ', ".");
        assert_eq!(
            o["line_keys"],
            json!([format!("{name}.1"), format!("{name}.2")]),
            "{o}"
        );
    }
    let state = emu.state().await;
    assert_eq!(state["salesorders"], RERUN_KILL_ORDERS, "{state}");
    assert_eq!(state["salesorderdetails"], RERUN_KILL_ORDERS * 2, "{state}");
    let report = assert_consistent(&ws).await;
    assert_eq!(report["orders"]["succeeded"], RERUN_KILL_ORDERS);
    eprintln!(
        "rerun crash figures: kills={} mid_send={mid_send} after_some_success={after_some_success} recovered_events={left_in_flight} never_claimed_before_the_end={} reruns_recorded={} emulator_requests={} batches={}",
        kills.len(),
        never_claimed.len(),
        ws.query_i64("SELECT COUNT(*) FROM reruns"),
        state["requests"],
        state["batches"]
    );
    emu.shutdown().await;
}

pub const INGEST_KILLS: usize = 6;
pub const INGEST_KILL_ORDERS: usize = 3000;

/// A Shopify export of `INGEST_KILL_ORDERS` orders of 2 lines where every 100th order gets a
/// third line (a whole first row again) 50 orders later, so orders whose parts are far apart
/// are merged on the way; and the number of lines it holds.
fn export_with_far_apart_parts() -> (String, i64) {
    let csv = shopify_csv(INGEST_KILL_ORDERS, 2, "R");
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let mut extra_lines = 0;
    // From the end, so the indexes before each insertion stay right.
    for order in (0..INGEST_KILL_ORDERS - 50).rev().step_by(100) {
        let first = 1 + 2 * order;
        let part = lines[first]
            .replace("Tee 0,", "Tee 7,")
            .replace("SKU-0,", "SKU-7,");
        lines.insert(1 + 2 * (order + 50), part);
        extra_lines += 1;
    }
    (
        lines.join("\n") + "\n",
        INGEST_KILL_ORDERS as i64 * 2 + extra_lines,
    )
}

/// `ingest` SIGKILLed at seeded moments while it stages a file, with a `submit` between some
/// kills, which sends none of the half-read file's orders (a later part of one may still
/// come): each later ingest reads the file again from the start instead of calling it a
/// duplicate, and in the end every order is staged and sent once, with all its lines once.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_killed_mid_file_is_read_again_and_nothing_is_lost_or_doubled() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    edit_config(&ws, "settle_secs = 0", "settle_secs = 0\nchunk_orders = 25");
    let (csv, lines_total) = export_with_far_apart_parts();
    let file = ws.write_file("in/orders.csv", &csv);
    let file = file.to_str().unwrap();
    let staged = || ws.query_i64("SELECT COUNT(*) FROM staged_orders");
    // The schema exists before the first poll.
    orderload::staging::open(&ws.db_url())
        .await
        .unwrap()
        .close()
        .await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1a57_0e55);
    let mut marks: Vec<i64> = (0..INGEST_KILLS)
        .map(|_| rng.gen_range(100..INGEST_KILL_ORDERS as i64 - 300))
        .collect();
    marks.sort();
    let mut progress = Vec::new();
    for (trial, mark) in marks.iter().enumerate() {
        let mut child = ingest_until_staged(&ws, file, *mark).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        progress.push(staged());
        assert_eq!(
            ws.query_strings("SELECT status FROM source_files"),
            ["reading"],
            "trial {trial}: the killed ingest's file is not finished"
        );
        if trial == 0 {
            // At 7 a.m. the report says what happened: the run died, the file was left half
            // read, and the lease is free for the next run.
            let report = report_json(&ws).await;
            assert_eq!(report["runs"][0]["died"], true, "{}", report["runs"]);
            assert_eq!(
                report["files"][0]["interrupted"], true,
                "{}",
                report["files"]
            );
            let table = stdout(&run_async(&ws, &["report"]).await);
            assert!(
                table.contains(" died ")
                    && table.contains(" interrupted ")
                    && table.contains("whose process is gone"),
                "{table}"
            );
        }
        if trial % 2 == 1 {
            assert_code(&run_async(&ws, &["submit"]).await, 0);
            assert_eq!(
                assert_stored_once(&emu.base_url).await,
                0,
                "trial {trial}: an order of the half-read file was sent (it may lack lines)"
            );
        }
    }
    eprintln!("ingest kills: staged orders at each kill {progress:?}");
    assert!(
        progress.last().copied().unwrap_or(0) < INGEST_KILL_ORDERS as i64,
        "the last kill came too late"
    );

    let out = run_async(&ws, &["ingest", "--channel", "shop", file]).await;
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("reading it again from the start"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        ws.query_strings("SELECT status FROM source_files"),
        ["ingested"]
    );
    assert_eq!(staged(), INGEST_KILL_ORDERS as i64);
    assert_eq!(
        ws.query_i64("SELECT SUM(line_count) FROM staged_orders"),
        lines_total
    );
    assert_eq!(
        ws.query_i64("SELECT rows FROM source_files"),
        ws.query_i64("SELECT SUM(row_count) FROM staged_orders")
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE from_status IS NULL"),
        INGEST_KILL_ORDERS as i64,
        "an order was staged twice"
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 0);
    let report = report_json(&ws).await;
    assert_eq!(report["files"][0]["interrupted"], false);
    assert_eq!(report["runs"][0]["died"], false);

    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(count(&ws, "succeeded"), INGEST_KILL_ORDERS as i64);
    assert_eq!(assert_stored_once(&emu.base_url).await, INGEST_KILL_ORDERS);
    let state = emu.state().await;
    assert_eq!(state["salesorders"], INGEST_KILL_ORDERS, "{state}");
    assert_eq!(state["salesorderdetails"], lines_total, "{state}");
    assert_consistent(&ws).await;
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Target faults, combined: 5xx, drops after commit, timeouts, 429 storms, expiring and
//    revoked tokens, and the emulator restarted (a new process, empty store) mid-run.
// ---------------------------------------------------------------------------------------------

/// `orderload emulator` as a child process on a fixed port, so it can be killed and restarted.
struct EmulatorProcess {
    child: Child,
    base_url: String,
}

const FAULT_FLAGS: &[&str] = &[
    "--latency-ms",
    "40",
    "--fail-rate",
    "0.1",
    "--drop-rate",
    "0.1",
    "--seed",
    "5",
    "--limit-requests",
    "8",
    "--limit-window-secs",
    "1",
    "--token-lifetime-secs",
    "3",
];

impl EmulatorProcess {
    async fn start(ws: &Workspace, port: u16, flags: &[&str]) -> Self {
        let log = std::fs::File::create(ws.path().join(format!("emulator-{port}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orderload"))
            .args(["emulator", "--listen", &format!("127.0.0.1:{port}")])
            .args(flags)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base_url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{base_url}/_emulator/state")).await {
                if r.status().is_success() {
                    return Self { child, base_url };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the emulator did not start on port {port}");
    }

    async fn state(&self) -> Value {
        get_json(&format!("{}/_emulator/state", self.base_url)).await
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no goodbye to open connections
        self.child.wait().unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub const FAULT_ORDERS: usize = 80;

#[tokio::test(flavor = "multi_thread")]
async fn combined_target_faults_and_an_emulator_restart_lose_nothing_and_duplicate_nothing() {
    let ws = Workspace::new();
    let port = free_port();
    let emu = EmulatorProcess::start(&ws, port, FAULT_FLAGS).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    small_batches(&ws, 2);
    // Requests slower than this time out (the emulator's latency is raised mid-run).
    edit_config(&ws, "[target.retry]", "timeout_secs = 1\n[target.retry]");
    ingest_generated(&ws, FAULT_ORDERS, 1, "G");

    let out_path = ws.path().join("submit.out");
    let err_path = ws.path().join("submit.err");
    let submit = ws
        .cmd()
        .arg("submit")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();

    // Timeouts: every request takes 1.5 s for a while, longer than the client waits.
    assert!(
        wait_until(Duration::from_secs(30), || count(&ws, "succeeded") >= 5).await,
        "no progress"
    );
    post_json(
        &format!("{}/_emulator/faults", emu.base_url),
        json!({"latency_ms": 1500}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    post_json(
        &format!("{}/_emulator/faults", emu.base_url),
        json!({"latency_ms": 40}),
    )
    .await;
    // Every token the client holds stops working at once.
    post_json(
        &format!("{}/_emulator/revoke-tokens", emu.base_url),
        json!({}),
    )
    .await;

    // Then the emulator dies and a new one (empty store) comes up on the same port.
    wait_until(Duration::from_secs(30), || count(&ws, "succeeded") >= 30).await;
    let old_state = emu.state().await;
    let old_count = assert_stored_once(&emu.base_url).await;
    emu.kill();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let emu = EmulatorProcess::start(&ws, port, FAULT_FLAGS).await;

    let status = wait_child(submit, Duration::from_secs(120)).await;
    let code = status.code().expect("exited, not killed");
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(matches!(code, 0 | 3 | 5), "exit {code}\n{out}\n{err}");
    // The exit code says what happened (DESIGN.md: 3 some failed, 5 target unavailable).
    let outcome = ws.query_strings("SELECT outcome FROM runs WHERE command = 'submit'");
    match code {
        5 => {
            assert_eq!(outcome, vec!["target_unavailable"]);
            assert!(out.contains("stopped:"), "{out}");
        }
        3 => assert!(count(&ws, "failed") > 0, "{out}"),
        _ => assert_eq!(count(&ws, "succeeded"), FAULT_ORDERS as i64),
    }
    // Nothing stuck, every failure with its reason, the books balance.
    let report = assert_consistent(&ws).await;
    assert_eq!(report["orders"]["total"], FAULT_ORDERS);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE to_status = 'failed' AND (COALESCE(error_code, '') = '' OR COALESCE(message, '') = '')"),
        0
    );
    let failed_codes = ws.query_strings(
        "SELECT DISTINCT last_error_code FROM staged_orders WHERE status = 'failed' ORDER BY 1",
    );
    let new_state = emu.state().await;
    // The faults really happened.
    assert!(
        old_state["failed_injected"].as_u64().unwrap() > 0,
        "{old_state}"
    );
    assert!(old_state["dropped"].as_u64().unwrap() > 0, "{old_state}");
    assert!(old_state["throttled"].as_u64().unwrap() > 0, "{old_state}");
    assert!(
        old_state["tokens_issued"].as_u64().unwrap() >= 2,
        "{old_state}"
    );

    // Faults off; resend what failed, what is pending, and what the dead emulator took with it.
    post_json(
        &format!("{}/_emulator/faults", emu.base_url),
        json!({"fail_rate": 0.0, "drop_rate": 0.0, "latency_ms": 0}),
    )
    .await;
    post_json(
        &format!("{}/_emulator/limits", emu.base_url),
        json!({"limit_requests": 100000}),
    )
    .await;
    if count(&ws, "failed") > 0 {
        assert_code(&run_async(&ws, &["rerun", "--failed"]).await, 0);
    }
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    let batches = ws.query_strings(
        "SELECT CAST(id AS TEXT) FROM batches WHERE parent_batch_id IS NULL ORDER BY id",
    );
    let mut args = vec!["rerun", "--include-succeeded", "--batch"];
    args.extend(batches.iter().map(String::as_str));
    assert_code(&run_async(&ws, &args).await, 0);
    assert_eq!(count(&ws, "succeeded"), FAULT_ORDERS as i64);
    assert_eq!(
        assert_stored_once(&emu.base_url).await,
        FAULT_ORDERS,
        "every order exactly once in the new emulator"
    );
    assert_consistent(&ws).await;
    let last = emu.state().await;
    eprintln!(
        "fault figures: exit={code} failed_codes={failed_codes:?} stored_before_restart={old_count} old_emulator={old_state} new_emulator_during_run={new_state} new_emulator_final={last}"
    );
    emu.kill();
}

// ---------------------------------------------------------------------------------------------
// 4. Concurrency: runs started together, a run during a rerun, a dead holder's lease.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_started_together_one_works_the_other_exits_4() {
    let emu = emulator(|c| c.latency_ms = 200).await;
    let ws = Workspace::new();
    ws.write_config(
        Some(&emu.base_url),
        &format!(
            "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\ninbox = \"{}/inbox\"\n",
            ws.path().display()
        ),
    );
    small_batches(&ws, 2);
    ws.write_file("inbox/a.csv", &shopify_csv(12, 1, "C"));
    // Create the database first so both race for the lease, not for the schema (that race
    // is the next test).
    std::fs::create_dir_all(ws.path().join("empty")).unwrap();
    assert_code(
        &run_async(
            &ws,
            &[
                "ingest",
                "--channel",
                "shop",
                ws.path().join("empty").to_str().unwrap(),
            ],
        )
        .await,
        0,
    );
    let spawn = || {
        ws.cmd()
            .arg("run")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(
        codes,
        [Some(0), Some(4)],
        "a: {}\nb: {}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if a.status.code() == Some(4) { &a } else { &b };
    assert!(
        stderr(loser).contains("holds the lease"),
        "{}",
        stderr(loser)
    );
    assert_eq!(count(&ws, "succeeded"), 12);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM source_files"),
        1,
        "the file was read once"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE outcome = 'lease_held'"),
        1
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 12);
    emu.shutdown().await;
}

#[test]
fn two_first_runs_on_a_new_database_do_not_trip_over_the_schema() {
    for round in 0..3 {
        let ws = Workspace::new();
        ws.write_config(None, SHOP);
        let file = ws.write_file("in/a.csv", &shopify_csv(3, 1, "W"));
        let spawn = || {
            ws.cmd()
                .args(["ingest", "--channel", "shop", file.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        for o in [&a, &b] {
            assert!(
                matches!(o.status.code(), Some(0) | Some(4)),
                "round {round}: {}",
                stderr(o)
            );
        }
        assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 3);
        assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files"), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_or_an_ingest_during_a_rerun_exits_4_and_touches_nothing() {
    let emu = emulator(|c| c.fail_rate = 1.0).await;
    let ws = Workspace::new();
    ws.write_config(
        Some(&emu.base_url),
        &format!(
            "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\ninbox = \"{0}/inbox\"\narchive = \"{0}/archive\"\n",
            ws.path().display()
        ),
    );
    small_batches(&ws, 1);
    edit_config(&ws, "max_retries = 8", "max_retries = 0");
    ingest_generated(&ws, 6, 1, "R");
    let out = run_async(&ws, &["submit"]).await;
    assert!(
        matches!(out.status.code(), Some(3) | Some(5)),
        "{}",
        stderr(&out)
    );
    post_json(
        &format!("{}/_emulator/faults", emu.base_url),
        json!({"fail_rate": 0.0, "latency_ms": 400}),
    )
    .await;
    let rerun = ws
        .cmd()
        .args([
            "rerun",
            "--order",
            "shop:#R1000",
            "shop:#R1001",
            "shop:#R1002",
            "shop:#R1003",
            "shop:#R1004",
            "shop:#R1005",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || ws
            .query_i64("SELECT COUNT(*) FROM lease")
            == 1)
        .await
    );
    ws.write_file("inbox/new.csv", &shopify_csv(2, 1, "N"));
    let ledger_before = ws.query_i64("SELECT COUNT(*) FROM ledger WHERE order_id IN (SELECT id FROM staged_orders WHERE external_id LIKE '#N%')");
    for args in [&["run"][..], &["ingest"][..], &["submit"][..]] {
        let out = run_async(&ws, args).await;
        assert_code(&out, 4);
        assert!(
            stderr(&out).contains("holds the lease"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Reading is always allowed.
    assert_code(&run_async(&ws, &["report", "--format", "json"]).await, 0);
    assert!(
        ws.path().join("inbox/new.csv").exists(),
        "the inbox file was not touched"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id LIKE '#N%'"),
        0
    );
    assert_eq!(ledger_before, 0);
    let rerun = tokio::task::spawn_blocking(move || rerun.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    assert_eq!(count(&ws, "succeeded"), 6);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE outcome = 'lease_held'"),
        3
    );
    // Once the rerun is done the next run picks the new file up.
    assert_code(&run_async(&ws, &["run"]).await, 0);
    assert_eq!(count(&ws, "succeeded"), 8);
    assert_eq!(assert_stored_once(&emu.base_url).await, 8);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_of_a_dead_holder_on_this_host_is_taken_over_at_once_and_its_claims_recovered() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ingest_generated(&ws, 4, 1, "D");
    let host = ws.query_strings("SELECT host FROM runs LIMIT 1")[0].clone();
    // A process that has exited: its pid is free.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    // A live holder on this host (this test process) with a live lease: the run must wait.
    conn.execute(
        "INSERT INTO lease (name, holder, run_id, host, pid, acquired_at, heartbeat_at, expires_at) VALUES ('submitter', 'alive', NULL, ?1, ?2, ?3, ?3, ?3)",
        rusqlite::params![host, std::process::id() as i64, in_an_hour],
    )
    .unwrap();
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 4);
    // The holder dies mid-submit: two orders are left in flight under its claim.
    conn.execute(
        "UPDATE lease SET holder = 'ghost', pid = ?1",
        [dead_pid as i64],
    )
    .unwrap();
    conn.execute(
        "UPDATE staged_orders SET status = 'in_flight', claim_token = 'ghost', claim_expires_at = ?1 WHERE external_id IN ('#D1000', '#D1001')",
        [&in_an_hour],
    )
    .unwrap();
    drop(conn);
    let started = Instant::now();
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "taken over at once, not after expiry"
    );
    assert!(
        stderr(&out).contains("took over a stale lease"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("recovered 2 orders"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'recovered'"),
        2
    );
    assert_eq!(count(&ws, "succeeded"), 4);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM lease"),
        0,
        "released at the end"
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 4);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_one_order_sends_that_order_only() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ingest_generated(&ws, 2, 1, "O");
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    // New orders arrive and are not submitted yet; the operator resends one old order.
    ingest_generated(&ws, 3, 1, "P");
    let out = run_async(
        &ws,
        &["rerun", "--order", "shop:#O1000", "--include-succeeded"],
    )
    .await;
    assert_code(&out, 0);
    assert_eq!(
        count(&ws, "pending"),
        3,
        "the rerun sent orders it was not asked to send"
    );
    assert_eq!(emu.state().await["salesorders"], 2);
    emu.shutdown().await;
}
