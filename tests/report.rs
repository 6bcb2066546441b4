//! `orderload report` through the real binary, on a database built through the library:
//! two files (with rejected rows), two batches with successes and failures.

use crate::common::{assert_code, stderr, stdout, Workspace};
use orderload::channels::RejectedRow;
use orderload::model::{CurrencyCode, Customer, Order, OrderLine, Provenance};
use orderload::staging::{FileStart, FileTotals, PreparedChunk, ReadMemory, RunStart};
use orderload::submit::target::{OrderOutcome, OrderResult};
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

const LONG_MESSAGE: &str = "The length of the 'name' attribute of the 'salesorder' entity exceeded the maximum allowed length of '100'; the value given was 'Expedited international shipping with signature and insurance'";
const PRICE_MESSAGE: &str = "pricelevel \"Retail\", not found\nsecond line";

struct Fixture {
    ws: Workspace,
    ingest_run: i64,
    submit_run: i64,
    batch1: i64,
    batch2: i64,
}

pub(crate) fn order(channel: &str, id: &str, rows: Vec<u64>, lines: usize, total: &str) -> Order {
    Order {
        channel: channel.into(),
        external_id: id.into(),
        created_at: chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00-04:00")
            .unwrap()
            .with_timezone(&chrono::Utc),
        created_at_original: "2024-05-01 10:00:00 -0400".into(),
        currency: CurrencyCode::parse("USD").unwrap(),
        customer: Customer {
            email: Some("a@example.com".into()),
            name: Some("Ann Example".into()),
            phone: None,
        },
        billing: None,
        shipping: None,
        lines: (1..=lines)
            .map(|n| OrderLine {
                line_number: n as u32,
                sku: Some(format!("SKU-{n}")),
                name: format!("Item {n}"),
                quantity: Decimal::ONE,
                unit_price: Decimal::from_str("5.00").unwrap(),
                discount: Decimal::ZERO,
                tax: Decimal::ZERO,
            })
            .collect(),
        subtotal: None,
        shipping_amount: None,
        tax: None,
        discount: None,
        total: Some(Decimal::from_str(total).unwrap()),
        taxes_included: false,
        financial_status: Some("paid".into()),
        notes: None,
        source: Provenance {
            file_id: None,
            path: None,
            rows,
        },
    }
}

fn rejected(row: u64, reason: &str) -> RejectedRow {
    RejectedRow {
        row_number: row,
        column: Some("Total".into()),
        reason_code: reason.into(),
        message: format!("row {row}: {reason}"),
        raw: "=cmd|' /C calc'!A0".into(),
        order_key: None,
    }
}

fn failed(id: i64, retryable: bool, http: u16, code: &str, message: &str) -> OrderOutcome {
    OrderOutcome {
        order_id: id,
        result: OrderResult::Failed {
            retryable,
            http_status: Some(http),
            code: code.into(),
            message: message.into(),
        },
    }
}

fn succeeded(id: i64, r: &str) -> OrderOutcome {
    OrderOutcome {
        order_id: id,
        result: OrderResult::Succeeded {
            dynamics_ref: r.into(),
        },
    }
}

/// shop: #1001 (2 rows, 2 lines) ok, #1002 value_too_long (400), =1003 retries_exhausted (429),
/// 1004 ok; one rejected row. amazon: 111-1 ok, 111-2 missing price list (404); two rejected.
fn fixture() -> Fixture {
    let ws = Workspace::new();
    ws.write_config(None, "");
    let url = ws.db_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ingest_run, submit_run, batch1, batch2) = rt.block_on(async move {
        let st = orderload::staging::open(&url).await.unwrap();
        let run1 = st
            .begin_run(RunStart::this_process("ingest", &["orderload".into()]))
            .await
            .unwrap();
        let file = |sha: &str, path: &str, channel: &str| FileStart {
            sha256: sha.into(),
            path: path.into(),
            channel: channel.into(),
            format: Some("csv".into()),
            encoding: "utf-8".into(),
            notes: vec![],
            size_bytes: 100,
        };
        let f1 = st
            .start_file(
                &file(&"a".repeat(64), "inbox/shop-2024-05-01.csv", "shop"),
                run1,
            )
            .await
            .unwrap();
        st.stage_chunk(
            f1,
            run1,
            PreparedChunk::new(
                f1,
                vec![
                    order("shop", "#1001", vec![1, 2], 2, "10.00"),
                    order("shop", "#1002", vec![3], 1, "12.50"),
                    order("shop", "=1003", vec![4], 1, "5.00"),
                    order("shop", "1004", vec![5], 1, "5.00"),
                ],
            ),
            vec![rejected(6, "bad_decimal")],
            &mut ReadMemory::default(),
        )
        .await
        .unwrap();
        let totals = |rows, staged, rej, orders| FileTotals {
            format: Some("csv".into()),
            encoding: Some("utf-8".into()),
            notes: vec![],
            rows,
            rows_staged: staged,
            rejected: rej,
            orders,
            orders_new: orders,
            orders_updated: 0,
            orders_unchanged: 0,
        };
        st.finish_file(f1, run1, &totals(6, 5, 1, 4), None)
            .await
            .unwrap();
        let f2 = st
            .start_file(&file(&"b".repeat(64), "inbox/amazon.txt", "amazon"), run1)
            .await
            .unwrap();
        st.stage_chunk(
            f2,
            run1,
            PreparedChunk::new(
                f2,
                vec![
                    order("amazon", "111-1", vec![1], 1, "7.00"),
                    order("amazon", "111-2", vec![2, 3], 2, "9.00"),
                ],
            ),
            vec![rejected(4, "ragged_row"), rejected(5, "ragged_row")],
            &mut ReadMemory::default(),
        )
        .await
        .unwrap();
        st.finish_file(f2, run1, &totals(5, 3, 2, 2), None)
            .await
            .unwrap();
        st.finish_run(
            run1,
            "some_failed",
            3,
            &serde_json::json!({"files": 2, "orders": 6}),
        )
        .await
        .unwrap();

        let run2 = st
            .begin_run(RunStart::this_process("submit", &["orderload".into()]))
            .await
            .unwrap();
        let claimed = st
            .claim_orders(run2, "tok", 100, 5, 300, None)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 6);
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        let b1 = st
            .start_batch(run2, "tok", &ids[..3], 7, None, 300)
            .await
            .unwrap()
            .id;
        st.record_outcomes(
            run2,
            Some(b1),
            "tok",
            &[
                succeeded(ids[0], "guid-1001"),
                failed(ids[1], false, 400, "value_too_long", LONG_MESSAGE),
                failed(
                    ids[2],
                    true,
                    429,
                    "retries_exhausted",
                    "gave up after 8 retries",
                ),
            ],
        )
        .await
        .unwrap();
        let b2 = st
            .start_batch(run2, "tok", &ids[3..], 8, None, 300)
            .await
            .unwrap()
            .id;
        st.record_outcomes(
            run2,
            Some(b2),
            "tok",
            &[
                succeeded(ids[3], "guid-1004"),
                succeeded(ids[4], "guid-111-1"),
                failed(ids[5], false, 404, "0x80040217", PRICE_MESSAGE),
            ],
        )
        .await
        .unwrap();
        st.finish_run(
            run2,
            "some_failed",
            3,
            &serde_json::json!({"succeeded": 3, "failed": 3}),
        )
        .await
        .unwrap();
        st.close().await;
        (run1, run2, b1, b2)
    });
    Fixture {
        ws,
        ingest_run,
        submit_run,
        batch1,
        batch2,
    }
}

impl Fixture {
    fn report(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        self.ws.run(&all)
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.report(args);
        assert_code(&o, 0);
        stdout(&o)
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--format", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("report --format json prints JSON")
    }
    fn exec(&self, sql: &str) {
        let conn = rusqlite::Connection::open(self.ws.db_path()).unwrap();
        conn.execute_batch(sql).unwrap();
    }
}

fn assert_fits(text: &str) {
    assert!(!text.trim().is_empty());
    for line in text.lines() {
        assert!(
            line.chars().count() <= 120,
            "line of {} chars:\n{line}\n--- whole output:\n{text}",
            line.chars().count()
        );
    }
}

fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn summary_json_has_the_contract_keys_and_exact_counts() {
    let f = fixture();
    let j = f.json(&[]);
    assert_eq!(
        j["orders"],
        serde_json::json!({"pending": 0, "in_flight": 0, "succeeded": 3, "failed": 3, "total": 6})
    );
    assert_eq!(j["rejected_rows"], 3);
    let reasons = j["rejected_by_reason"].as_array().unwrap();
    assert_eq!(reasons[0]["reason_code"], "ragged_row");
    assert_eq!(reasons[0]["count"], 2);

    let files = j["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for file in files {
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
            assert!(file.get(key).is_some(), "files[] lacks {key}: {file}");
        }
        assert_eq!(
            file["rows"].as_i64().unwrap(),
            file["rows_staged"].as_i64().unwrap() + file["rejected"].as_i64().unwrap(),
            "{file}"
        );
    }
    let shop = files.iter().find(|x| x["channel"] == "shop").unwrap();
    assert_eq!(shop["path"], "inbox/shop-2024-05-01.csv");
    assert_eq!(shop["rows"], 6);
    assert_eq!(shop["orders"], 4);
    assert_eq!(shop["status"], "ingested");
    assert_eq!(shop["sha256"], "a".repeat(64));

    let batches = j["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    let b1 = batches.iter().find(|b| b["id"] == f.batch1).unwrap();
    assert_eq!(b1["status"], "partially_failed");
    assert_eq!(
        (
            b1["orders"].as_i64(),
            b1["succeeded"].as_i64(),
            b1["failed"].as_i64()
        ),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(b1["operations"], 7);
    assert_eq!(j["batches_count"]["total"], 2);

    let failed = j["failed_orders"].as_array().unwrap();
    assert_eq!(failed.len(), 3);
    for fo in failed {
        for key in [
            "channel",
            "external_id",
            "batch_id",
            "attempts",
            "error_code",
            "message",
            "hint",
        ] {
            assert!(fo.get(key).is_some(), "failed_orders[] lacks {key}: {fo}");
        }
    }
    let too_long = failed.iter().find(|x| x["external_id"] == "#1002").unwrap();
    assert_eq!(too_long["channel"], "shop");
    assert_eq!(too_long["batch_id"], f.batch1);
    assert_eq!(too_long["attempts"], 1);
    assert_eq!(too_long["error_code"], "value_too_long");
    assert_eq!(too_long["http_status"], 400);
    assert_eq!(too_long["message"], LONG_MESSAGE);
    assert_eq!(too_long["retryable"], false);

    let channels = j["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2);
    assert_eq!(channels[0]["channel"], "amazon");
    assert_eq!(
        (
            channels[0]["succeeded"].as_i64(),
            channels[0]["failed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(channels[1]["channel"], "shop");
    assert_eq!(channels[1]["total"], 4);

    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["id"], f.submit_run, "most recent first");
    assert_eq!(runs[0]["command"], "submit");
    assert_eq!(runs[0]["outcome"], "some_failed");
    assert_eq!(runs[0]["exit_code"], 3);
    assert_eq!(runs[0]["counts"]["succeeded"], 3);
    assert_eq!(runs[1]["counts"]["files"], 2);

    let rec = &j["reconciliation"];
    assert_eq!(rec["balanced"], true);
    assert_eq!(rec["rows_read"], 11);
    assert_eq!(rec["rows_staged"], 8);
    assert_eq!(rec["rows_rejected"], 3);
    assert_eq!(j["lease"], Value::Null);
}

#[test]
fn failed_lists_every_failed_order_with_a_hint() {
    let f = fixture();
    let j = f.json(&["--failed"]);
    assert_eq!(j["total"], 3);
    let list = j["failed_orders"].as_array().unwrap();
    let by_id = |id: &str| {
        list.iter()
            .find(|x| x["external_id"] == id)
            .unwrap()
            .clone()
    };
    let h = by_id("#1002")["hint"].as_str().unwrap().to_string();
    assert!(
        h.starts_with("fix the value in the source file and re-ingest"),
        "{h}"
    );
    assert!(h.ends_with("`orderload rerun --order 'shop:#1002'`"), "{h}");
    let h = by_id("=1003")["hint"].as_str().unwrap().to_string();
    assert!(
        h.starts_with("transient: will be retried by the next run"),
        "{h}"
    );
    assert_eq!(by_id("=1003")["retryable"], true);
    assert_eq!(by_id("=1003")["http_status"], 429);
    let h = by_id("111-2")["hint"].as_str().unwrap().to_string();
    assert!(h.contains("price list"), "{h}");
    assert_eq!(by_id("111-2")["batch_id"], f.batch2);
    let groups = j["by_error"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    assert!(groups.iter().all(|g| g["count"] == 1));

    let table = f.ok(&["--failed"]);
    assert_fits(&table);
    assert!(table.starts_with("Failed orders: 3"), "{table}");
    assert!(
        table.contains("value_too_long (HTTP 400), 1 order:"),
        "{table}"
    );
    // the long message is cut to fit, with an ellipsis
    let row = table.lines().find(|l| l.contains("#1002")).unwrap();
    assert!(row.ends_with('…'), "{row}");
    // a newline inside a message does not break the table
    assert!(
        table.contains("not found second line") || table.contains("not found sec"),
        "{table}"
    );
}

#[test]
fn csv_has_a_header_quotes_fields_and_guards_formulas() {
    let f = fixture();
    let text = f.ok(&["--format", "csv"]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("channel,pending,in_flight,succeeded,failed,total")
    );
    assert_eq!(lines.next(), Some("amazon,0,0,1,1,2"));
    assert_eq!(lines.next(), Some("shop,0,0,2,2,4"));
    assert_eq!(lines.next(), Some("(all),0,0,3,3,6"));
    assert_eq!(lines.next(), None);

    let text = f.ok(&["--failed", "--format", "csv"]);
    let (header, rows) = csv_rows(&text);
    assert_eq!(
        header,
        [
            "channel",
            "external_id",
            "batch_id",
            "attempts",
            "error_code",
            "http_status",
            "retryable",
            "message",
            "hint",
            "failed_at"
        ]
    );
    assert_eq!(rows.len(), 3);
    let formula = rows.iter().find(|r| r[1].contains("1003")).unwrap();
    assert_eq!(formula[1], "'=1003", "formula guard");
    let price = rows.iter().find(|r| r[1] == "111-2").unwrap();
    assert_eq!(price[7], PRICE_MESSAGE, "quotes, comma and newline survive");
    assert_eq!(price[5], "404");
    assert!(
        text.contains("\"pricelevel \"\"Retail\"\", not found\nsecond line\""),
        "properly quoted: {text}"
    );
    assert!(!text.contains(",=1003,"));

    let (header, rows) = csv_rows(&f.ok(&["--batch", &f.batch1.to_string(), "--format", "csv"]));
    assert_eq!(
        header[..4],
        ["batch_id", "channel", "external_id", "outcome"]
    );
    assert_eq!(rows.len(), 3);
    let (header, rows) = csv_rows(&f.ok(&["--order", "shop:#1002", "--format", "csv"]));
    assert_eq!(header[2..5], ["at", "from", "to"]);
    assert_eq!(
        rows.iter().map(|r| r[4].as_str()).collect::<Vec<_>>(),
        ["pending", "in_flight", "failed"]
    );
}

#[test]
fn batch_shows_the_batch_and_each_of_its_orders() {
    let f = fixture();
    let j = f.json(&["--batch", &f.batch1.to_string()]);
    assert_eq!(j["batch"]["id"], f.batch1);
    assert_eq!(j["batch"]["run_id"], f.submit_run);
    assert_eq!(j["batch"]["status"], "partially_failed");
    let orders = j["orders"].as_array().unwrap();
    let got: Vec<(String, String)> = orders
        .iter()
        .map(|o| {
            (
                o["external_id"].as_str().unwrap().into(),
                o["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("#1001".into(), "succeeded".into()),
            ("#1002".into(), "failed".into()),
            ("=1003".into(), "failed".into())
        ]
    );
    assert_eq!(orders[1]["error_code"], "value_too_long");
    assert_eq!(orders[1]["http_status"], 400);

    let table = f.ok(&["--batch", &f.batch2.to_string()]);
    assert_fits(&table);
    assert!(
        table.contains(&format!(
            "Batch {} — partially_failed: 3 orders (2 succeeded, 1 failed)",
            f.batch2
        )),
        "{table}"
    );
    assert!(table.contains("111-2"));
    assert!(!table.contains("#1001"), "orders of another batch");

    let o = f.report(&["--batch", "999"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("no batch with id 999"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn order_shows_its_whole_history() {
    let f = fixture();
    let j = f.json(&["--order", "shop:#1002"]);
    assert_eq!(j["status"], "failed");
    assert_eq!(j["attempts"], 1);
    assert_eq!(j["batch_id"], f.batch1);
    assert_eq!(j["dynamics_key"], "shop.#1002");
    assert_eq!(j["dynamics_ref"], Value::Null);
    assert_eq!(j["error_code"], "value_too_long");
    assert!(j["hint"].as_str().unwrap().starts_with("fix the value"));
    assert_eq!(j["order"]["created_at"], "2024-05-01T14:00:00Z");
    assert_eq!(j["order"]["currency"], "USD");
    assert_eq!(j["order"]["total"], "12.50");
    assert_eq!(j["order"]["lines"], 1);
    let files = j["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["path"], "inbox/shop-2024-05-01.csv");
    assert_eq!(files[0]["rows"], serde_json::json!([3]));
    let events = j["events"].as_array().unwrap();
    let changes: Vec<(Value, Value)> = events
        .iter()
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (Value::Null, "pending".into()),
            ("pending".into(), "in_flight".into()),
            ("in_flight".into(), "failed".into())
        ]
    );
    assert_eq!(events[0]["run_id"], f.ingest_run);
    assert_eq!(events[2]["batch_id"], f.batch1);
    assert_eq!(events[2]["run_id"], f.submit_run);
    assert_eq!(events[2]["http_status"], 400);
    assert_eq!(events[2]["error_code"], "value_too_long");
    let times: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    let j = f.json(&["--order", "shop:#1001"]);
    assert_eq!(j["dynamics_ref"], "guid-1001");
    assert_eq!(j["files"][0]["rows"], serde_json::json!([1, 2]));
    assert_eq!(j["order"]["lines"], 2);

    let table = f.ok(&["--order", "shop:#1002"]);
    assert_fits(&table);
    assert!(table.contains("Dynamics key: shop.#1002"), "{table}");
    assert!(table.contains("records 3"), "{table}");
    assert!(table.contains("in_flight → failed"), "{table}");
    assert!(table.contains("What to do:"), "{table}");

    let o = f.report(&["--order", "shop:#9999"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("no order shop:#9999"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("channel \"shop\" has 4 orders"),
        "{}",
        stderr(&o)
    );
    let o = f.report(&["--order", "nocolon"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("CHANNEL:ID"), "{}", stderr(&o));
}

#[test]
fn since_restricts_to_activity_at_or_after_the_date() {
    let f = fixture();
    // Move #1002 (its failure and its events), batch 1 and the ingest run to 2020.
    f.exec(
        "UPDATE staged_orders SET updated_at = '2020-01-01T00:00:00.000000Z' WHERE external_id = '#1002';
         UPDATE ledger SET at = '2020-01-01T00:00:00.000000Z'
           WHERE order_id = (SELECT id FROM staged_orders WHERE external_id = '#1002');
         UPDATE batches SET created_at = '2020-01-01T00:00:00.000000Z' WHERE id = (SELECT MIN(id) FROM batches);
         UPDATE runs SET started_at = '2020-01-01T00:00:00.000000Z' WHERE id = (SELECT MIN(id) FROM runs);",
    );
    let j = f.json(&["--since", "2021-01-01"]);
    assert_eq!(j["scope"]["since"], "2021-01-01T00:00:00.000000Z");
    assert_eq!(j["orders"]["total"], 5);
    assert_eq!(j["orders"]["failed"], 2);
    let failed: Vec<&str> = j["failed_orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["external_id"].as_str().unwrap())
        .collect();
    assert!(!failed.contains(&"#1002"), "{failed:?}");
    assert_eq!(failed.len(), 2);
    assert_eq!(j["batches"].as_array().unwrap().len(), 1);
    assert_eq!(j["batches"][0]["id"], f.batch2);
    assert_eq!(j["runs"].as_array().unwrap().len(), 1);
    assert_eq!(j["runs"][0]["id"], f.submit_run);
    // the reconciliation is always over the whole database
    assert_eq!(j["reconciliation"]["orders_total"], 6);

    let j = f.json(&["--since", "2019-12-31T22:00:00-05:00"]);
    assert_eq!(
        j["orders"]["total"], 5,
        "2020-01-01T03:00Z is after 2020-01-01T00:00Z"
    );
    let j = f.json(&["--since", "2019-12-31"]);
    assert_eq!(j["orders"]["total"], 6);
    assert_eq!(j["failed_orders"].as_array().unwrap().len(), 3);

    assert_eq!(f.json(&["--failed", "--since", "2021-01-01"])["total"], 2);
    assert_eq!(
        f.json(&["--order", "shop:#1002", "--since", "2021-01-01"])["events"],
        serde_json::json!([])
    );
    assert_eq!(
        f.json(&["--order", "shop:#1002", "--since", "2019-01-01"])["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let o = f.report(&["--since", "last tuesday"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("YYYY-MM-DD"), "{}", stderr(&o));
}

#[test]
fn run_restricts_to_one_run() {
    let f = fixture();
    let j = f.json(&["--run", &f.submit_run.to_string()]);
    assert_eq!(j["runs"].as_array().unwrap().len(), 1);
    assert_eq!(j["batches"].as_array().unwrap().len(), 2);
    assert_eq!(
        j["files"].as_array().unwrap().len(),
        0,
        "files were read by the ingest run"
    );
    assert_eq!(j["orders"]["total"], 6);
    let j = f.json(&["--run", &f.ingest_run.to_string()]);
    assert_eq!(j["files"].as_array().unwrap().len(), 2);
    assert_eq!(j["rejected_rows"], 3);
    assert_eq!(j["batches"].as_array().unwrap().len(), 0);
    let o = f.report(&["--run", "999"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("no run with id 999"), "{}", stderr(&o));
}

#[test]
fn summary_table_fits_in_120_columns_and_says_balanced() {
    let f = fixture();
    let table = f.ok(&[]);
    assert_fits(&table);
    assert!(
        table.contains("Reconciliation: balanced — 11 rows read = 8 in staged orders + 3 rejected"),
        "{table}"
    );
    assert!(table.contains("Lease: free"), "{table}");
    let all = table
        .lines()
        .find(|l| l.trim_start().starts_with("all channels"))
        .unwrap();
    assert_eq!(
        all.split_whitespace().collect::<Vec<_>>(),
        ["all", "channels", "0", "0", "3", "3", "6"]
    );
    assert!(table.contains("Failed orders: 3"));
    assert!(table.contains("inbox/shop-2024-05-01.csv"));
    assert!(table.contains("ragged_row"));

    // A file that does not add up is called out.
    f.exec("UPDATE source_files SET rows = rows + 2 WHERE channel = 'shop'");
    let table = f.ok(&[]);
    assert!(
        table.contains("Reconciliation: NOT BALANCED — 13 rows read but 11 accounted for"),
        "{table}"
    );
    assert!(table.contains("2 missing"), "{table}");
    assert_eq!(f.json(&[])["reconciliation"]["balanced"], false);
}

#[test]
fn a_live_lease_is_shown() {
    let f = fixture();
    let url = f.ws.db_url();
    let run = f.submit_run;
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let st = orderload::staging::open(&url).await.unwrap();
            st.acquire_lease("someone-else", run, 600).await.unwrap();
            st.close().await;
        });
    let j = f.json(&[]);
    assert_eq!(j["lease"]["run_id"], run);
    assert_eq!(j["lease"]["holder"], "someone-else");
    let table = f.ok(&[]);
    assert!(
        table.contains(&format!("Lease: held by run {run}")),
        "{table}"
    );
}

#[test]
fn a_missing_database_is_an_error_and_is_not_created() {
    let ws = Workspace::new();
    ws.write_config(None, "");
    let o = ws.run(&["report"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!ws.db_path().exists());
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    use std::process::Stdio;
    let f = fixture();
    let mut child =
        f.ws.cmd()
            .args(["report", "--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 0);
}
