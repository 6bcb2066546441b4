//! Hard input found by a hunt with the real binary (inputs in `tests/corpus_edge/`, kept out
//! of `tests/corpus/`, whose files the whole-corpus test enumerates): each test states what the
//! quality bar asks for. RELIABILITY.md, bug 15 onwards.

use crate::common::*;
use std::path::PathBuf;

fn edge(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus_edge")
        .join(name)
}

/// Ingest `file` as channel `ch` of `format` (zone optional, extra TOML in the channel block).
fn ingest(
    ch: &str,
    format: &str,
    zone: Option<&str>,
    extra: &str,
    file: &std::path::Path,
) -> (Workspace, std::process::Output) {
    let ws = Workspace::new();
    let mut c = format!("[[channel]]\nname = \"{ch}\"\nformat = \"{format}\"\n");
    if let Some(z) = zone {
        c.push_str(&format!("time_zone = \"{z}\"\n"));
    }
    c.push_str(extra);
    ws.write_config(None, &c);
    let out = ws.run(&["ingest", "--channel", ch, file.to_str().unwrap()]);
    (ws, out)
}

fn one(ws: &Workspace, sql: &str) -> String {
    let v = ws.query_strings(sql);
    assert_eq!(v.len(), 1, "{sql}: {v:?}");
    v[0].clone()
}

/// An order after one larger than the 16 MB limit must still be read: every row is staged or
/// rejected, never dropped (bug 15: reading stopped at the large one, and the report balanced).
#[test]
fn json_orders_after_an_oversized_one_are_still_read() {
    let ws = Workspace::new();
    ws.write_config(None, "[[channel]]\nname = \"sj\"\nformat = \"shopify\"\n");
    let sample: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sample("shopify-json/orders.json")).unwrap())
            .unwrap();
    let orders = sample["orders"].as_array().unwrap();
    let mut big = orders[1].clone();
    big["name"] = "#BIG".into();
    big["note"] = "x".repeat(17 * 1024 * 1024).into();
    let doc = serde_json::json!({ "orders": [orders[0].clone(), big, orders[1].clone()] });
    let file = ws.write_file("in/big.json", &doc.to_string());
    let out = ws.run(&["ingest", "--channel", "sj", file.to_str().unwrap()]);
    assert_code(&out, 3);
    assert_eq!(
        one(
            &ws,
            "SELECT rows || ' ' || rows_staged || ' ' || rejected FROM source_files"
        ),
        "3 2 1"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE external_id = '#1102'"),
        1
    );
    let message = one(&ws, "SELECT message FROM rejected_rows");
    assert!(message.contains("larger than 16 MB"), "{message}");
    let raw_len = ws.query_i64("SELECT length(raw) FROM rejected_rows");
    assert!((1_000..=70_000).contains(&raw_len), "{raw_len}");
}

/// A JSON export whose order list never closes was cut off: the orders read are staged and the
/// cut is a rejected row (exit 3), not a clean exit 0 (bug 15).
#[test]
fn a_json_file_cut_between_orders_is_flagged() {
    let (ws, out) = ingest(
        "sj",
        "shopify",
        None,
        "",
        &edge("sj3-truncated-between-orders.json"),
    );
    assert_code(&out, 3);
    let message = one(
        &ws,
        "SELECT reason_code || ': ' || message FROM rejected_rows",
    );
    assert!(
        message.starts_with("bad_json: the file ends before its list of orders is closed"),
        "{message}"
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 2);
}
