//! Ingest through the real binary into a real SQLite file.

use crate::common::*;

fn channel_config(ws: &Workspace) {
    ws.write_config(None, "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n");
}

/// `orderload ingest --channel shop FILE`, which must exit 0.
fn ingest_ok(ws: &Workspace, file: &std::path::Path) -> std::process::Output {
    let out = ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]);
    assert_code(&out, 0);
    out
}

#[test]
fn generated_shopify_file_is_staged_with_exact_counts() {
    let ws = Workspace::new();
    channel_config(&ws);
    let file = ws.write_file("in/orders.csv", &shopify_csv(40, 3, "A"));
    let out = ingest_ok(&ws, &file);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 40);
    assert_eq!(
        ws.query_i64("SELECT SUM(line_count) FROM staged_orders"),
        120
    );
    assert_eq!(ws.query_i64("SELECT rows FROM source_files"), 120);
    assert_eq!(ws.query_i64("SELECT rows_staged FROM source_files"), 120);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows"), 0);
    // Totals stay decimal text, times are UTC (+0100 in the file).
    assert_eq!(
        ws.query_strings("SELECT total FROM staged_orders WHERE external_id = '#A1000'"),
        vec!["35.00"]
    );
    assert_eq!(
        ws.query_strings("SELECT order_created_at FROM staged_orders WHERE external_id = '#A1000'"),
        vec!["2025-03-01T09:00:00.000000Z"]
    );
    // The postal code keeps its leading zero and loses the protective apostrophe.
    let payload =
        ws.query_strings("SELECT payload FROM staged_orders WHERE external_id = '#A1000'");
    assert!(
        payload[0].contains("\"postal_code\":\"02134\""),
        "{}",
        payload[0]
    );
    // Every new order has its ledger event.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM ledger WHERE to_status = 'pending'"),
        40
    );
    let summary = stdout(&out);
    assert!(summary.contains("orders staged: 40"), "{summary}");
}

#[test]
fn the_same_file_twice_is_a_duplicate_and_stages_nothing() {
    let ws = Workspace::new();
    channel_config(&ws);
    let file = ws.write_file("in/a.csv", &shopify_csv(5, 2, "D"));
    ingest_ok(&ws, &file);
    let copy = ws.write_file("in/copy-of-a.csv", &shopify_csv(5, 2, "D"));
    let out = ingest_ok(&ws, &copy);
    assert!(stdout(&out).contains("duplicates: 1"), "{}", stdout(&out));
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files"), 1);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 5);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM ledger"), 5);
}

#[test]
fn a_changed_order_is_updated_and_an_unchanged_one_is_a_no_op() {
    let ws = Workspace::new();
    channel_config(&ws);
    let first = ws.write_file("in/1.csv", &shopify_csv(3, 1, "C"));
    ingest_ok(&ws, &first);
    // Same orders; one gets another line price.
    let changed = shopify_csv(3, 1, "C").replacen("Tee 0,10.00", "Tee 0,12.00", 1);
    let second = ws.write_file("in/2.csv", &changed);
    ingest_ok(&ws, &second);
    assert_eq!(
        ws.query_i64("SELECT orders_updated FROM source_files WHERE id = 2"),
        1
    );
    assert_eq!(
        ws.query_i64("SELECT orders_unchanged FROM source_files WHERE id = 2"),
        2
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 3);
    let payload =
        ws.query_strings("SELECT payload FROM staged_orders WHERE external_id = '#C1000'");
    assert!(
        payload[0].contains("\"unit_price\":\"12.00\""),
        "{}",
        payload[0]
    );
}

/// What a database staged before hash version 3 holds for an order with this payload: the
/// full JSON (every absent field as `null`, serde_json's bytes) with its source, and hashes
/// over the same JSON with an empty source — SHA-256 (hex; version 1) and XXH3-128 (version 2).
struct OlderForms {
    payload: String,
    v1: String,
    v2: String,
}

fn older_forms(payload: &str, file_id: i64, rows: &str) -> OlderForms {
    use sha2::Digest;
    let mut order: orderload::model::Order = serde_json::from_str(payload).unwrap();
    let unsourced = serde_json::to_vec(&order).unwrap();
    assert!(
        String::from_utf8_lossy(&unsourced)
            .ends_with(r#","source":{"file_id":null,"path":null,"rows":[]}}"#),
        "the stored form carries no source"
    );
    order.source = orderload::model::Provenance {
        file_id: Some(file_id),
        path: Some("/in/1.csv".into()),
        rows: serde_json::from_str(rows).unwrap(),
    };
    OlderForms {
        payload: serde_json::to_string(&order).unwrap(),
        v1: hex::encode(sha2::Sha256::digest(&unsourced)),
        v2: format!("xxh3:{:032x}", xxhash_rust::xxh3::xxh3_128(&unsourced)),
    }
}

/// Every staged order's (id, payload, source_rows), in id order.
fn staged_payloads(conn: &rusqlite::Connection) -> Vec<(i64, String, String)> {
    conn.prepare("SELECT id, payload, source_rows FROM staged_orders ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_staged_by_earlier_versions_are_still_recognised_and_sent() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(
        Some(&emu.base_url),
        "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n",
    );
    let first = ws.write_file("in/1.csv", &shopify_csv(4, 1, "V"));
    ingest_ok(&ws, &first);
    // Rewrite the stored rows as older orderload versions wrote them: #V1000 and #V1001 with
    // a first-version hash, #V1002 and #V1003 with a second-version one; #V1001 and #V1003
    // also with the full payload (nulls and source) that versions before 3 stored.
    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    let rows = staged_payloads(&conn);
    assert_eq!(rows.len(), 4);
    let mut stored_hashes = Vec::new();
    for (i, (id, payload, source_rows)) in rows.iter().enumerate() {
        assert!(!payload.contains("null"), "{payload}");
        let older = older_forms(payload, 1, source_rows);
        let hash = if i < 2 { older.v1 } else { older.v2 };
        let payload = if i % 2 == 1 {
            older.payload
        } else {
            payload.clone()
        };
        conn.execute(
            "UPDATE staged_orders SET content_hash = ?1, payload = ?2 WHERE id = ?3",
            rusqlite::params![hash, payload, id],
        )
        .unwrap();
        stored_hashes.push(hash);
    }
    drop(conn);

    // The same orders in a file with other bytes, #V1000 and #V1002 changed: the unchanged
    // ones stay no-ops whatever version their hash is.
    let changed: Vec<String> = shopify_csv(4, 1, "V")
        .lines()
        .map(|l| {
            if l.starts_with("#V1000,") || l.starts_with("#V1002,") {
                l.replacen("Tee 0,10.00", "Tee 0,12.00", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let changed = changed.join("\n") + "\n";
    let second = ws.write_file("in/2.csv", &changed);
    ingest_ok(&ws, &second);
    assert_eq!(
        ws.query_i64("SELECT orders_unchanged FROM source_files WHERE id = 2"),
        2
    );
    assert_eq!(
        ws.query_i64("SELECT orders_updated FROM source_files WHERE id = 2"),
        2
    );
    // The changed orders now carry a current hash; the others keep theirs.
    let hashes = ws.query_strings("SELECT content_hash FROM staged_orders ORDER BY id");
    assert!(hashes[0].starts_with("x3:"), "{hashes:?}");
    assert_eq!(hashes[1], stored_hashes[1]);
    assert!(hashes[2].starts_with("x3:"), "{hashes:?}");
    assert_eq!(hashes[3], stored_hashes[3]);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM ledger"), 4);

    // Payloads of either form are sent as they are.
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        4
    );
    assert_eq!(assert_stored_once(&emu.base_url).await, 4);
    emu.shutdown().await;
}

#[test]
fn an_order_seen_again_later_in_the_file_is_merged_whether_or_not_in_the_same_chunk() {
    // #M1000, #M1001, then #M1000 again with another line (every row carries the order's
    // fields, as in per-line exports).
    let base = shopify_csv(2, 1, "M");
    let again = base
        .lines()
        .nth(1)
        .unwrap()
        .replace("Tee 0", "Tee 1")
        .replace("SKU-0", "SKU-1");
    let csv = format!("{base}{again}\n");
    let staged = |chunk: &str| {
        let ws = Workspace::new();
        channel_config(&ws);
        let file = ws.write_file("in/m.csv", &csv);
        let out = ws
            .cmd()
            .env("ORDERLOAD_INGEST_CHUNK_ORDERS", chunk)
            .args(["ingest", "--channel", "shop", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_code(&out, 0);
        assert_eq!(
            ws.query_strings(
                "SELECT rows || ' ' || rows_staged || ' ' || orders_new || ' ' || orders_updated FROM source_files"
            ),
            vec!["3 3 2 0"]
        );
        assert_eq!(ws.query_i64("SELECT COUNT(*) FROM ledger"), 2);
        let lines: Vec<String> = ws
            .query_strings("SELECT payload FROM staged_orders WHERE external_id = '#M1000'")
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_str(p).unwrap();
                v["lines"].to_string()
            })
            .collect();
        (
            ws.query_strings(
                "SELECT external_id || ' ' || line_count || ' ' || row_count || ' ' || source_rows || ' ' || total FROM staged_orders ORDER BY id",
            ),
            lines,
        )
    };
    // One order per chunk: the second #M1000 is merged with the stored one (another chunk).
    let (apart, apart_lines) = staged("1");
    let (together, together_lines) = staged("250");
    assert_eq!(
        apart,
        vec!["#M1000 2 2 [1,3] 15.00", "#M1001 1 1 [2] 15.00"]
    );
    assert_eq!(apart, together);
    assert_eq!(apart_lines, together_lines);
    assert!(apart_lines[0].contains("SKU-1"), "{}", apart_lines[0]);
}

#[test]
fn a_succeeded_order_whose_content_changed_goes_back_to_pending() {
    let ws = Workspace::new();
    channel_config(&ws);
    let first = ws.write_file("in/1.csv", &shopify_csv(2, 1, "S"));
    ingest_ok(&ws, &first);
    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    conn.execute("UPDATE staged_orders SET status = 'succeeded'", [])
        .unwrap();
    drop(conn);
    let changed = shopify_csv(2, 1, "S").replacen("Tee 0,10.00", "Tee 0,11.00", 1);
    let second = ws.write_file("in/2.csv", &changed);
    ingest_ok(&ws, &second);
    assert_eq!(
        ws.query_strings("SELECT status FROM staged_orders ORDER BY external_id"),
        vec!["pending", "succeeded"]
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM ledger WHERE from_status = 'succeeded' AND to_status = 'pending'"
        ),
        1
    );
}

#[test]
fn a_bad_file_does_not_stop_the_others_and_accounting_balances() {
    let ws = Workspace::new();
    ws.write_config(None, "");
    ws.write_file("in/1-good.csv", &shopify_csv(4, 2, "G"));
    ws.write_file(
        "in/2-garbage.csv",
        "this is not,an order export\nat all,really\n",
    );
    let mut bad_rows = shopify_csv(3, 1, "B");
    bad_rows = bad_rows.replacen("Tee 0,10.00", "Tee 0,ten dollars", 1);
    ws.write_file("in/3-bad-row.csv", &bad_rows);
    let out = ws.run(&[
        "ingest",
        "--channel",
        "mixed",
        ws.path().join("in").to_str().unwrap(),
    ]);
    assert_code(&out, 3);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files"), 3);
    assert_eq!(
        ws.query_strings("SELECT status FROM source_files ORDER BY path"),
        vec!["ingested", "rejected", "ingested"]
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id LIKE '#G%'"),
        4
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id LIKE '#B%'"),
        2
    );
    // Every file balances: rows = staged + rejected.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM source_files WHERE rows != rows_staged + rejected"),
        0
    );
    // The garbage file's lines are kept as rejected rows with the file's reason.
    assert_eq!(
        ws.query_strings("SELECT reason_code FROM rejected_rows r JOIN source_files f ON f.id = r.source_file_id WHERE f.path LIKE '%garbage%'"),
        vec!["unrecognized_format", "unrecognized_format"]
    );
    // The bad row names its column and keeps its raw text.
    let reason = ws.query_strings(
        "SELECT column_name || '|' || reason_code || '|' || raw FROM rejected_rows r JOIN source_files f ON f.id = r.source_file_id WHERE f.path LIKE '%bad-row%'",
    );
    assert_eq!(reason.len(), 1);
    assert!(
        reason[0].starts_with("Lineitem price|bad_decimal|#B1000,"),
        "{}",
        reason[0]
    );
}

#[test]
fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    channel_config(&ws);
    let file = ws.write_file("in/orders.csv", &shopify_csv(1, 1, "P"));
    ingest_ok(&ws, &file);
    let mode = std::fs::metadata(ws.db_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn an_invalid_configuration_exits_1_naming_the_key() {
    let ws = Workspace::new();
    ws.write_config(None, "[[channel]]\nname = \"x\"\nformat = \"shopfy\"\n");
    let out = ws.run(&["ingest", "--channel", "x"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("shopfy") && err.contains("orderload.toml"),
        "{err}"
    );
}

#[test]
fn the_example_configuration_is_valid() {
    let ws = Workspace::new();
    let out = ws.cmd().args(["config", "example"]).output().unwrap();
    assert_code(&out, 0);
    std::fs::write(ws.config_path(), stdout(&out)).unwrap();
    let check = ws.run(&["config", "check"]);
    assert_code(&check, 0);
    assert!(
        stdout(&check).contains("4 channel(s)"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn inbox_files_are_archived_and_unsettled_files_are_left() {
    let ws = Workspace::new();
    ws.write_config(
        None,
        &format!(
            "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\ninbox = \"{0}/inbox\"\narchive = \"{0}/archive\"\n",
            ws.path().display()
        ),
    );
    ws.edit_config("settle_secs = 0", "settle_secs = 3600");
    ws.write_file("inbox/fresh.csv", &shopify_csv(1, 1, "F"));
    let out = ws.run(&["ingest"]);
    assert_code(&out, 0);
    assert!(
        ws.path().join("inbox/fresh.csv").exists(),
        "a file still being written is left alone"
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files"), 0);

    ws.edit_config("settle_secs = 3600", "settle_secs = 0");
    assert_code(&ws.run(&["ingest"]), 0);
    assert!(!ws.path().join("inbox/fresh.csv").exists());
    assert!(ws.path().join("archive/fresh.csv").exists());
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 1);
}

/// New orders between orders already staged, in one chunk: each order keeps its own payload,
/// the changed one's is replaced, and the new ones get the next ids in file order.
#[test]
fn new_orders_among_staged_ones_each_keep_their_own_payload() {
    let ws = Workspace::new();
    channel_config(&ws);
    let first = ws.write_file("in/1.csv", &shopify_csv(6, 1, "P"));
    ingest_ok(&ws, &first);
    let all = shopify_csv(10, 1, "P");
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let mut second = format!("{header}\n");
    for i in [6, 0, 7, 1, 8, 2, 9, 3, 4, 5] {
        let row = if i == 2 {
            rows[i].replacen("Tee 0,10.00", "Tee 0,12.00", 1)
        } else {
            rows[i].to_string()
        };
        second.push_str(&row);
        second.push('\n');
    }
    let second = ws.write_file("in/2.csv", &second);
    ingest_ok(&ws, &second);

    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 10);
    assert_eq!(
        ws.query_strings(
            "SELECT orders_new || ' new, ' || orders_updated || ' updated, ' || orders_unchanged || ' unchanged'
             FROM source_files WHERE id = 2"
        ),
        vec!["4 new, 1 updated, 5 unchanged"]
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM staged_orders
             WHERE json_extract(payload, '$.external_id') = external_id
               AND json_extract(payload, '$.total') = total"
        ),
        10,
        "every order's payload is its own"
    );
    assert_eq!(
        ws.query_strings(
            "SELECT json_extract(payload, '$.lines[0].unit_price') FROM staged_orders WHERE external_id = '#P1002'"
        ),
        vec!["12.00"]
    );
    assert_eq!(
        ws.query_strings(
            "SELECT external_id FROM staged_orders WHERE source_file_id = 2 AND id > 6 ORDER BY id"
        ),
        vec!["#P1006", "#P1007", "#P1008", "#P1009"]
    );
}

/// An order sent before the upgrade (its `sent_hash` and `content_hash` of hash version 2,
/// its payload in the full form) that a file after the upgrade repeats unchanged but with its
/// rows far apart (chunks of 2 orders): the first part sends it back to pending, the later
/// part completes it to the very content Dynamics has, and it goes back to `succeeded` — its
/// `sent_hash` compared in its own version (found by the review of the stored form: it was
/// compared byte for byte with the new `x3:` hash and sent again).
#[tokio::test(flavor = "multi_thread")]
async fn an_order_sent_before_the_upgrade_and_read_again_in_far_apart_parts_is_not_sent_again() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(
        Some(&emu.base_url),
        "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n",
    );
    ws.edit_config("settle_secs = 0\n", "settle_secs = 0\nchunk_orders = 2\n");
    let yesterday = shopify_csv(3, 2, "P");
    let first = ws.write_file("in/yesterday.csv", &yesterday);
    ingest_ok(&ws, &first);
    assert_code(&run_async(&ws, &["submit"]).await, 0);
    // As a version before 3 left it: both hashes version 2, the payload in the full form.
    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    let rows = staged_payloads(&conn);
    for (id, payload, source_rows) in &rows {
        let older = older_forms(payload, 1, source_rows);
        conn.execute(
            "UPDATE staged_orders SET content_hash = ?1, sent_hash = ?1, payload = ?2 WHERE id = ?3",
            rusqlite::params![older.v2, older.payload, id],
        )
        .unwrap();
    }
    drop(conn);

    // #P1000's second row far below: chunks #P1000(1st row) #P1001 | #P1002 #P1000(2nd row).
    let r: Vec<&str> = yesterday.lines().collect();
    // The far part as a whole first row (as Shopify repeats it), the same line as row 2.
    let far = r[1].replace("Tee 0,", "Tee 1,").replace("SKU-0,", "SKU-1,");
    let today = [r[0], r[1], r[3], r[4], r[5], r[6], &far].join("\n") + "\n";
    let second = ws.write_file("in/today.csv", &today);
    ingest_ok(&ws, &second);
    assert_eq!(
        ws.query_strings(
            "SELECT external_id || ' ' || status || ' ' || line_count FROM staged_orders ORDER BY id"
        ),
        ["#P1000 succeeded 2", "#P1001 succeeded 2", "#P1002 succeeded 2"],
        "the ledger: {:?}",
        ws.query_strings("SELECT order_id || ' ' || COALESCE(from_status, '') || '>' || to_status || ' ' || COALESCE(message, '') FROM ledger ORDER BY id")
    );
    emu.shutdown().await;
}
