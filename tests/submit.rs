//! The submit job through the real binary against the emulator over real HTTP.

use crate::common::*;
use serde_json::Value;

const SHOP: &str = "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n";

fn ingest(ws: &Workspace, csv: &str) {
    let file = ws.write_file("in/orders.csv", csv);
    assert_code(
        &ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]),
        0,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_run_stores_every_order_and_line_exactly_once() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ingest(&ws, &shopify_csv(25, 3, "K"));
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        25
    );
    let state = emu.state().await;
    assert_eq!(state["salesorders"], 25, "{state}");
    assert_eq!(state["salesorderdetails"], 75, "{state}");
    assert_eq!(assert_stored_once(&emu.base_url).await, 25);
    // Every order: pending → in_flight → succeeded in the ledger, with its Dynamics key.
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM ledger WHERE from_status = 'in_flight' AND to_status = 'succeeded'"), 25);
    assert_eq!(
        ws.query_strings("SELECT dynamics_ref FROM staged_orders WHERE external_id = '#K1000'")
            .len(),
        1
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM batches WHERE status = 'succeeded'"),
        3
    );
    // A second submit finds nothing to do and creates nothing.
    let again = run_async(&ws, &["submit"]).await;
    assert_code(&again, 0);
    assert_eq!(emu.state().await["salesorders"], 25);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_5xx_and_dropped_connections_lose_nothing_and_duplicate_nothing() {
    let emu = emulator(|c| {
        c.fail_rate = 0.25;
        c.drop_rate = 0.3;
        c.seed = 7;
    })
    .await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("batch_size = 10", "batch_size = 2");
    ingest(&ws, &shopify_csv(40, 2, "F"));
    let out = run_async(&ws, &["submit"]).await;
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        stderr(&out)
    );
    // Every order ends succeeded, or failed with a reason.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status IN ('pending', 'in_flight')"),
        0
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'failed' AND (last_error_code IS NULL OR last_error_message IS NULL)"),
        0
    );
    let state = emu.state().await;
    assert!(
        state["dropped"].as_u64().unwrap() > 0,
        "faults were injected: {state}"
    );
    // Once the faults stop, the next run finishes the job; still one order per key.
    reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emu.base_url))
        .json(&serde_json::json!({"fail_rate": 0.0, "drop_rate": 0.0}))
        .send()
        .await
        .unwrap();
    let out = run_async(&ws, &["rerun", "--failed"]).await;
    assert!(
        matches!(out.status.code(), Some(0)),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        40
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 40);
    assert_eq!(emu.state().await["salesorderdetails"], 80);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_429s_are_absorbed_without_failing_orders() {
    let emu = emulator(|c| {
        c.limit_requests = 4;
        c.limit_window_secs = 2;
    })
    .await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("batch_size = 10", "batch_size = 3");
    ingest(&ws, &shopify_csv(30, 1, "T"));
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        30
    );
    let state = emu.state().await;
    assert!(
        state["throttled"].as_u64().unwrap() > 0,
        "the limits were hit: {state}"
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 30);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_error_fails_only_that_order() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    // A ship-to postal code longer than the 20 characters the column allows.
    let csv = shopify_csv(5, 2, "P").replacen(
        "Springfield,'02134,MA,US,,,,,Stripe",
        "Springfield,'02134-0000-0000-0000-0000,MA,US,,,,,Stripe",
        1,
    );
    ingest(&ws, &csv);
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 3);
    assert_eq!(
        ws.query_strings("SELECT external_id || ' ' || last_error_code FROM staged_orders WHERE status = 'failed'"),
        vec!["#P1000 value_too_long"]
    );
    let msg =
        ws.query_strings("SELECT last_error_message FROM staged_orders WHERE status = 'failed'");
    assert!(msg[0].contains("shipto_postalcode"), "{}", msg[0]);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        4
    );
    assert_eq!(emu.state().await["salesorders"], 4);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_expires_mid_run_is_refreshed() {
    let emu = emulator(|c| {
        c.token_lifetime_secs = 1;
        c.latency_ms = 150;
    })
    .await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("batch_size = 10", "batch_size = 2");
    ingest(&ws, &shopify_csv(24, 1, "R"));
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        24
    );
    let summary = ws.query_strings("SELECT summary FROM runs WHERE command = 'submit'");
    let v: Value = serde_json::from_str(&summary[0]).unwrap();
    assert!(v["submit"]["token_refreshes"].as_u64().unwrap() >= 1, "{v}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_target_exits_5_and_leaves_orders_pending() {
    let ws = Workspace::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    ws.write_config(Some(&format!("http://127.0.0.1:{port}")), SHOP);
    ingest(&ws, &shopify_csv(3, 1, "U"));
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 5);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_exits_5() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ingest(&ws, &shopify_csv(2, 1, "W"));
    let mut cmd = ws.cmd();
    cmd.env("ORDERLOAD_CLIENT_SECRET", "not-the-secret")
        .arg("submit");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_code(&out, 5);
    assert!(
        !stderr(&out).contains("not-the-secret"),
        "the secret is never logged"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        2
    );
    assert_eq!(emu.state().await["salesorders"], 0);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_batches_and_changes_nothing() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    ingest(&ws, &shopify_csv(12, 1, "Y"));
    let before = std::fs::read(ws.db_path()).unwrap();
    let ledger_before = ws.query_i64("SELECT COUNT(*) FROM ledger");
    let out = run_async(&ws, &["submit", "--dry-run"]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("batch 2 of 2"), "{text}");
    assert!(text.contains("PATCH"), "{text}");
    assert!(!text.contains(SECRET));
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        12
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM ledger"), ledger_before);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE command = 'submit'"),
        0
    );
    assert_eq!(emu.state().await["salesorders"], 0);
    let _ = before;
    emu.shutdown().await;
}
