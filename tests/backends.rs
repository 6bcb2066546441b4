//! The behaviour suite: the same tests on SQLite and on PostgreSQL, through the real binary
//! and the emulator. Each test is written once, as a function of the backend; `both!` makes
//! `backends::sqlite::<name>` and `backends::postgres::<name>` of it. The PostgreSQL ones skip
//! with a visible message when no server is configured (see `common::pg`).

use crate::common::*;
use orderload::submit::target::{OrderOutcome, OrderResult};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

const SHOP: &str = "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n";

/// Channel `m`: a mapped CSV with columns ref, when, item, n, each (and `extra` mappings).
fn mapped_channel(extra: &str) -> String {
    format!(
        "[[channel]]\nname = \"m\"\nformat = \"csv\"\ncurrency = \"EUR\"\n[channel.mapping]\n\
         external_id = \"ref\"\ncreated_at = \"when\"\nname = \"item\"\nquantity = \"n\"\n\
         unit_price = \"each\"\n{extra}"
    )
}

/// A workspace on `backend`, or `None` (skipped) when PostgreSQL is not available.
fn workspace(backend: Backend, test: &str) -> Option<Workspace> {
    match backend {
        Backend::Sqlite => Some(Workspace::new()),
        Backend::Postgres => pg::fresh_database(test).map(Workspace::with_postgres),
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

both!(
    orders_are_staged_sent_once_and_reported,
    a_reread_file_is_a_duplicate_and_a_changed_order_is_sent_again,
    a_permanent_error_fails_only_its_order_and_a_rerun_plan_changes_nothing,
    claims_are_exclusive_expire_and_refuse_stale_outcomes,
    a_second_runner_is_refused_while_the_lease_is_held,
    a_killed_submitter_is_recovered_without_duplicates,
    two_ingests_of_one_file_at_once_stage_it_once,
    an_ingest_stopped_midway_is_read_again_to_the_end_without_doubling,
    a_later_part_adds_to_an_order_whose_first_part_another_file_staged_unchanged,
    an_order_staged_from_its_first_part_is_held_back_when_a_later_part_is_rejected,
    a_hold_back_takes_this_files_orders_in_any_status_and_leaves_others_alone,
    shuffled_overlapping_exports_with_bad_rows_never_send_an_order_with_lines_missing,
    a_file_taken_over_by_another_run_refuses_the_first_runs_writes,
    new_content_for_an_order_in_flight_withdraws_the_claim,
    a_database_upgraded_by_a_newer_orderload_is_refused_naming_the_migration,
    an_order_corrected_to_fewer_lines_keeps_only_its_new_lines_in_dynamics,
    no_order_of_a_file_still_being_read_is_sent_until_its_read_ends,
    an_order_sent_whole_and_read_again_in_far_apart_parts_is_not_sent_again,
    orders_of_an_interrupted_file_found_unchanged_in_a_later_file_are_sent_after_it,
);

/// After a rollback of the binary, the database carries a migration this orderload does not
/// have: every command refuses it (exit 1) with a message that says what happened, and
/// changes nothing.
async fn a_database_upgraded_by_a_newer_orderload_is_refused_naming_the_migration(
    backend: Backend,
) {
    let Some(ws) = workspace(backend, "newer_schema") else {
        return;
    };
    ws.write_config(None, SHOP);
    ingest(&ws, "a.csv", &shopify_csv(2, 1, "N"));
    let (success, checksum) = match backend {
        Backend::Sqlite => ("1", "x'00'"),
        Backend::Postgres => ("true", "'\\x00'::bytea"),
    };
    let added = ws.query_i64(&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (999, 'from a newer orderload', {success}, {checksum}, 0) RETURNING version"
    ));
    assert_eq!(added, 999);
    let file = ws.write_file("in/b.csv", &shopify_csv(2, 1, "M"));
    let file = file.to_str().unwrap();
    for args in [&["report"][..], &["ingest", "--channel", "shop", file][..]] {
        let out = ws.run(args);
        assert_code(&out, 1);
        let err = stderr(&out);
        assert!(
            err.contains("schema migration 999, which this orderload does not know")
                && err.contains("a newer orderload upgraded it"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 2);
}

/// Make the insert of order `external_id` fail as a full disk would, so that an ingest stops
/// midway with the chunks before it committed; the SQL that allows it again.
fn stop_inserting(ws: &Workspace, backend: Backend, external_id: &str) -> &'static str {
    match backend {
        Backend::Sqlite => {
            ws.execute(&format!(
                "CREATE TRIGGER stop_midway BEFORE INSERT ON staged_orders
                 WHEN NEW.external_id = '{external_id}'
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END;"
            ));
            "DROP TRIGGER stop_midway;"
        }
        Backend::Postgres => {
            ws.execute(&format!(
                "CREATE FUNCTION stop_midway() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.external_id = '{external_id}' THEN
                     RAISE EXCEPTION 'could not extend file (simulated)';
                   END IF;
                   RETURN NEW;
                 END $$;
                 CREATE TRIGGER stop_midway BEFORE INSERT ON staged_orders
                   FOR EACH ROW EXECUTE FUNCTION stop_midway();"
            ));
            "DROP TRIGGER stop_midway ON staged_orders; DROP FUNCTION stop_midway();"
        }
    }
}

fn ingest(ws: &Workspace, name: &str, csv: &str) {
    ingest_expecting(ws, name, csv, 0)
}

fn ingest_expecting(ws: &Workspace, name: &str, csv: &str, code: i32) {
    let file = ws.write_file(&format!("in/{name}"), csv);
    let out = ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]);
    assert_code(&out, code);
}

fn report_json(ws: &Workspace, args: &[&str]) -> Value {
    let mut all = vec!["report", "--format", "json"];
    all.extend_from_slice(args);
    let out = ws.run(&all);
    assert_code(&out, 0);
    serde_json::from_str(&stdout(&out)).expect("report JSON")
}

async fn orders_are_staged_sent_once_and_reported(backend: Backend) {
    let Some(ws) = workspace(backend, "staged_sent_once") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    // 30 orders of 2 lines, and one row whose quantity is not a number.
    let mut csv = shopify_csv(30, 2, "B");
    let bad = csv
        .lines()
        .nth(1)
        .unwrap()
        .replacen("#B1000", "#B9999", 1)
        .replacen(",1,Tee 0,", ",lots,Tee 0,", 1);
    csv.push_str(&bad);
    csv.push('\n');
    ingest_expecting(&ws, "orders.csv", &csv, 3);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 30);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 1);
    assert!(ws.query_strings("SELECT raw FROM rejected_rows")[0].contains("lots"));
    assert_eq!(
        ws.query_i64("SELECT rows - rows_staged - rejected FROM source_files"),
        0
    );

    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(assert_stored_once(&emu.base_url).await, 30);
    assert_eq!(emu.state().await["salesorderdetails"], 60);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE from_status = 'in_flight' AND to_status = 'succeeded'"),
        30
    );
    let r = report_json(&ws, &[]);
    assert_eq!(r["orders"]["succeeded"], 30, "{r}");
    assert_eq!(r["orders"]["total"], 30, "{r}");
    assert_eq!(r["rejected_rows"], 1, "{r}");
    assert_eq!(r["reconciliation"]["balanced"], true, "{r}");
    assert_eq!(r["channels"][0]["channel"], "shop", "{r}");
    assert!(r["runs"].as_array().unwrap().len() >= 2, "{r}");
    assert!(
        r["runs"][0]["started_at"].as_str().unwrap().ends_with('Z'),
        "times are UTC RFC 3339: {r}"
    );

    // Nothing left: a second submit sends nothing.
    let again = run_async(&ws, &["submit"]).await;
    assert_code(&again, 0);
    assert_eq!(emu.state().await["salesorders"], 30);
    let history = report_json(&ws, &["--order", "shop:#B1000"]);
    let events: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["pending", "in_flight", "succeeded"], "{history}");
    assert_eq!(history["files"].as_array().unwrap().len(), 1, "{history}");
    emu.shutdown().await;
}

async fn a_reread_file_is_a_duplicate_and_a_changed_order_is_sent_again(backend: Backend) {
    let Some(ws) = workspace(backend, "reread_duplicate") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    let csv = shopify_csv(12, 1, "D");
    ingest(&ws, "a.csv", &csv);
    ingest(&ws, "again.csv", &csv);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files"), 1);
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    // The same orders in a new export, one of them changed.
    let changed = csv.replacen("Tee 0", "Tee zero", 1) + "\n";
    ingest(&ws, "b.csv", &changed);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        1
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE message LIKE 'content changed%'"),
        1
    );
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(assert_stored_once(&emu.base_url).await, 12);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        12
    );
    emu.shutdown().await;
}

async fn a_permanent_error_fails_only_its_order_and_a_rerun_plan_changes_nothing(backend: Backend) {
    let Some(ws) = workspace(backend, "permanent_error") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    // One order with a postal code longer than Dynamics takes (20 characters).
    let csv = shopify_csv(8, 1, "P").replacen("'02134", "'0213400000000000000000000000", 1);
    ingest(&ws, "p.csv", &csv);
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 3);
    assert_eq!(assert_stored_once(&emu.base_url).await, 7);
    let failed = report_json(&ws, &["--failed"]);
    assert_eq!(failed["total"], 1, "{failed}");
    assert_eq!(
        failed["failed_orders"][0]["external_id"], "#P1000",
        "{failed}"
    );
    assert_eq!(
        failed["failed_orders"][0]["error_code"], "value_too_long",
        "{failed}"
    );
    assert!(
        !failed["failed_orders"][0]["hint"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{failed}"
    );
    let ledger = ws.query_i64("SELECT COUNT(*) FROM ledger");
    let runs = ws.query_i64("SELECT COUNT(*) FROM runs");
    let plan = run_async(&ws, &["rerun", "--failed", "--dry-run"]).await;
    assert_code(&plan, 0);
    assert!(stdout(&plan).contains("#P1000"), "{}", stdout(&plan));
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM ledger"), ledger);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM runs"), runs);
    let batch = report_json(&ws, &["--batch", "1"]);
    assert!(!batch["orders"].as_array().unwrap().is_empty(), "{batch}");
    // The real rerun: recorded, the order sent again (and failing again: the data is unchanged).
    let rerun = run_async(&ws, &["rerun", "--failed"]).await;
    assert_code(&rerun, 3);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM reruns"), 1);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'rerun'"),
        1
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'failed'"),
        1
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 7);
    emu.shutdown().await;
}

/// Two hosts' schedulers firing at once on the same file: one works, the other exits 4 (or
/// finds the file a duplicate); the file and its orders are staged once.
async fn two_ingests_of_one_file_at_once_stage_it_once(backend: Backend) {
    let Some(ws) = workspace(backend, "two_ingests") else {
        return;
    };
    ws.write_config(None, SHOP);
    // Create the schema first, so that both start from the same existing database.
    orderload::staging::open(&ws.db_url())
        .await
        .unwrap()
        .close()
        .await;
    let file = ws.write_file("in/same.csv", &shopify_csv(50, 2, "T"));
    let spawn = || {
        ws.cmd()
            .args(["ingest", "--channel", "shop", file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = vec![a.status.code().unwrap(), b.status.code().unwrap()];
    codes.sort();
    assert!(
        codes == [0, 0] || codes == [0, 4],
        "{codes:?}\nfirst:\n{}\nsecond:\n{}",
        stderr(&a),
        stderr(&b)
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files"), 1);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 50);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE to_status = 'pending'"),
        50
    );
}

/// An ingest that stops in the middle of a file (here the database refuses the fourth chunk,
/// as a full disk would; a kill leaves the same state) leaves the file `reading`. Reading the
/// same bytes again is not a duplicate: it goes through the whole file, stages what the first
/// read did not reach, and stages nothing twice: no second order, no doubled lines (also for
/// an order whose rows are far apart and were merged before the stop), no second rejected row.
async fn an_ingest_stopped_midway_is_read_again_to_the_end_without_doubling(backend: Backend) {
    let Some(ws) = workspace(backend, "stopped_midway") else {
        return;
    };
    ws.write_config(
        None,
        &format!("{SHOP}[[channel]]\nname = \"web\"\nformat = \"shopify\"\n"),
    );
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 4\n");
    // 30 orders of 2 lines; a third line of #S1000 (a whole first row again) comes after
    // #S1005, in the second chunk; a bad quantity in a row of #S1001 rejects that order's
    // three rows (chunks: #S1000 #S1002-4 | #S1005 #S1000 #S1006-7 | #S1008-11 | #S1012-…).
    let csv = shopify_csv(30, 2, "S");
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let extra = lines[1]
        .replace("Tee 0,", "Tee 9,")
        .replace("SKU-0,", "SKU-9,");
    let bad = lines[4].replacen(",1,Tee 1,", ",x,Tee 1,", 1);
    assert_ne!(bad, lines[4]);
    lines.insert(13, extra);
    lines.insert(5, bad);
    let file = ws.write_file("in/orders.csv", &(lines.join("\n") + "\n"));
    let file = file.to_str().unwrap();
    let data_rows = (lines.len() - 1) as i64;

    // The first read stops at the fourth chunk, after three were committed (11 orders).
    orderload::staging::open(&ws.db_url())
        .await
        .unwrap()
        .close()
        .await;
    let allow = stop_inserting(&ws, backend, "#S1013");
    let first = ws.run(&["ingest", "--channel", "shop", file]);
    assert_code(&first, 1);
    assert!(stderr(&first).contains("simulated"), "{}", stderr(&first));
    assert_eq!(
        ws.query_strings("SELECT status FROM source_files"),
        ["reading"]
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 11);
    assert_eq!(
        ws.query_i64("SELECT line_count FROM staged_orders WHERE external_id = '#S1000'"),
        3,
        "the far-apart line was merged before the stop"
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 3);
    // The run recorded its end (exit 1), so the file is shown as interrupted, not as read now.
    let report = report_json(&ws, &[]);
    assert_eq!(
        report["files"][0]["interrupted"], true,
        "{}",
        report["files"]
    );
    assert_eq!(report["runs"][0]["died"], false);
    let table = stdout(&ws.run(&["report"]));
    assert!(table.contains(" interrupted "), "{table}");

    // The same bytes for another channel would stage every order under other keys: refused,
    // naming the channel to use, and nothing changes.
    let other = ws.run(&["ingest", "--channel", "web", file]);
    assert_code(&other, 3);
    assert!(
        stdout(&other).contains("ingest it again as channel shop"),
        "{}",
        stdout(&other)
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 11);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 3);

    // As if a submit had sent them meanwhile (the kill test in reliability.rs does it for
    // real): reading the file again must not send any of them again.
    ws.execute("UPDATE staged_orders SET status = 'succeeded'");

    // The disk has room again; the same file is read again.
    ws.execute(allow);
    let second = ws.run(&["ingest", "--channel", "shop", file]);
    assert_code(&second, 3); // #S1001 is still rejected
    let out = stdout(&second);
    let row = out.lines().find(|l| l.contains("orders.csv")).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("ingested"), "{out}");
    assert!(
        stderr(&second).contains("reading it again from the start"),
        "{}",
        stderr(&second)
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files"), 1);
    assert_eq!(
        ws.query_strings("SELECT status FROM source_files"),
        ["ingested"]
    );
    assert_eq!(ws.query_i64("SELECT rows FROM source_files"), data_rows);
    assert_eq!(
        ws.query_i64("SELECT rows_staged + rejected FROM source_files"),
        data_rows
    );
    assert_eq!(ws.query_i64("SELECT rejected FROM source_files"), 3);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 3);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 29);
    // The first read's 11 orders were found stored already (#S1000 with both its parts, so it
    // is neither cut back to its first part nor sent again), the other 18 staged now.
    assert_eq!(
        ws.query_i64(
            "SELECT orders_new * 10000 + orders_updated * 100 + orders_unchanged FROM source_files"
        ),
        18_00_11
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        11,
        "an order the first read staged went back to pending"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE from_status IS NOT NULL"),
        0
    );
    assert_eq!(
        ws.query_i64("SELECT SUM(line_count) FROM staged_orders"),
        29 * 2 + 1
    );
    assert_eq!(
        ws.query_i64("SELECT line_count FROM staged_orders WHERE external_id = '#S1000'"),
        3
    );
    assert_eq!(
        ws.query_i64("SELECT SUM(row_count) FROM staged_orders"),
        data_rows - 3
    );
    // Each order was staged once: one `→ pending` event from nothing per order.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE from_status IS NULL"),
        29
    );
    let report = report_json(&ws, &[]);
    assert_eq!(report["files"][0]["interrupted"], false);
    assert_eq!(report["reconciliation"]["balanced"], true, "{report}");
    assert_eq!(report["reconciliation"]["rows_read"], data_rows);
    assert!(
        report["files"][0]["notes"]
            .to_string()
            .contains("read again from the start"),
        "{}",
        report["files"][0]
    );
}

/// An ingest that stalls (SIGSTOP) longer than its lease, whose lease another run then takes,
/// stops before its next chunk once it wakes up (exit 1, saying why) instead of writing beside
/// the run that took over; the next ingest reads the file again to its end.
///
/// PostgreSQL only: there the stalled ingest's open chunk transaction locks only its own rows,
/// so another run can take the lease. On SQLite a process stopped inside a transaction holds
/// the database's write lock, and no other run can take anything over until it wakes.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_ingest_whose_lease_was_taken_over_stops_when_it_wakes() {
    let Some(ws) = workspace(Backend::Postgres, "stalled_ingest") else {
        return;
    };
    ws.write_config(None, SHOP);
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 10\n");
    let big = ws.write_file("in/big.csv", &shopify_csv(3000, 2, "B"));
    let small = ws.write_file("other/small.csv", &shopify_csv(5, 1, "M"));
    orderload::staging::open(&ws.db_url())
        .await
        .unwrap()
        .close()
        .await;
    let staged = || ws.query_i64("SELECT COUNT(*) FROM staged_orders");
    let stalled = ingest_stopped_midway(&ws, big.to_str().unwrap(), 200).await;
    // The test configuration's lease lives 5 s; then another run may take it over.
    tokio::time::sleep(Duration::from_millis(5600)).await;
    let other = run_async(
        &ws,
        &["ingest", "--channel", "shop", small.to_str().unwrap()],
    )
    .await;
    assert_code(&other, 0);
    assert!(
        stderr(&other).contains("took over a stale lease"),
        "{}",
        stderr(&other)
    );
    signal(&stalled, "-CONT");
    let out = tokio::task::spawn_blocking(move || stalled.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("lease was taken over by another run"),
        "{}",
        stderr(&out)
    );
    let left = staged() - 5;
    assert!(
        left < 3000,
        "the stalled ingest wrote the whole file after losing its lease"
    );
    eprintln!("stalled ingest: {left} of 3000 orders staged when it stopped");

    let last = run_async(&ws, &["ingest", "--channel", "shop", big.to_str().unwrap()]).await;
    assert_code(&last, 0);
    assert!(stderr(&last).contains("reading it again from the start"));
    assert_eq!(staged(), 3005);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE from_status IS NULL"),
        3005
    );
    assert_eq!(
        ws.query_i64("SELECT SUM(line_count) FROM staged_orders"),
        6005
    );
    assert_eq!(
        ws.query_strings("SELECT status FROM source_files ORDER BY id"),
        ["ingested", "ingested"]
    );
}

/// Yesterday's export staged order #U1000 with two lines and it was sent. Today's export
/// repeats it with a line added further down the file, in another chunk (a CSV sorted by
/// something other than the order). Its first part equals what yesterday staged, so the stored
/// row still names yesterday's file as its source; the later part must still be merged into
/// it — the order ends with all three lines, goes back to pending once, and is sent again
/// with them — not replace it with the new line alone.
async fn a_later_part_adds_to_an_order_whose_first_part_another_file_staged_unchanged(
    backend: Backend,
) {
    let Some(ws) = workspace(backend, "later_part_unchanged") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 4\n");
    let yesterday = shopify_csv(12, 2, "U");
    ingest(&ws, "yesterday.csv", &yesterday);
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(emu.state().await["salesorderdetails"], 24);
    let rows_before =
        ws.query_strings("SELECT source_rows FROM staged_orders WHERE external_id = '#U1000'");
    let first: Vec<u64> = serde_json::from_str(&rows_before[0]).unwrap();

    // A new order #U2000 first (so every record number moves by one), then yesterday's
    // orders. Chunks of 4 orders: #U2000 #U1000-2 | #U1003-5 #U1000 (its new line) | ...
    let mut lines: Vec<String> = yesterday.lines().map(str::to_string).collect();
    let added = lines[1]
        .replace("Tee 0,", "Tee 9,")
        .replace("SKU-0,", "SKU-9,");
    lines.insert(13, added);
    let new_order = lines[3].replacen("#U1001", "#U2000", 1);
    assert_ne!(new_order, lines[3]);
    lines.insert(1, new_order);
    let today_csv = ws.write_file("in/today.csv", &(lines.join("\n") + "\n"));
    let out = ws.run(&["ingest", "--channel", "shop", today_csv.to_str().unwrap()]);
    assert_code(&out, 0);

    let today = ws.query_i64("SELECT MAX(id) FROM source_files");
    assert_eq!(
        ws.query_i64("SELECT line_count FROM staged_orders WHERE external_id = '#U1000'"),
        3,
        "the order keeps the lines of its first part"
    );
    let rows = format!("[{},{},{}]", first[0] + 1, first[1] + 1, first[0] + 13);
    assert_eq!(
        ws.query_strings(
            "SELECT status || ' ' || source_file_id || ' ' || row_count || ' ' || source_rows
             FROM staged_orders WHERE external_id = '#U1000'"
        ),
        [format!("pending {today} 3 {rows}")]
    );
    let payload: Value = serde_json::from_str(
        &ws.query_strings("SELECT payload FROM staged_orders WHERE external_id = '#U1000'")[0],
    )
    .unwrap();
    let names: Vec<&str> = payload["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{payload}");
    assert!(names[2].starts_with("Tee 9"), "{names:?}");
    assert!(
        names[..2].iter().all(|n| !n.starts_with("Tee 9")),
        "{names:?}"
    );
    assert_eq!(payload["lines"][2]["line_number"], 3);
    // Its provenance is in the columns above (file and records), not in the payload.
    assert_eq!(payload.get("source"), None, "{payload}");
    // The eleven orders found unchanged keep yesterday's file as their source.
    assert_eq!(
        ws.query_i64(&format!(
            "SELECT COUNT(*) FROM staged_orders WHERE source_file_id = {today}"
        )),
        2
    );
    assert_eq!(
        ws.query_i64(
            "SELECT orders_new * 10000 + orders_updated * 100 + orders_unchanged
             FROM source_files WHERE id = (SELECT MAX(id) FROM source_files)"
        ),
        1_01_11,
        "one order new, one updated, eleven unchanged, none counted twice"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        2
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM ledger WHERE from_status = 'succeeded' AND to_status = 'pending'"
        ),
        1
    );
    let report = report_json(&ws, &[]);
    assert_eq!(report["reconciliation"]["balanced"], true, "{report}");

    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(assert_stored_once(&emu.base_url).await, 13);
    assert_eq!(emu.state().await["salesorderdetails"], 26);
    emu.shutdown().await;
}

/// A CSV sorted by something other than the order: A-1 and C-3 each have a second line
/// further down, and that line is rejected (a bad quantity). Their first lines were staged
/// already (A-1 in the same chunk, C-3 in an earlier one), so each staged order lacks a line:
/// it is held back — `failed` with `order_incomplete`, never sent — and the other orders go.
async fn an_order_staged_from_its_first_part_is_held_back_when_a_later_part_is_rejected(
    backend: Backend,
) {
    let Some(ws) = workspace(backend, "held_back") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), &mapped_channel(""));
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 3\n");
    // Chunks of 3 orders: A-1 B-2 C-3 (and A-1's rejected row 3) | D-4 E-5 (and C-3's row 7).
    let csv = "ref,when,item,n,each\n\
               A-1,2024-01-02 03:04,Thing,1,1.10\n\
               B-2,2024-01-02 03:04,Thing,1,1.10\n\
               A-1,2024-01-02 03:04,Other,lots,2.00\n\
               C-3,2024-01-02 03:04,Thing,1,1.10\n\
               D-4,2024-01-02 03:04,Thing,1,1.10\n\
               E-5,2024-01-02 03:04,Thing,1,1.10\n\
               C-3,2024-01-02 03:04,Other,x,2.00\n";
    let file = ws.write_file("in/sorted.csv", csv);
    let out = ws.run(&["ingest", "--channel", "m", file.to_str().unwrap()]);
    assert_code(&out, 3);
    assert_eq!(
        ws.query_strings(
            "SELECT external_id || ' ' || status || ' ' || COALESCE(last_error_code, '-')
             FROM staged_orders ORDER BY external_id"
        ),
        [
            "A-1 failed order_incomplete",
            "B-2 pending -",
            "C-3 failed order_incomplete",
            "D-4 pending -",
            "E-5 pending -",
        ]
    );
    assert_eq!(
        ws.query_strings(
            "SELECT row_number || ' ' || reason_code FROM rejected_rows ORDER BY row_number"
        ),
        ["3 bad_quantity", "7 bad_quantity"]
    );
    assert_eq!(
        ws.query_i64("SELECT rows - rows_staged - rejected FROM source_files"),
        0
    );
    // Each held-back order: staged, then failed, in its ledger.
    assert_eq!(
        ws.query_strings(
            "SELECT COALESCE(l.from_status, '-') || '>' || l.to_status || ' ' || COALESCE(l.error_code, '-')
             FROM ledger l JOIN staged_orders o ON o.id = l.order_id
             WHERE o.external_id = 'C-3' ORDER BY l.id"
        ),
        ["->pending -", "pending>failed order_incomplete"]
    );
    let message =
        ws.query_strings("SELECT last_error_message FROM staged_orders WHERE external_id = 'C-3'");
    assert!(message[0].contains("row 7 of this order"), "{message:?}");
    let notes = ws.query_strings("SELECT notes FROM source_files");
    assert!(notes[0].contains("2 order(s) held back"), "{notes:?}");
    let failed = report_json(&ws, &["--failed"]);
    assert_eq!(failed["total"], 2, "{failed}");
    assert!(
        failed["failed_orders"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("load the file again"),
        "{failed}"
    );

    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0); // the held-back orders were reported by the ingest (exit 3)
    assert_eq!(
        assert_stored_once(&emu.base_url).await,
        3,
        "A-1 and C-3 are not sent"
    );

    // The file fixed and loaded again: both orders are whole, back to pending, and sent.
    let fixed = csv.replace(",lots,", ",1,").replace(",x,", ",2,");
    let file = ws.write_file("in/sorted-fixed.csv", &fixed);
    let out = ws.run(&["ingest", "--channel", "m", file.to_str().unwrap()]);
    assert_code(&out, 0);
    assert_eq!(
        ws.query_strings(
            "SELECT external_id || ' ' || status || ' ' || line_count FROM staged_orders
             WHERE external_id IN ('A-1', 'C-3') ORDER BY external_id"
        ),
        ["A-1 pending 2", "C-3 pending 2"]
    );
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(assert_stored_once(&emu.base_url).await, 5);
    assert_eq!(emu.state().await["salesorderdetails"], 7);
    emu.shutdown().await;
}

/// The hold-back through the `Staging` trait: rows rejected for orders this file staged mark
/// each of them `failed` (`order_incomplete`) whatever its status — pending, in flight (the
/// claim is withdrawn), failed for another reason, succeeded — with the status it came from
/// in the ledger; an order another file staged and a key nobody staged are left alone; an
/// order held back already is not held back twice.
async fn a_hold_back_takes_this_files_orders_in_any_status_and_leaves_others_alone(
    backend: Backend,
) {
    use crate::report::order;
    use orderload::staging::{FileStart, PreparedChunk, ReadMemory, RunStart};
    let Some(ws) = workspace(backend, "hold_back_statuses") else {
        return;
    };
    ws.write_config(None, SHOP);
    let st = orderload::staging::open(&ws.db_url()).await.unwrap();
    let run = st
        .begin_run(RunStart::this_process("ingest", &[]))
        .await
        .unwrap();
    let start = |sha: &str, path: &str| FileStart {
        sha256: sha.repeat(64),
        path: path.into(),
        channel: "shop".into(),
        format: Some("shopify".into()),
        encoding: "utf-8".into(),
        notes: vec![],
        size_bytes: 10,
    };
    let rejected = |rows: &[(u64, &str)]| {
        rows.iter()
            .map(|&(row, key)| orderload::channels::RejectedRow {
                row_number: row,
                column: None,
                reason_code: "bad_quantity".into(),
                message: "bad".into(),
                raw: "x".into(),
                order_key: Some(key.into()),
            })
            .collect::<Vec<_>>()
    };
    let x = st.start_file(&start("a", "in/x.csv"), run).await.unwrap();
    let orders = vec![order("shop", "K-1", vec![1], 1, "5.00")];
    st.stage_chunk(
        x,
        run,
        PreparedChunk::new(x, orders),
        vec![],
        &mut ReadMemory::default(),
    )
    .await
    .unwrap();
    let y = st.start_file(&start("b", "in/y.csv"), run).await.unwrap();
    let orders = ["Y-A", "Y-B", "Y-C", "Y-D"]
        .iter()
        .enumerate()
        .map(|(i, id)| order("shop", id, vec![i as u64 + 1], 1, "5.00"))
        .collect();
    let mut read = ReadMemory::default();
    st.stage_chunk(y, run, PreparedChunk::new(y, orders), vec![], &mut read)
        .await
        .unwrap();
    ws.execute(
        "UPDATE staged_orders SET status = 'in_flight', claim_token = 'tok' WHERE external_id = 'Y-B';
         UPDATE staged_orders SET status = 'failed', retryable = (1 = 1), last_error_code = 'unavailable'
           WHERE external_id = 'Y-C';
         UPDATE staged_orders SET status = 'succeeded' WHERE external_id = 'Y-D';",
    );
    let counts = st
        .stage_chunk(
            y,
            run,
            PreparedChunk::empty(),
            rejected(&[
                (10, "Y-A"),
                (11, "Y-B"),
                (12, "Y-C"),
                (13, "Y-D"),
                (14, "K-1"),
                (15, "Z-9"),
                (16, "Y-A"),
            ]),
            &mut read,
        )
        .await
        .unwrap();
    assert_eq!(counts.held_back, 4);
    assert_eq!(
        ws.query_strings(
            "SELECT external_id || ' ' || status || ' ' || COALESCE(last_error_code, '-') || ' '
                    || COALESCE(claim_token, '-')
             FROM staged_orders ORDER BY external_id"
        ),
        [
            "K-1 pending - -",
            "Y-A failed order_incomplete -",
            "Y-B failed order_incomplete -",
            "Y-C failed order_incomplete -",
            "Y-D failed order_incomplete -",
        ]
    );
    assert_eq!(
        ws.query_strings(
            "SELECT o.external_id || ' ' || l.from_status FROM ledger l JOIN staged_orders o ON o.id = l.order_id
             WHERE l.error_code = 'order_incomplete' ORDER BY o.external_id"
        ),
        ["Y-A pending", "Y-B in_flight", "Y-C failed", "Y-D succeeded"]
    );
    let message =
        ws.query_strings("SELECT last_error_message FROM staged_orders WHERE external_id = 'Y-A'");
    assert!(message[0].contains("row 10 of this order"), "{message:?}");
    // Held back once: the same rows again change nothing.
    let again = st
        .stage_chunk(
            y,
            run,
            PreparedChunk::empty(),
            rejected(&[(17, "Y-A")]),
            &mut read,
        )
        .await
        .unwrap();
    assert_eq!(again.held_back, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'order_incomplete'"),
        4
    );
}

/// Two overlapping exports whose rows are shuffled (every order's rows far apart, in chunks
/// of 5 orders): yesterday's with orders 0–27, today's with orders 12–39, where some of the
/// repeated orders gained a line and some orders have one bad row. Seeded, several rounds.
/// Whatever the chunking, no order is ever stored or sent with lines missing: an order today's
/// file has whole ends with today's lines, sent; one with a bad row ends with yesterday's lines
/// (sent), held back (`order_incomplete`, not sent with today's lines), or not staged at all.
async fn shuffled_overlapping_exports_with_bad_rows_never_send_an_order_with_lines_missing(
    backend: Backend,
) {
    for seed in 1..=4u64 {
        let Some(ws) = workspace(backend, &format!("shuffled_{seed}")) else {
            return;
        };
        let emu = emulator(|_| {}).await;
        ws.write_config(Some(&emu.base_url), &mapped_channel("sku = \"sku\"\n"));
        ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 5\n");
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| {
            // SplitMix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        };
        // Each order's lines: item names; today's versions gain a line now and then.
        let yesterday: Vec<Vec<String>> = (0..40)
            .map(|i| (0..1 + next(3)).map(|l| format!("I{i}-{l}")).collect())
            .collect();
        let mut today = yesterday.clone();
        for (i, lines) in today.iter_mut().enumerate().take(28).skip(12) {
            if next(3) == 0 {
                lines.push(format!("I{i}-new"));
            }
        }
        let bad: Vec<(usize, usize)> = (0..5)
            .map(|_| {
                let i = 12 + next(28) as usize;
                (i, next(today[i].len() as u64) as usize)
            })
            .collect();
        let file = |orders: std::ops::Range<usize>,
                    versions: &[Vec<String>],
                    bad: &[(usize, usize)],
                    next: &mut dyn FnMut(u64) -> u64| {
            let mut rows: Vec<String> = Vec::new();
            for i in orders {
                for (l, item) in versions[i].iter().enumerate() {
                    let n = if bad.contains(&(i, l)) { "x" } else { "2" };
                    rows.push(format!("R-{i},2024-01-02 03:04,{item},S-{item},{n},1.50"));
                }
            }
            for k in (1..rows.len()).rev() {
                rows.swap(k, next(k as u64 + 1) as usize);
            }
            format!("ref,when,item,sku,n,each\n{}\n", rows.join("\n"))
        };
        let a = file(0..28, &yesterday, &[], &mut next);
        let b = file(12..40, &today, &bad, &mut next);

        let a = ws.write_file("in/yesterday.csv", &a);
        assert_code(
            &ws.run(&["ingest", "--channel", "m", a.to_str().unwrap()]),
            0,
        );
        assert_code(&run_async(&ws, &["submit"]).await, 0);
        let b = ws.write_file("in/today.csv", &b);
        assert_code(
            &ws.run(&["ingest", "--channel", "m", b.to_str().unwrap()]),
            3,
        );
        assert_code(&run_async(&ws, &["submit"]).await, 0);

        assert_eq!(
            ws.query_i64("SELECT COUNT(*) FROM source_files WHERE rows != rows_staged + rejected"),
            0
        );
        let stored = stored_orders(&emu.base_url).await;
        let sent_lines = |id: &str| {
            stored
                .iter()
                .find(|o| {
                    o["key"]
                        .as_str()
                        .is_some_and(|k| k.ends_with(&format!(".{id}")))
                })
                .map(|o| o["lines"].as_u64().unwrap() as usize)
        };
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        for i in 0..40 {
            let id = format!("R-{i}");
            let rows = ws.query_strings(&format!(
                "SELECT status || ' ' || COALESCE(last_error_code, '-') FROM staged_orders
                 WHERE external_id = '{id}'"
            ));
            let payload = ws.query_strings(&format!(
                "SELECT payload FROM staged_orders WHERE external_id = '{id}'"
            ));
            let staged: Option<Vec<String>> = payload.first().map(|p| {
                let p: Value = serde_json::from_str(p).unwrap();
                let names: Vec<String> = p["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["name"].as_str().unwrap().to_string())
                    .collect();
                sorted(&names)
            });
            let status = rows.first().map(String::as_str);
            let in_a = i < 28;
            let in_b = i >= 12;
            let has_bad = bad.iter().any(|&(o, _)| o == i);
            let context = format!("seed {seed}, {id}: {status:?}, staged {staged:?}, sent {:?} lines, yesterday {:?}, today {:?}, bad {has_bad}", sent_lines(&id), yesterday[i], today[i]);
            if in_b && !has_bad {
                assert_eq!(status, Some("succeeded -"), "{context}");
                assert_eq!(staged, Some(sorted(&today[i])), "{context}");
                assert_eq!(sent_lines(&id), Some(today[i].len()), "{context}");
            } else if !in_b {
                assert_eq!(status, Some("succeeded -"), "{context}");
                assert_eq!(staged, Some(sorted(&yesterday[i])), "{context}");
                assert_eq!(sent_lines(&id), Some(yesterday[i].len()), "{context}");
            } else {
                // A bad row today: never today's lines in part.
                match status {
                    None => assert!(!in_a, "{context}"),
                    Some("failed order_incomplete") => {
                        assert_eq!(
                            sent_lines(&id),
                            in_a.then_some(yesterday[i].len()),
                            "{context}"
                        )
                    }
                    Some("succeeded -") => {
                        assert!(in_a, "{context}");
                        assert_eq!(staged, Some(sorted(&yesterday[i])), "{context}");
                        assert_eq!(sent_lines(&id), Some(yesterday[i].len()), "{context}");
                    }
                    _ => panic!("{context}"),
                }
            }
        }
        emu.shutdown().await;
    }
}

/// A run writes a file's chunks and its end only while the file is still its own, checked
/// inside each write's transaction: once another run took the file over (its lease was lost)
/// or finished it, the first run's writes fail and change nothing.
async fn a_file_taken_over_by_another_run_refuses_the_first_runs_writes(backend: Backend) {
    use orderload::staging::{
        FileStart, FileTotals, PreparedChunk, ReadMemory, RunStart, StagingError,
    };
    let Some(ws) = workspace(backend, "fence") else {
        return;
    };
    ws.write_config(None, SHOP);
    let st = orderload::staging::open(&ws.db_url()).await.unwrap();
    let run_a = st
        .begin_run(RunStart::this_process("ingest", &[]))
        .await
        .unwrap();
    let run_b = st
        .begin_run(RunStart::this_process("ingest", &[]))
        .await
        .unwrap();
    let start = FileStart {
        sha256: "f".repeat(64),
        path: "in/f.csv".into(),
        channel: "shop".into(),
        format: Some("shopify".into()),
        encoding: "utf-8".into(),
        notes: vec![],
        size_bytes: 10,
    };
    let bad = |row: u64| {
        vec![orderload::channels::RejectedRow {
            row_number: row,
            column: None,
            reason_code: "bad_quantity".into(),
            message: "bad".into(),
            raw: "x".into(),
            order_key: None,
        }]
    };
    let totals = FileTotals {
        rows: 1,
        rejected: 1,
        ..Default::default()
    };
    fn taken_over<T>(r: Result<T, StagingError>, run: i64) -> bool {
        matches!(r, Err(StagingError::FileTakenOver { run_id, .. }) if run_id == run)
    }
    let file = st.start_file(&start, run_a).await.unwrap();
    st.stage_chunk(
        file,
        run_a,
        PreparedChunk::empty(),
        bad(1),
        &mut ReadMemory::default(),
    )
    .await
    .unwrap();
    assert!(st.reopen_file(file, &start, run_b).await.unwrap());
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM rejected_rows"),
        0,
        "the takeover drops what the first run stored"
    );
    assert!(taken_over(
        st.stage_chunk(
            file,
            run_a,
            PreparedChunk::empty(),
            bad(1),
            &mut ReadMemory::default()
        )
        .await,
        run_a
    ));
    assert!(taken_over(
        st.finish_file(file, run_a, &totals, None).await,
        run_a
    ));
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 0);
    st.stage_chunk(
        file,
        run_b,
        PreparedChunk::empty(),
        bad(1),
        &mut ReadMemory::default(),
    )
    .await
    .unwrap();
    st.finish_file(file, run_b, &totals, None).await.unwrap();
    // Finished: nobody's to write or take over any more.
    assert!(matches!(
        st.stage_chunk(
            file,
            run_b,
            PreparedChunk::empty(),
            bad(1),
            &mut ReadMemory::default()
        )
        .await,
        Err(StagingError::FileTakenOver { .. })
    ));
    assert!(!st.reopen_file(file, &start, run_a).await.unwrap());
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 1);
    assert_eq!(
        ws.query_strings("SELECT status FROM source_files"),
        ["ingested"]
    );
    assert_eq!(ws.query_i64("SELECT run_id FROM source_files"), run_b);
}

/// `orderload ingest FILE` stopped (SIGSTOP) once `at_least` orders are staged; to be
/// continued with [`signal`].
async fn ingest_stopped_midway(ws: &Workspace, file: &str, at_least: i64) -> std::process::Child {
    let child = ingest_until_staged(ws, file, at_least).await;
    signal(&child, "-STOP");
    child
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig}");
}

/// The same stall, but the run that takes the lease over reads the same file again while the
/// stalled one sleeps (a file with a rejected order every 10 orders just past where it
/// stopped). Once awake, the stalled ingest writes nothing more of the file — each chunk checks
/// in its own transaction that the file is still its run's — so no rejected row is stored
/// twice and the other run's totals stand.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_ingest_writes_nothing_more_of_a_file_another_run_took_over() {
    let Some(ws) = workspace(Backend::Postgres, "stalled_takeover") else {
        return;
    };
    ws.write_config(None, SHOP);
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 10\n");
    let mut lines: Vec<String> = shopify_csv(3000, 2, "F")
        .lines()
        .map(str::to_string)
        .collect();
    for order in (205..300).step_by(10) {
        let row = &mut lines[2 + 2 * order];
        *row = row.replacen(",1,Tee 1,", ",x,Tee 1,", 1);
    }
    let file = ws.write_file("in/f.csv", &(lines.join("\n") + "\n"));
    let file = file.to_str().unwrap();
    orderload::staging::open(&ws.db_url())
        .await
        .unwrap()
        .close()
        .await;

    let stalled = ingest_stopped_midway(&ws, file, 150).await;
    tokio::time::sleep(Duration::from_millis(5600)).await; // the 5 s lease expires
    let other = ws
        .cmd()
        .args(["ingest", "--channel", "shop", file])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    signal(&stalled, "-CONT");
    let (stalled, other) = tokio::task::spawn_blocking(move || {
        (
            stalled.wait_with_output().unwrap(),
            other.wait_with_output().unwrap(),
        )
    })
    .await
    .unwrap();
    assert_code(&other, 3); // the rejected orders
    assert!(stderr(&other).contains("reading it again from the start"));
    assert_code(&stalled, 1);
    let err = stderr(&stalled);
    assert!(
        err.contains("another run took it over") || err.contains("lease was taken over"),
        "{err}"
    );

    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 2990);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 20);
    assert_eq!(ws.query_i64("SELECT rejected FROM source_files"), 20);
    assert_eq!(
        ws.query_i64("SELECT rows - rows_staged - rejected FROM source_files"),
        0
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE from_status IS NULL"),
        2990
    );
    assert_eq!(
        ws.query_i64("SELECT SUM(line_count) FROM staged_orders"),
        2990 * 2
    );
    assert_eq!(
        ws.query_strings("SELECT status FROM source_files"),
        ["ingested"]
    );
}

/// The claim protocol itself, through the `Staging` trait.
async fn claims_are_exclusive_expire_and_refuse_stale_outcomes(backend: Backend) {
    let Some(ws) = workspace(backend, "claims") else {
        return;
    };
    ws.write_config(None, SHOP);
    ingest(&ws, "c.csv", &shopify_csv(10, 1, "C"));
    let st = orderload::staging::open(&ws.db_url()).await.unwrap();
    let run = st
        .begin_run(orderload::staging::RunStart::this_process("submit", &[]))
        .await
        .unwrap();
    let a = st
        .claim_orders(run, "token-a", 4, 5, 1, None)
        .await
        .unwrap();
    let b = st
        .claim_orders(run, "token-b", 100, 5, 60, None)
        .await
        .unwrap();
    assert_eq!((a.len(), b.len()), (4, 6));
    let ids_a: Vec<i64> = a.iter().map(|c| c.id).collect();
    assert!(b.iter().all(|c| !ids_a.contains(&c.id)), "claims overlap");
    assert!(st
        .claim_orders(run, "token-c", 100, 5, 60, None)
        .await
        .unwrap()
        .is_empty());
    // B heartbeats; A stalls past its 1-second claim.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(st.heartbeat_claims("token-b", 60).await.unwrap(), 6);
    assert_eq!(
        st.heartbeat_claims("token-a", 60).await.unwrap(),
        0,
        "an expired claim cannot be revived"
    );
    let others = st.foreign_claims("token-b").await.unwrap();
    assert_eq!(others.orders, 4);
    assert_eq!(st.sweep_expired_claims(run).await.unwrap(), 4);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE error_code = 'claim_expired'"),
        4
    );
    let succeeded = |ids: &[i64]| -> Vec<OrderOutcome> {
        ids.iter()
            .map(|&order_id| OrderOutcome {
                order_id,
                result: OrderResult::Succeeded {
                    dynamics_ref: format!("ref-{order_id}"),
                },
            })
            .collect()
    };
    // A comes back: its outcomes are stale and recorded nowhere.
    let stale = st
        .record_outcomes(run, None, "token-a", &succeeded(&ids_a))
        .await
        .unwrap();
    assert_eq!((stale.succeeded, stale.stale), (0, 4));
    let ids_b: Vec<i64> = b.iter().map(|c| c.id).collect();
    let live = st
        .record_outcomes(run, None, "token-b", &succeeded(&ids_b))
        .await
        .unwrap();
    assert_eq!((live.succeeded, live.stale), (6, 0));
    let again = st
        .claim_orders(run, "token-c", 100, 5, 60, None)
        .await
        .unwrap();
    let mut again: Vec<i64> = again.iter().map(|c| c.id).collect();
    again.sort();
    let mut expected = ids_a.clone();
    expected.sort();
    assert_eq!(again, expected, "the swept orders are claimable again");
    let rec = st.reconciliation().await.unwrap();
    assert_eq!((rec.succeeded, rec.in_flight, rec.pending), (6, 4, 0));
    assert!(rec.balanced);
    st.close().await;
}

async fn a_second_runner_is_refused_while_the_lease_is_held(backend: Backend) {
    let Some(ws) = workspace(backend, "lease_held") else {
        return;
    };
    ws.write_config(None, SHOP);
    let file = ws.write_file("in/l.csv", &shopify_csv(2, 1, "L"));
    let st = orderload::staging::open(&ws.db_url()).await.unwrap();
    let run = st
        .begin_run(orderload::staging::RunStart::this_process("run", &[]))
        .await
        .unwrap();
    assert!(st.acquire_lease("someone-else", run, 600).await.is_ok());
    let out = ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("another run holds the lease"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 0);
    st.release_lease("someone-else").await.unwrap();
    let out = ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]);
    assert_code(&out, 0);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 2);
    st.close().await;
}

/// (Was `submit::sigkill_mid_submit_then_rerun_recovers_without_duplicates`, now on both
/// backends.) SQLite recovers a dead submitter's orders at once (one submitter per file); PostgreSQL
/// when its claims expire (another worker might be alive). Either way: nothing twice.
async fn a_killed_submitter_is_recovered_without_duplicates(backend: Backend) {
    let Some(ws) = workspace(backend, "killed_submitter") else {
        return;
    };
    let emu = emulator(|c| c.latency_ms = 250).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("batch_size = 10", "batch_size = 2");
    ingest(&ws, "k.csv", &shopify_csv(30, 2, "K"));
    let mut child = ws.cmd().arg("submit").spawn().unwrap();
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'") > 0
            && ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'in_flight'") > 0
        {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let in_flight = ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'in_flight'");
    assert!(in_flight > 0, "the kill left orders in flight");
    assert!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'") < 30,
        "the kill came before the end"
    );
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        30
    );
    let code = match backend {
        Backend::Sqlite => "recovered",
        Backend::Postgres => "claim_expired",
    };
    assert_eq!(
        ws.query_i64(&format!(
            "SELECT COUNT(*) FROM ledger WHERE error_code = '{code}'"
        )),
        in_flight
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 30);
    assert_eq!(emu.state().await["salesorderdetails"], 60);
    emu.shutdown().await;
}

/// PostgreSQL only: the migrations go over `database_migration_url` when it is set (a pooler
/// in front of `database_url` would break their advisory lock).
#[test]
fn postgres_migrations_use_the_direct_connection_when_one_is_configured() {
    let Some(url) = pg::fresh_database("migration_url") else {
        return;
    };
    let ws = Workspace::with_postgres(url.clone());
    ws.write_config(None, SHOP);
    let file = ws.write_file("in/m.csv", &shopify_csv(3, 1, "M"));
    let ingest = |migration_url: &str| {
        ws.cmd()
            .env("ORDERLOAD_DATABASE_MIGRATION_URL", migration_url)
            .args(["ingest", "--channel", "shop", file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // A direct connection that cannot be reached: the migrations cannot run, nothing is done.
    let out = ingest("postgres://orderload@127.0.0.1:9/nowhere");
    assert_code(&out, 1);
    assert!(stderr(&out).contains("127.0.0.1:9"), "{}", stderr(&out));
    assert_eq!(
        pg::query(
            &url,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'staged_orders'"
        ),
        "0"
    );
    let out = ingest(&url);
    assert_code(&out, 0);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 3);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM _sqlx_migrations WHERE success"),
        migrations
    );
}

/// An unreachable PostgreSQL is a clear error (exit 1) naming the server, never a hang.
#[test]
fn an_unreachable_postgres_exits_1_naming_it() {
    let ws = Workspace::with_postgres("postgres://orderload@127.0.0.1:9/orders".into());
    ws.write_config(None, SHOP);
    let out = ws.run(&["report"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("opening database postgres://orderload@127.0.0.1:9/orders"),
        "{err}"
    );
}

/// Ingest does not wait for a submit (no lease): new content for an order a submit is sending
/// withdraws that submit's claim, so its outcome is stale and the new content is sent. (Until
/// 2026-11-28 SQLite kept the claim: the old content's outcome marked the order succeeded and
/// the new content was never sent.)
async fn new_content_for_an_order_in_flight_withdraws_the_claim(backend: Backend) {
    let Some(ws) = workspace(backend, "in_flight_changed") else {
        return;
    };
    ws.write_config(None, SHOP);
    let csv = shopify_csv(3, 1, "F");
    ingest(&ws, "a.csv", &csv);
    let st = orderload::staging::open(&ws.db_url()).await.unwrap();
    let run = st
        .begin_run(orderload::staging::RunStart::this_process("submit", &[]))
        .await
        .unwrap();
    let claimed = st
        .claim_orders(run, "token-a", 3, 5, 60, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
    let first = st
        .start_batch(run, "token-a", &ids, 3, None, 60)
        .await
        .unwrap();
    assert_eq!(first.live, ids);
    ingest(
        &ws,
        "b.csv",
        &(csv.replacen("Tee 0", "Tee changed", 1) + "\n"),
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM staged_orders WHERE status = 'pending' AND claim_token IS NULL"
        ),
        1
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE message LIKE '%while in flight%'"),
        1
    );
    let live = |token: &'static str, batch: i64| {
        let st = &st;
        let ids = ids.clone();
        async move {
            let mut l = st.live_claims(token, batch, &ids).await.unwrap();
            l.sort_unstable();
            l
        }
    };
    assert_eq!(
        live("token-a", first.id).await,
        ids[1..],
        "the changed order's claim is withdrawn"
    );
    assert!(live("token-b", first.id).await.is_empty());

    // The same run claims the changed order again, for a second batch: the first batch's
    // claim on it stays withdrawn — also before the second batch starts — and its outcome
    // for it is not recorded.
    let again = st
        .claim_orders(run, "token-a", 3, 5, 60, None)
        .await
        .unwrap();
    assert_eq!(again.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(live("token-a", first.id).await, ids[1..]);
    let succeeded = |ids: &[i64]| -> Vec<OrderOutcome> {
        ids.iter()
            .map(|&order_id| OrderOutcome {
                order_id,
                result: OrderResult::Succeeded {
                    dynamics_ref: "r".into(),
                },
            })
            .collect()
    };
    let rec = st
        .record_outcomes(run, Some(first.id), "token-a", &succeeded(&ids))
        .await
        .unwrap();
    assert_eq!((rec.succeeded, rec.stale), (2, 1));
    assert_eq!(
        ws.query_strings(&format!(
            "SELECT status FROM staged_orders WHERE id = {}",
            ids[0]
        )),
        ["in_flight"],
        "the first batch's outcome is not the second batch's"
    );
    let second = st
        .start_batch(run, "token-a", &[ids[0]], 1, None, 60)
        .await
        .unwrap();
    assert_eq!(second.live, [ids[0]]);
    assert!(live("token-a", first.id).await.is_empty());
    assert_eq!(live("token-a", second.id).await, [ids[0]]);
    let rec = st
        .record_outcomes(run, Some(second.id), "token-a", &succeeded(&[ids[0]]))
        .await
        .unwrap();
    assert_eq!((rec.succeeded, rec.stale), (1, 0));
    assert_eq!(
        st.start_batch(run, "token-a", &[ids[0]], 1, None, 60)
            .await
            .unwrap()
            .live
            .len(),
        0,
        "no claim left to confirm"
    );
    st.close().await;
}

/// `shopify_csv` without the data rows at `drop` (0-based, header excluded).
fn without_rows(csv: &str, drop: &[usize]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (i, line) in csv.lines().enumerate() {
        if i == 0 || !drop.contains(&(i - 1)) {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

/// The emulator's lines of each order by their keys (`shop.#F1000.1`), by the order's name
/// (`shop #F1000`).
async fn lines_in_dynamics(base_url: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    stored_orders(base_url)
        .await
        .iter()
        .map(|o| {
            let keys: Vec<String> = serde_json::from_value(o["line_keys"].clone()).unwrap();
            assert_eq!(o["lines"], keys.len(), "{o}");
            (o["name"].as_str().unwrap().to_string(), keys)
        })
        .collect()
}

/// The keys of lines 1..=n of order `id` of channel shop.
fn line_keys(id: &str, n: usize) -> Vec<String> {
    (1..=n).map(|k| format!("shop.{id}.{k}")).collect()
}

async fn set_faults(base_url: &str, faults: Value) {
    let status = reqwest::Client::new()
        .post(format!("{base_url}/_emulator/faults"))
        .json(&faults)
        .send()
        .await
        .expect("POST /_emulator/faults")
        .status();
    assert!(status.is_success(), "faults: {status}");
}

/// Lines are upserted by position (`shop.#F1000.3`), so an order corrected to fewer lines must
/// have the lines above its new count removed, or Dynamics keeps them and the invoice is
/// wrong. Covered: corrected after it was sent (3 → 2, and 3 → 1); corrected twice before it
/// was sent again (3 → 2 → 1); corrected before it was ever sent (the removal finds nothing:
/// 404, and the order goes without it); and a removal whose answer was lost (the connection
/// dropped after Dynamics applied it), then sent again after a rerun.
async fn an_order_corrected_to_fewer_lines_keeps_only_its_new_lines_in_dynamics(backend: Backend) {
    let Some(ws) = workspace(backend, "fewer_lines") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("max_retries = 8", "max_retries = 2");
    // Five orders of three lines: data rows 3k..3k+2 are #F100k.
    let day1 = shopify_csv(5, 3, "F");
    ingest(&ws, "day1.csv", &day1);
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    let sent = lines_in_dynamics(&emu.base_url).await;
    assert_eq!(sent.values().map(Vec::len).sum::<usize>(), 15, "{sent:?}");

    // Day 2: #F1000 lost its third line, #F1001 its last two, #F1002 its third (and loses its
    // second on day 3, before it is sent again). #G1000 is new with three lines, and is
    // corrected to two on day 3, before it was ever sent.
    ingest(&ws, "day2.csv", &without_rows(&day1, &[2, 4, 5, 8]));
    ingest(&ws, "g1.csv", &shopify_csv(1, 3, "G"));
    ingest(&ws, "day3.csv", &without_rows(&day1, &[2, 4, 5, 7, 8]));
    ingest(&ws, "g2.csv", &without_rows(&shopify_csv(1, 3, "G"), &[2]));
    assert_eq!(
        ws.query_strings(
            "SELECT external_id || ' ' || line_count || ' ' || COALESCE(earlier_lines, 0)
             FROM staged_orders WHERE status = 'pending' ORDER BY external_id"
        ),
        ["#F1000 2 3", "#F1001 1 3", "#F1002 1 3", "#G1000 2 3"]
    );
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    let expected = [
        ("shop #F1000", 2),
        ("shop #F1001", 1),
        ("shop #F1002", 1),
        ("shop #F1003", 3),
        ("shop #F1004", 3),
        ("shop #G1000", 2),
    ];
    let want: std::collections::BTreeMap<String, Vec<String>> = expected
        .iter()
        .map(|(name, n)| (name.to_string(), line_keys(&name[5..], *n)))
        .collect();
    assert_eq!(lines_in_dynamics(&emu.base_url).await, want);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE earlier_lines IS NOT NULL"),
        0,
        "a success clears what an earlier version had"
    );

    // Day 4: #F1003 loses two lines; every answer from Dynamics is lost after it applied the
    // batch, so the order fails (retries exhausted) with the lines already removed. Its rerun
    // finds them gone (404), sends the order without the removals, and succeeds.
    ingest(
        &ws,
        "day4.csv",
        &without_rows(&day1, &[2, 4, 5, 7, 8, 10, 11]),
    );
    set_faults(&emu.base_url, serde_json::json!({"drop_rate": 1.0})).await;
    assert_code(&run_async(&ws, &["submit"]).await, 3);
    assert_eq!(
        ws.query_strings(
            "SELECT status || ' ' || last_error_code || ' ' || earlier_lines FROM staged_orders
             WHERE external_id = '#F1003'"
        ),
        ["failed retries_exhausted 3"]
    );
    assert_eq!(
        lines_in_dynamics(&emu.base_url).await["shop #F1003"],
        line_keys("#F1003", 1)
    );
    set_faults(&emu.base_url, serde_json::json!({"drop_rate": 0.0})).await;
    let out = ws.run(&["rerun", "--order", "shop:#F1003"]);
    assert_code(&out, 0);
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(
        ws.query_strings("SELECT status FROM staged_orders WHERE external_id = '#F1003'"),
        ["succeeded"]
    );
    let mut want = want;
    want.insert("shop #F1003".into(), line_keys("#F1003", 1));
    assert_eq!(lines_in_dynamics(&emu.base_url).await, want);
    let report = report_json(&ws, &[]);
    assert_eq!(report["reconciliation"]["balanced"], true, "{report}");
    emu.shutdown().await;
}

/// An order is not sent while the file its content came from is still being read: a later
/// part of it may still come. After an interrupted read (as between a killed ingest and the
/// next), a submit sends only the orders of other files, among them one the interrupted
/// read did not reach; the report says why the others wait; once the file is read again to
/// the end, they go, each with all its lines.
async fn no_order_of_a_file_still_being_read_is_sent_until_its_read_ends(backend: Backend) {
    let Some(ws) = workspace(backend, "not_while_read") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 4\n");
    // Yesterday's file: #W1000-#W1001 of three lines, sent.
    let yesterday = shopify_csv(2, 3, "W");
    ingest(&ws, "yesterday.csv", &yesterday);
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    // Today's: #W1001's first two lines, #V1000-#V1011, then #W1001's third line, far apart.
    // Chunks of 4 orders: #W1001 (two lines) #V1000-2 | #V1003-6 | #V1007-10 | #V1011 #W1001;
    // the read stops at #V1007, so #W1001 is staged with two lines of three. Sent now, it
    // would lose its third line in Dynamics.
    let w1001: Vec<&str> = yesterday.lines().skip(4).collect();
    let mut lines: Vec<String> = shopify_csv(12, 1, "V")
        .lines()
        .map(str::to_string)
        .collect();
    lines.insert(1, w1001[0].to_string());
    lines.insert(2, w1001[1].to_string());
    // A far-apart part starts with a whole first row (Shopify repeats the order's columns).
    lines.push(
        w1001[0]
            .replace("Tee 0,", "Tee 2,")
            .replace("SKU-0,", "SKU-2,"),
    );
    ingest(&ws, "other.csv", &shopify_csv(1, 1, "X"));
    orderload::staging::open(&ws.db_url())
        .await
        .unwrap()
        .close()
        .await;
    let allow = stop_inserting(&ws, backend, "#V1007");
    let file = ws.write_file("in/today.csv", &(lines.join("\n") + "\n"));
    let file = file.to_str().unwrap();
    assert_code(&ws.run(&["ingest", "--channel", "shop", file]), 1);
    // #W1001 (two lines of three so far) and #V1000-#V1006 wait for the read to end.
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM staged_orders o JOIN source_files f ON f.id = o.source_file_id
             WHERE f.status = 'reading' AND o.status = 'pending'"
        ),
        8
    );
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("not sent: 8 pending orders whose file is still being read"),
        "{}",
        stdout(&out)
    );
    let sent = lines_in_dynamics(&emu.base_url).await;
    assert_eq!(
        sent.keys().map(String::as_str).collect::<Vec<_>>(),
        ["shop #W1000", "shop #W1001", "shop #X1000"],
        "only the other files' orders are sent"
    );
    assert_eq!(
        sent["shop #W1001"],
        line_keys("#W1001", 3),
        "yesterday's copy, untouched"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        8
    );
    let dry = ws.run(&["submit", "--dry-run"]);
    assert_code(&dry, 0);
    assert!(!stdout(&dry).contains("V1000"), "{}", stdout(&dry));
    let table = stdout(&ws.run(&["report"]));
    assert!(
        table.contains("File 3 was left half read: the orders it staged are not sent until"),
        "{table}"
    );

    ws.execute(allow);
    assert_code(&ws.run(&["ingest", "--channel", "shop", file]), 0);
    let dry = ws.run(&["submit", "--dry-run"]);
    assert!(stdout(&dry).contains("V1000"), "{}", stdout(&dry));
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    let sent = lines_in_dynamics(&emu.base_url).await;
    assert_eq!(sent.len(), 15, "{sent:?}");
    assert_eq!(sent["shop #W1001"], line_keys("#W1001", 3), "{sent:?}");
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        15
    );
    emu.shutdown().await;
}

/// A batch whose answer was lost is sent again after a pause — unless its claim was withdrawn
/// meanwhile. Here (PostgreSQL: workers hold no lease) worker A's batch lands with version 1
/// of an order (3 lines) but the answer is lost; while A waits to send it again, the order is
/// corrected to 2 lines (A's claim is withdrawn) and worker B sends version 2. A then asks
/// for its claims before sending again, finds this one gone and does not send version 1 over
/// version 2. Before, its retry put version 1 and the removed line back into Dynamics while
/// staging said version 2 had succeeded.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_the_claim_was_withdrawn_does_not_send_the_old_version_again() {
    let Some(ws) = workspace(Backend::Postgres, "withdrawn_retry") else {
        return;
    };
    let emu = emulator(|c| c.drop_rate = 1.0).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config(
        "max_retries = 8\nbase_ms = 50\ncap_ms = 2000",
        "max_retries = 1\nbase_ms = 6000\ncap_ms = 6000",
    );
    let v1 = shopify_csv(1, 3, "K");
    ingest(&ws, "v1.csv", &v1);
    let mut a = ws.cmd();
    a.arg("submit");
    let a = a
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while emu.state().await["dropped"] == 0 {
        assert!(std::time::Instant::now() < deadline, "A never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    assert_eq!(
        lines_in_dynamics(&emu.base_url).await["shop #K1000"],
        line_keys("#K1000", 3),
        "A's first attempt landed"
    );
    ingest(&ws, "v2.csv", &without_rows(&v1, &[2]));
    set_faults(&emu.base_url, serde_json::json!({"drop_rate": 0.0})).await;
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "B took {:?}: A (waiting at least 4.8 s) may have sent again before it",
        started.elapsed()
    );
    assert_eq!(
        lines_in_dynamics(&emu.base_url).await["shop #K1000"],
        line_keys("#K1000", 2),
        "B sent version 2"
    );
    let out = tokio::task::spawn_blocking(move || a.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = stderr(&out);
    assert!(err.contains("not sent again"), "{err}");
    assert_eq!(
        lines_in_dynamics(&emu.base_url).await["shop #K1000"],
        line_keys("#K1000", 2),
        "A sent version 1 again over version 2"
    );
    assert_eq!(
        ws.query_strings("SELECT status || ' ' || line_count FROM staged_orders"),
        ["succeeded 2"]
    );
    emu.shutdown().await;
}

/// Yesterday's export staged and sent #P1000 whole (2 lines); today's has the same rows with
/// the second far below (a CSV sorted by SKU). Its first part replaces the order and sends it
/// back to pending, the later part completes it again: at the end of the file the order's
/// content is what Dynamics has, so it goes back to `succeeded` and is not sent again. #P1001,
/// really changed, is sent; #P1002 is unchanged throughout.
async fn an_order_sent_whole_and_read_again_in_far_apart_parts_is_not_sent_again(backend: Backend) {
    let Some(ws) = workspace(backend, "far_apart_settled") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 2\n");
    let yesterday = shopify_csv(3, 2, "P");
    ingest(&ws, "yesterday.csv", &yesterday);
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    let batches = emu.state().await["batches"].as_u64().unwrap();

    // Chunks of 2 orders: #P1000 (its first line) #P1001 | #P1002 #P1000 (its second line,
    // a whole first row as Shopify repeats it).
    let rows: Vec<&str> = yesterday.lines().collect();
    let second = rows[1]
        .replace("Tee 0,", "Tee 1,")
        .replace("SKU-0,", "SKU-1,");
    let changed = rows[3].replace("Tee 0,", "Tee zero,");
    assert_ne!(changed, rows[3]);
    let today = [
        rows[0], rows[1], &changed, rows[4], rows[5], rows[6], &second,
    ]
    .join("\n")
        + "\n";
    ingest(&ws, "today.csv", &today);
    assert_eq!(
        ws.query_strings(
            "SELECT external_id || ' ' || status || ' ' || line_count FROM staged_orders ORDER BY id"
        ),
        ["#P1000 succeeded 2", "#P1001 pending 2", "#P1002 succeeded 2"]
    );
    assert_eq!(
        ws.query_strings(
            "SELECT COALESCE(l.from_status, '') || '>' || l.to_status FROM ledger l
             JOIN staged_orders o ON o.id = l.order_id
             WHERE o.external_id = '#P1000' ORDER BY l.id"
        ),
        [
            ">pending",
            "pending>in_flight",
            "in_flight>succeeded",
            "succeeded>pending",
            "pending>succeeded"
        ]
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM staged_orders WHERE external_id = '#P1000'
               AND earlier_lines IS NULL AND sent_hash = content_hash"
        ),
        1,
        "settled as it was after its success"
    );
    let report = report_json(&ws, &[]);
    assert_eq!(report["reconciliation"]["balanced"], true, "{report}");
    let notes = report["files"][0]["notes"].to_string();
    assert!(
        notes.contains("1 order(s) whose rows are far apart"),
        "{notes}"
    );

    assert_code(&run_async(&ws, &["submit"]).await, 0);
    let state = emu.state().await;
    assert_eq!(state["batches"].as_u64().unwrap() - batches, 1, "{state}");
    assert_eq!(
        ws.query_i64("SELECT orders FROM batches ORDER BY id DESC LIMIT 1"),
        1,
        "#P1001 alone"
    );
    let lines = lines_in_dynamics(&emu.base_url).await;
    for id in ["#P1000", "#P1001", "#P1002"] {
        assert_eq!(lines[&format!("shop {id}")], line_keys(id, 2), "{lines:?}");
    }
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        3
    );
    emu.shutdown().await;
}

/// A file whose read was interrupted and that is never read again (the exporter's next file
/// replaces it): the orders it staged that the next file repeats unchanged are that file's
/// now, and go with it, instead of waiting for a read of the first file that never comes.
async fn orders_of_an_interrupted_file_found_unchanged_in_a_later_file_are_sent_after_it(
    backend: Backend,
) {
    let Some(ws) = workspace(backend, "adopted") else {
        return;
    };
    let emu = emulator(|_| {}).await;
    ws.write_config(Some(&emu.base_url), SHOP);
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 4\n");
    orderload::staging::open(&ws.db_url())
        .await
        .unwrap()
        .close()
        .await;
    // The first export stops at #V1004: #V1000-#V1003 are staged, the file stays `reading`.
    let allow = stop_inserting(&ws, backend, "#V1004");
    ingest_expecting(&ws, "first.csv", &shopify_csv(8, 1, "V"), 1);
    ws.execute(allow);
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("not sent: 4 pending orders"),
        "{}",
        stdout(&out)
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 0);
    // The next export has them again, unchanged, and six more.
    ingest(&ws, "second.csv", &shopify_csv(10, 1, "V"));
    let report = report_json(&ws, &[]);
    let files = report["files"].as_array().unwrap();
    let first = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("first.csv"));
    assert_eq!(first.unwrap()["status"], "reading", "{files:?}");
    let second = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("second.csv"));
    let notes = second.unwrap()["notes"].to_string();
    assert!(
        notes.contains("4 order(s) staged by an interrupted read of file 1,"),
        "{notes}"
    );
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    assert_eq!(assert_stored_once(&emu.base_url).await, 10);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        10
    );
    emu.shutdown().await;
}
