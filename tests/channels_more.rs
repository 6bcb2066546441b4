//! The eBay, Etsy, BigCommerce and JSON (Shopify REST, Amazon SP-API, Magento) adapters through
//! the real binary, on the sample exports (expected counts: sample_data/README.md).

use crate::common::*;

/// Ingest `files` (copied into `inbox/<channel>`) for one channel; returns the workspace.
fn ingest(format: &str, zone: &str, files: &[&str], expect: i32) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        None,
        &format!(
            "[[channel]]\nname = \"ch\"\nformat = \"{format}\"\ninbox = \"{}\"\ntime_zone = \"{zone}\"\n",
            ws.path().join("inbox").display()
        ),
    );
    for f in files {
        let name = std::path::Path::new(f)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        std::fs::create_dir_all(ws.path().join("inbox")).unwrap();
        std::fs::copy(sample(f), ws.path().join("inbox").join(name)).unwrap();
    }
    let out = ws.run(&["ingest", "--channel", "ch"]);
    assert_code(&out, expect);
    ws
}

/// `rows|rows_staged|rejected|orders` of the file whose path ends with `name`.
fn accounting(ws: &Workspace, name: &str) -> String {
    let r = ws.query_strings(&format!(
        "SELECT rows || '|' || rows_staged || '|' || rejected || '|' || orders FROM source_files \
         WHERE path LIKE '%{name}'"
    ));
    assert_eq!(r.len(), 1, "{name}: {r:?}");
    r[0].clone()
}

fn order(ws: &Workspace, id: &str) -> String {
    let r = ws.query_strings(&format!(
        "SELECT currency || '|' || COALESCE(total, '') || '|' || line_count || '|' || order_created_at \
         FROM staged_orders WHERE external_id = '{id}'"
    ));
    assert_eq!(r.len(), 1, "{id}: {r:?}");
    r[0].clone()
}

fn payload(ws: &Workspace, id: &str) -> String {
    ws.query_strings(&format!(
        "SELECT payload FROM staged_orders WHERE external_id = '{id}'"
    ))
    .remove(0)
}

fn notes(ws: &Workspace, name: &str) -> String {
    ws.query_strings(&format!(
        "SELECT COALESCE(notes, '') FROM source_files WHERE path LIKE '%{name}'"
    ))
    .remove(0)
}

#[test]
fn ebay_reports_stage_orders_with_currency_from_the_cells() {
    let uk = "eBay-OrdersReport-Jun-02-2023-10_15_00-0700-1234.csv";
    let ws = ingest(
        "ebay",
        "Europe/London",
        &[&format!("ebay/{uk}"), "ebay/us-orders-report.csv"],
        3,
    );
    // Footer lines are not rows; 5 staged + 2 rejected.
    assert_eq!(accounting(&ws, uk), "7|5|2|3");
    assert_eq!(accounting(&ws, "us-orders-report.csv"), "2|2|0|2");
    // May-29-23 is midnight in London (BST) = 23:00 UTC the day before.
    assert_eq!(
        order(&ws, "01-10001-10001"),
        "GBP|28.45|1|2023-05-28T23:00:00.000000Z"
    );
    assert_eq!(
        order(&ws, "02-10002-10002"),
        "GBP|39.98|2|2023-05-28T23:00:00.000000Z"
    );
    assert!(order(&ws, "03-10003-10003").starts_with("EUR|34.90|1|"));
    assert!(order(&ws, "11-11111-11111").starts_with("USD|35.05|1|"));
    assert!(order(&ws, "12-12121-12121").starts_with("CAD|18.00|1|"));
    assert!(payload(&ws, "01-10001-10001").contains("\"unit_price\":\"12.50\""));
    let reasons = ws.query_strings(
        "SELECT row_number || '|' || COALESCE(column_name, '') || '|' || reason_code FROM rejected_rows ORDER BY row_number",
    );
    assert_eq!(
        reasons,
        ["6|Sale date|bad_date", "7|Total price|currency_mismatch"]
    );
    assert!(notes(&ws, uk).contains("U+FFFD"));
    assert!(notes(&ws, "us-orders-report.csv").contains("\\\"2134\\\" (US)"));
}

#[test]
fn etsy_items_and_orders_files_join_on_order_id() {
    let ws = ingest(
        "etsy",
        "America/New_York",
        &[
            "etsy/EtsySoldOrderItems2023-1.csv",
            "etsy/EtsySoldOrders2023-1.csv",
        ],
        3,
    );
    assert_eq!(accounting(&ws, "EtsySoldOrderItems2023-1.csv"), "4|3|1|2");
    assert_eq!(accounting(&ws, "EtsySoldOrders2023-1.csv"), "3|2|1|2");
    // The orders file's copies are unchanged: two orders staged once.
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 2);
    // 01/05/23 midnight in New York; totals from the orders file; money counted once.
    assert_eq!(
        order(&ws, "1001"),
        "USD|56.90|2|2023-01-05T05:00:00.000000Z"
    );
    assert_eq!(
        order(&ws, "1002"),
        "EUR|46.90|1|2023-01-07T05:00:00.000000Z"
    );
    let p = payload(&ws, "1001");
    assert!(p.contains("\"shipping_amount\":\"5.00\""), "{p}");
    assert!(p.contains("\"tax\":\"3.40\""), "{p}");
    assert!(p.contains("\"financial_status\":\"Completed\""), "{p}");
    assert!(notes(&ws, "EtsySoldOrderItems2023-1.csv").contains("joined on Order ID"));
    assert!(notes(&ws, "EtsySoldOrderItems2023-1.csv").contains("\\\"1067\\\" (Germany)"));
    let reasons = ws.query_strings("SELECT reason_code FROM rejected_rows ORDER BY id");
    assert_eq!(reasons, ["bad_quantity", "order_incomplete"]);
}

#[test]
fn etsy_items_without_their_orders_file_stage_lines_with_a_note() {
    let ws = ingest(
        "etsy",
        "America/New_York",
        &["etsy/EtsySoldOrderItems2023-1.csv"],
        3,
    );
    assert_eq!(accounting(&ws, "EtsySoldOrderItems2023-1.csv"), "4|3|1|2");
    // No orders file: lines and the order money once, the total unknown.
    assert_eq!(order(&ws, "1001"), "USD||2|2023-01-05T05:00:00.000000Z");
    let p = payload(&ws, "1001");
    assert!(p.contains("\"subtotal\":\"48.50\""), "{p}");
    assert!(p.contains("\"shipping_amount\":\"5.00\""), "{p}");
    assert!(notes(&ws, "EtsySoldOrderItems2023-1.csv")
        .contains("EtsySoldOrders2023-1.csv not found next to this file"));
    // The tab-delimited, mojibake-damaged items file of another period.
    let ws = ingest(
        "etsy",
        "Europe/London",
        &["etsy/EtsySoldOrderItems2023-2.csv"],
        3,
    );
    assert_eq!(accounting(&ws, "EtsySoldOrderItems2023-2.csv"), "2|1|1|1");
    assert_eq!(order(&ws, "2001"), "GBP||1|2023-02-14T00:00:00.000000Z");
    let n = notes(&ws, "EtsySoldOrderItems2023-2.csv");
    assert!(
        n.contains("mojibake") && n.contains("delimited by TAB"),
        "{n}"
    );
}

#[test]
fn etsy_orders_file_alone_is_rejected_as_lines_unavailable() {
    let ws = ingest("etsy", "UTC", &["etsy/EtsySoldOrders2023-1.csv"], 3);
    assert_eq!(accounting(&ws, "EtsySoldOrders2023-1.csv"), "3|0|3|0");
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM rejected_rows WHERE reason_code = 'lines_unavailable'"),
        3
    );
}

#[test]
fn bigcommerce_export_unpacks_product_details() {
    let ws = ingest(
        "bigcommerce",
        "America/New_York",
        &["bigcommerce/orders-2024-09.csv"],
        3,
    );
    assert_eq!(accounting(&ws, "orders-2024-09.csv"), "4|2|2|2");
    assert_eq!(
        order(&ws, "100"),
        "USD|140.68|2|2024-09-23T18:21:24.000000Z"
    );
    // RFC 2822 with an offset: the zone does not apply.
    assert_eq!(order(&ws, "101"), "GBP|29.00|1|2024-09-23T15:05:00.000000Z");
    assert!(payload(&ws, "101").contains("\"taxes_included\":true"));
    assert!(payload(&ws, "100").contains("\"name\":\"Orbit Terrarium, Large\""));
    let reasons = ws.query_strings("SELECT reason_code FROM rejected_rows ORDER BY row_number");
    assert_eq!(reasons, ["bad_product_details", "bad_date"]);
}

#[test]
fn json_exports_are_detected_and_streamed() {
    let ws = Workspace::new();
    ws.write_config(None, "[[channel]]\nname = \"any\"\n");
    for f in [
        "shopify-json/orders.json",
        "amazon-json/orders-with-items.json",
        "magento/orders.json",
    ] {
        let out = ws.run(&["ingest", "--channel", "any", sample(f).to_str().unwrap()]);
        assert_code(&out, 3);
    }
    let formats = ws.query_strings("SELECT format || '|' || rows || '|' || rows_staged || '|' || rejected FROM source_files ORDER BY id");
    assert_eq!(formats, ["shopify|3|2|1", "amazon|3|2|1", "magento|3|2|1"]);
    assert_eq!(
        order(&ws, "#1101"),
        "USD|68.71|2|2024-03-05T15:15:00.000000Z"
    );
    assert_eq!(
        order(&ws, "#1102"),
        "EUR|124.95|1|2024-03-06T08:00:00.000000Z"
    );
    assert_eq!(
        order(&ws, "113-4000001-1000001"),
        "USD|61.67|2|2024-10-24T08:30:00.000000Z"
    );
    assert!(order(&ws, "205-4000002-2000002").starts_with("GBP|26.99|1|"));
    // Configurable parent + child counted once; increment_id keeps its zeros.
    assert_eq!(
        order(&ws, "000000101"),
        "USD|127.9|2|2022-11-01T03:27:33.000000Z"
    );
    assert!(payload(&ws, "113-4000001-1000001").contains("\"unit_price\":\"19.99\""));
    let reasons = ws.query_strings("SELECT reason_code FROM rejected_rows ORDER BY id");
    assert_eq!(reasons, ["bad_quantity", "price_unavailable", "bad_date"]);
}

#[test]
fn an_unrecognized_header_names_the_nearest_known_export() {
    let ws = Workspace::new();
    ws.write_config(None, "[[channel]]\nname = \"any\"\n");
    let f = ws.write_file("in/odd.csv", "Sale Date,Item,Qty\n01/02/23,Mug,1\n");
    let out = ws.run(&["ingest", "--channel", "any", f.to_str().unwrap()]);
    assert_code(&out, 3);
    let e = ws
        .query_strings("SELECT error_code || '|' || error FROM source_files")
        .remove(0);
    assert!(e.starts_with("unrecognized_format|"), "{e}");
    assert!(e.contains("nearest is the Etsy"), "{e}");
}
