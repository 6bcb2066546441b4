//! The operator's commands end to end: run, report, rerun, exit codes, lease, metrics.

use crate::common::*;
use serde_json::Value;

fn inbox_config(ws: &Workspace, url: &str) {
    ws.write_config(
        Some(url),
        &format!(
            "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\ninbox = \"{0}/inbox\"\narchive = \"{0}/archive\"\n",
            ws.path().display()
        ),
    );
}

/// Every row of every table, as text: to prove a command changed nothing.
fn dump(ws: &Workspace) -> Vec<String> {
    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    let mut out = Vec::new();
    for table in [
        "runs",
        "source_files",
        "staged_orders",
        "rejected_rows",
        "batches",
        "ledger",
        "reruns",
        "lease",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        for row in rows {
            out.push(format!("{table}: {}", row.unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nightly_run_ingests_submits_and_writes_metrics() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    inbox_config(&ws, &emu.base_url);
    ws.write_file("inbox/a.csv", &shopify_csv(6, 2, "N"));
    let metrics = ws.path().join("metrics/orderload.prom");
    let out = run_async(&ws, &["run", "--metrics-file", metrics.to_str().unwrap()]).await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("6 succeeded"), "{}", stdout(&out));
    assert!(ws.path().join("archive/a.csv").exists());
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("orderload_orders{status=\"succeeded\"} 6"),
        "{m}"
    );
    assert!(m.contains("# TYPE orderload_orders gauge"), "{m}");
    assert!(m.contains("orderload_run_exit_code 0"), "{m}");
    assert!(m.contains("orderload_reconciliation_balanced 1"), "{m}");
    let last_ok = m
        .lines()
        .find(|l| l.starts_with("orderload_last_success_timestamp_seconds "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - last_ok).abs() < 600,
        "{m}"
    );
    // Every metric line is `name{labels} value` or a comment.
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad metric line {line:?}");
    }
    // The JSON report carries the pinned keys.
    let report = run_async(&ws, &["report", "--format", "json"]).await;
    assert_code(&report, 0);
    let v: Value = serde_json::from_str(&stdout(&report)).unwrap();
    assert_eq!(v["orders"]["succeeded"], 6);
    assert_eq!(v["orders"]["total"], 6);
    assert_eq!(v["rejected_rows"], 0);
    let file = &v["files"][0];
    for key in [
        "path",
        "channel",
        "sha256",
        "status",
        "rows",
        "rows_staged",
        "rejected",
        "orders",
    ] {
        assert!(!file[key].is_null(), "files[0].{key} missing: {v}");
    }
    assert_eq!(file["rows"], 12);
    let batch = &v["batches"][0];
    for key in ["id", "status", "orders", "succeeded", "failed"] {
        assert!(!batch[key].is_null(), "batches[0].{key} missing: {v}");
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_rows_make_the_run_exit_3() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    inbox_config(&ws, &emu.base_url);
    ws.write_file(
        "inbox/a.csv",
        &shopify_csv(3, 1, "J").replacen("Tee 0,10.00", "Tee 0,abc", 1),
    );
    let out = run_async(&ws, &["run"]).await;
    assert_code(&out, 3);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        2
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_while_one_holds_the_lease_exits_4_at_once() {
    let emu = emulator(|c| c.latency_ms = 400).await;
    let ws = Workspace::new();
    inbox_config(&ws, &emu.base_url);
    ws.write_file("inbox/a.csv", &shopify_csv(20, 1, "L"));
    ws.edit_config("batch_size = 10", "batch_size = 1");
    let mut first = ws.cmd().arg("run").spawn().unwrap();
    // Wait until the first run holds the lease.
    for _ in 0..100 {
        if ws.db_path().exists()
            && ws.query_i64("SELECT COUNT(*) FROM sqlite_master WHERE name = 'lease'") == 1
            && ws.query_i64("SELECT COUNT(*) FROM lease") == 1
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    let second = run_async(&ws, &["run"]).await;
    assert_code(&second, 4);
    assert!(started.elapsed().as_secs() < 5, "exits at once");
    assert!(
        stderr(&second).contains("holds the lease"),
        "{}",
        stderr(&second)
    );
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        20
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE outcome = 'lease_held'"),
        1
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_lease_of_another_host_is_taken_over_once_it_expires() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    inbox_config(&ws, &emu.base_url);
    ws.write_file("inbox/a.csv", &shopify_csv(2, 1, "Z"));
    assert_code(&run_async(&ws, &["ingest"]).await, 0);
    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    conn.execute(
        "INSERT INTO lease (name, holder, run_id, host, pid, acquired_at, heartbeat_at, expires_at) VALUES ('submitter', 'ghost', NULL, 'other-host', 1, ?1, ?1, ?1)",
        [&soon],
    )
    .unwrap();
    drop(conn);
    assert_code(&run_async(&ws, &["submit"]).await, 4);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        2
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_dry_run_changes_nothing_and_a_rerun_fixes_failures_once_the_cause_is_gone() {
    let emu = emulator(|c| c.fail_rate = 1.0).await;
    let ws = Workspace::new();
    inbox_config(&ws, &emu.base_url);
    ws.edit_config("max_retries = 8", "max_retries = 1");
    ws.write_file("inbox/a.csv", &shopify_csv(4, 1, "E"));
    let out = run_async(&ws, &["run"]).await;
    assert!(
        matches!(out.status.code(), Some(3) | Some(5)),
        "{}",
        stderr(&out)
    );
    // Some runs fail every order, some cannot even prepare; make them all failed-and-retryable
    // by construction when prepare failed.
    let failed = ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'failed'");
    let pending = ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'");
    assert_eq!(failed + pending, 4);

    let before = dump(&ws);
    let plan = run_async(&ws, &["rerun", "--failed", "--dry-run"]).await;
    assert_code(&plan, 0);
    assert!(
        stdout(&plan).contains("nothing was changed"),
        "{}",
        stdout(&plan)
    );
    assert_eq!(dump(&ws), before, "rerun --dry-run changed the database");

    reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emu.base_url))
        .json(&serde_json::json!({"fail_rate": 0.0}))
        .send()
        .await
        .unwrap();
    let out = if failed > 0 {
        run_async(&ws, &["rerun", "--failed"]).await
    } else {
        run_async(&ws, &["submit"]).await
    };
    assert_code(&out, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        4
    );
    if failed > 0 {
        assert_eq!(ws.query_i64("SELECT COUNT(*) FROM reruns"), 1);
        let who = ws.query_strings("SELECT requested_by FROM reruns");
        assert!(!who[0].is_empty());
        assert_eq!(
            ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'rerun'"),
            failed
        );
    }
    assert_eq!(emu.state().await["salesorders"], 4);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_skips_succeeded_orders_unless_asked_and_never_duplicates() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    inbox_config(&ws, &emu.base_url);
    ws.write_file("inbox/a.csv", &shopify_csv(3, 1, "Q"));
    assert_code(&run_async(&ws, &["run"]).await, 0);
    let plan = run_async(&ws, &["rerun", "--batch", "1", "--dry-run"]).await;
    assert_code(&plan, 0);
    assert!(
        stdout(&plan).contains("0 order(s) would be resubmitted, 3 skipped"),
        "{}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains("--include-succeeded"),
        "{}",
        stdout(&plan)
    );
    let queued = run_async(
        &ws,
        &[
            "rerun",
            "--order",
            "shop:#Q1001",
            "--include-succeeded",
            "--queue-only",
        ],
    )
    .await;
    assert_code(&queued, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        1
    );
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        3
    );
    assert_eq!(emu.state().await["salesorders"], 3);
    let rerun = run_async(&ws, &["rerun", "--batch", "1", "--include-succeeded"]).await;
    assert_code(&rerun, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM batches WHERE parent_batch_id = 1"),
        1
    );
    assert_eq!(
        emu.state().await["salesorders"],
        3,
        "resent as updates, not new orders"
    );
    let unknown = run_async(&ws, &["rerun", "--batch", "999"]).await;
    assert_code(&unknown, 1);
    assert!(stderr(&unknown).contains("batch 999 does not exist"));
    let usage = run_async(&ws, &["rerun", "--channel", "shop"]).await;
    assert_code(&usage, 2);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_filters_by_channel_error_code_and_date_and_submit_honours_max_orders() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(
        Some(&emu.base_url),
        "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n[[channel]]\nname = \"other\"\nformat = \"shopify\"\n",
    );
    let long_zip = |csv: String| {
        csv.replace(
            "Springfield,'02134,MA,US,,,,,Stripe",
            "Springfield,'02134-0000-0000-0000-0000,MA,US,,,,,Stripe",
        )
    };
    let a = ws.write_file("in/a.csv", &long_zip(shopify_csv(3, 1, "A")));
    let b = ws.write_file("in/b.csv", &long_zip(shopify_csv(2, 1, "B")));
    assert_code(
        &run_async(&ws, &["ingest", "--channel", "shop", a.to_str().unwrap()]).await,
        0,
    );
    assert_code(
        &run_async(&ws, &["ingest", "--channel", "other", b.to_str().unwrap()]).await,
        0,
    );
    // --max-orders: only two orders are claimed in this run.
    let first = run_async(&ws, &["submit", "--max-orders", "2"]).await;
    assert_code(&first, 3);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        3
    );
    assert_code(&run_async(&ws, &["submit"]).await, 3);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'failed'"),
        5
    );

    let plan = |args: &'static [&'static str]| {
        let ws = &ws;
        async move {
            let mut full = vec!["rerun", "--failed", "--dry-run"];
            full.extend_from_slice(args);
            let out = run_async(ws, &full).await;
            assert_code(&out, 0);
            stdout(&out)
        }
    };
    assert!(plan(&["--channel", "other"])
        .await
        .contains("2 order(s) would be resubmitted, 0 skipped"));
    assert!(plan(&["--error-code", "value_too_long"])
        .await
        .contains("5 order(s) would be resubmitted"));
    assert!(plan(&["--error-code", "0x80044331"])
        .await
        .contains("0 order(s) would be resubmitted"));
    assert!(plan(&["--since", "2000-01-01"])
        .await
        .contains("5 order(s) would be resubmitted"));
    assert!(plan(&["--since", "2999-01-01"])
        .await
        .contains("0 order(s) would be resubmitted"));
    let bad = run_async(&ws, &["rerun", "--failed", "--since", "yesterday"]).await;
    assert_code(&bad, 1);
    assert!(stderr(&bad).contains("--since"), "{}", stderr(&bad));
    emu.shutdown().await;
}

#[test]
fn the_demo_runs_end_to_end_and_says_what_to_try_next() {
    let ws = Workspace::new();
    let dir = ws.path().join("demo");
    let out = ws
        .cmd()
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("33 succeeded, 1 failed"), "{text}");
    assert!(text.contains("report --failed"), "{text}");
    assert!(text.contains("rerun --failed --dry-run"), "{text}");
    assert!(text.contains("would have exited with code 3"), "{text}");
    let conn = rusqlite::Connection::open(dir.join("demo.db")).unwrap();
    let failed: String = conn
        .query_row(
            "SELECT external_id || ' ' || last_error_code FROM staged_orders WHERE status = 'failed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, "#1009 value_too_long");
    assert!(dir.join("orderload.prom").exists());
}
