//! Tests of `open_file`: decoding quirks, detection, and the sample files' expected counts.

use super::*;
use rust_decimal::Decimal;
use std::io::Write;

pub(crate) struct ReadBack {
    pub format: Format,
    pub encoding: &'static str,
    pub notes: Vec<String>,
    pub orders: Vec<Order>,
    pub rejected: Vec<RejectedRow>,
    pub rows_read: u64,
}

/// Read a whole file and check the accounting contract: every record in exactly one place.
pub(crate) fn read_path(path: &Path, spec: &ChannelSpec) -> Result<ReadBack, FileError> {
    let mut opened = open_file(path, spec)?;
    let mut orders = Vec::new();
    let mut rejected = Vec::new();
    while let Some(item) = opened.reader.next_item() {
        match item {
            Item::Order(o) => orders.push(*o),
            Item::Rejected(r) => rejected.push(r),
        }
    }
    let rows_read = opened.reader.rows_read();
    opened.notes.extend(opened.reader.notes());
    let mut seen: Vec<u64> = orders
        .iter()
        .flat_map(|o| o.source.rows.iter().copied())
        .chain(rejected.iter().map(|r| r.row_number))
        .collect();
    seen.sort_unstable();
    let expected: Vec<u64> = (1..=rows_read).collect();
    assert_eq!(
        seen, expected,
        "every record in exactly one order or rejection"
    );
    Ok(ReadBack {
        format: opened.format,
        encoding: opened.encoding,
        notes: opened.notes,
        orders,
        rejected,
        rows_read,
    })
}

pub(crate) fn read_bytes(bytes: &[u8], spec: &ChannelSpec) -> Result<ReadBack, FileError> {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write temp file");
    f.flush().expect("flush");
    read_path(f.path(), spec)
}

pub(crate) fn detect_spec() -> ChannelSpec {
    ChannelSpec {
        name: "test".into(),
        ..ChannelSpec::default()
    }
}

pub(crate) fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

fn sample(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(rel)
}

fn reasons(r: &ReadBack) -> Vec<(u64, String)> {
    r.rejected
        .iter()
        .map(|x| (x.row_number, x.reason_code.clone()))
        .collect()
}

fn line_count(r: &ReadBack) -> usize {
    r.orders.iter().map(|o| o.lines.len()).sum()
}

const MINI_SHOPIFY: &str = "Name,Email,Financial Status,Paid at,Currency,Subtotal,Shipping,Taxes,Total,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Zip";

#[test]
fn bom_crlf_blank_lines_and_missing_final_newline_are_accepted() {
    let text = format!(
        "\u{FEFF}\r\n,,,,\r\n{MINI_SHOPIFY}\r\n#1,a@x,paid,,USD,10.00,0,0,10.00,2024-01-01 10:00:00 +0000,1,Thing,10.00,T-1,'0123"
    );
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Shopify);
    assert_eq!(r.encoding, "utf-8");
    assert!(r.notes.iter().any(|n| n.contains("byte order mark")));
    assert_eq!(r.orders.len(), 1);
    assert_eq!(r.rows_read, 1);
    let o = &r.orders[0];
    assert_eq!(o.external_id, "#1");
    assert_eq!(o.total, Some(dec("10.00")));
    assert_eq!(
        o.billing.as_ref().unwrap().postal_code.as_deref(),
        Some("0123")
    );
}

#[test]
fn windows_1252_file_is_decoded_and_recorded() {
    let mut bytes = format!("{MINI_SHOPIFY}\n").into_bytes();
    bytes.extend_from_slice(
        b"#1,a@x,paid,,EUR,10.00,0,0,10.00,2024-01-01 10:00:00 +0000,1,Caf\xe9 cr\xe8me \x80,10.00,T-1,\n",
    );
    let r = read_bytes(&bytes, &detect_spec()).unwrap();
    assert_eq!(r.encoding, "windows-1252");
    assert_eq!(r.orders[0].lines[0].name, "Café crème €");
}

#[test]
fn mojibake_is_noted_and_left_alone() {
    let text = format!(
        "{MINI_SHOPIFY}\n#1,a@x,paid,,EUR,10.00,0,0,10.00,2024-01-01 10:00:00 +0000,1,MontrÃ©al mug,10.00,T-1,\n"
    );
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.encoding, "utf-8");
    assert!(
        r.notes.iter().any(|n| n.contains("mojibake")),
        "{:?}",
        r.notes
    );
    assert_eq!(r.orders[0].lines[0].name, "MontrÃ©al mug");
}

#[test]
fn empty_binary_header_only_and_unknown_files() {
    let spec = detect_spec();
    assert!(matches!(
        read_bytes(b"", &spec),
        Err(FileError::Empty { .. })
    ));
    assert!(matches!(
        read_bytes(b"\n\n  \r\n", &spec),
        Err(FileError::Empty { .. })
    ));
    assert!(matches!(
        read_bytes(b"PK\x03\x04\x14\x00\x00", &spec),
        Err(FileError::NotText { .. })
    ));
    assert!(matches!(
        read_bytes(b"Name,Email\x00\x00\x00", &spec),
        Err(FileError::NotText { .. })
    ));
    let r = read_bytes(format!("{MINI_SHOPIFY}\r\n").as_bytes(), &spec).unwrap();
    assert_eq!((r.orders.len(), r.rejected.len(), r.rows_read), (0, 0, 0));
    match read_bytes(b"foo,bar\n1,2\n", &spec) {
        Err(e @ FileError::UnrecognizedFormat { .. }) => {
            assert!(e.to_string().contains("nearest"), "{e}");
            assert_eq!(e.reason_code(), "unrecognized_format");
        }
        other => panic!(
            "expected UnrecognizedFormat, got {:?}",
            other.map(|r| r.rows_read)
        ),
    }
}

#[test]
fn configured_format_that_does_not_fit_names_missing_columns() {
    let spec = ChannelSpec {
        format: Some(Format::Amazon),
        ..detect_spec()
    };
    match read_bytes(format!("{MINI_SHOPIFY}\n").as_bytes(), &spec) {
        Err(FileError::Invalid { detail, .. }) => {
            assert!(detail.contains("missing required column(s)"), "{detail}");
            assert!(detail.contains("\"purchase-date\""), "{detail}");
        }
        other => panic!("expected Invalid, got {:?}", other.map(|r| r.rows_read)),
    }
    let spec = ChannelSpec {
        format: Some(Format::Ebay),
        ..detect_spec()
    };
    assert!(matches!(
        read_bytes(b"[{\"number\":\"1\"}]", &spec),
        Err(FileError::Invalid { .. })
    ));
}

#[test]
fn never_panics_on_odd_inputs() {
    let inputs: Vec<Vec<u8>> = vec![
        b"\"".to_vec(),
        b"[".to_vec(),
        b"{".to_vec(),
        b"[1,2,{\"a\":".to_vec(),
        format!("{MINI_SHOPIFY}\n\"#1,unterminated").into_bytes(),
        format!("{MINI_SHOPIFY}\n,,,,,,,,,,,,,,,,,,,,,,\n#1\n").into_bytes(),
        b"amazon-order-id\tmerchant-order-id\tpurchase-date\n\t\t\t\t\n".to_vec(),
        vec![0xff; 100],
    ];
    for input in inputs {
        let _ = read_bytes(&input, &detect_spec());
    }
}

#[test]
fn sample_shopify_export() {
    let r = read_path(&sample("shopify/orders_export.csv"), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Shopify);
    assert_eq!(r.rows_read, 12);
    assert_eq!(r.orders.len(), 5);
    assert_eq!(line_count(&r), 8);
    assert_eq!(
        reasons(&r),
        vec![
            (8, "order_incomplete".into()),
            (9, "bad_quantity".into()),
            (10, "unknown_currency".into()),
            (11, "unknown_currency".into()),
        ]
    );
    let ids: Vec<&str> = r.orders.iter().map(|o| o.external_id.as_str()).collect();
    assert_eq!(ids, ["#1001", "#1002", "#1003", "#1004", "#1007"]);
    let bad_qty = &r.rejected[1];
    assert_eq!(bad_qty.column.as_deref(), Some("Lineitem quantity"));
    assert!(bad_qty.message.contains("\"two\""), "{}", bad_qty.message);
    assert!(bad_qty.raw.starts_with("#1005,katherine@example.com"));
    assert!(r.rejected[2].message.contains("US$"));
    let o1 = &r.orders[0];
    assert_eq!(o1.source.rows, vec![1, 2]);
    assert_eq!(o1.lines.len(), 2);
    assert_eq!(o1.lines_total(), dec("69.99"));
    assert_eq!(o1.total, Some(dec("80.99")));
    assert!(!o1.taxes_included);
    assert_eq!(o1.created_at.to_rfc3339(), "2024-03-01T15:15:00+00:00");
    assert_eq!(o1.created_at_original, "2024-03-01 10:15:00 -0500");
    assert_eq!(
        o1.notes.as_deref(),
        Some("Leave at the back door.\nRing twice, please.")
    );
    assert_eq!(o1.customer.phone.as_deref(), Some("+1 617-555-0100"));
    let ship = o1.shipping.as_ref().unwrap();
    assert_eq!(ship.postal_code.as_deref(), Some("02134"));
    assert_eq!(o1.lines[1].name, "Canvas Tote, \"Everyday\"");
    let o2 = &r.orders[1];
    assert!(o2.taxes_included);
    assert_eq!(o2.currency.as_str(), "EUR");
    assert_eq!(r.orders[2].financial_status.as_deref(), Some("voided"));
    let o4 = &r.orders[3];
    assert_eq!(o4.financial_status.as_deref(), Some("refunded"));
    assert_eq!(o4.lines_total(), dec("76.50"));
    assert_eq!(o4.lines[2].sku, None);
    assert_eq!(o4.discount, Some(dec("8.50")));
    let o7 = &r.orders[4];
    assert!(o7.taxes_included);
    assert_eq!(o7.currency.as_str(), "GBP");
    assert_eq!(o7.source.rows, vec![12]);
    assert!(o7
        .notes
        .as_deref()
        .unwrap()
        .contains("\r\nMessage: \"Happy birthday, Mary!\""));
}

#[test]
fn sample_amazon_all_orders() {
    let r = read_path(&sample("amazon/all-orders.txt"), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Amazon);
    assert_eq!((r.rows_read, r.orders.len(), line_count(&r)), (8, 3, 4));
    assert_eq!(
        reasons(&r),
        vec![
            (4, "price_unavailable".into()),
            (5, "cancelled_order".into()),
            (6, "order_incomplete".into()),
            (7, "ragged_row".into()),
        ]
    );
    assert!(
        r.rejected[3].message.contains("20"),
        "{}",
        r.rejected[3].message
    );
    assert!(r.rejected[3].message.contains("31"));
    let o = &r.orders[0];
    assert_eq!(
        o.lines[0].name,
        "Monitor Stand 6.5\"-10\" \"Pro\" Adjustable"
    );
    assert_eq!(o.lines[0].unit_price, dec("19.99"));
    assert_eq!(o.total, Some(dec("61.67")));
    assert_eq!(o.tax, Some(dec("4.20")));
    let uk = &r.orders[1];
    assert!(uk.taxes_included);
    assert_eq!(uk.total, Some(dec("26.99")));
    assert_eq!(
        uk.shipping.as_ref().unwrap().postal_code.as_deref(),
        Some("SW1A 1AA")
    );
    let promo = &r.orders[2];
    assert_eq!(promo.lines[0].unit_price, dec("10.00"));
    assert_eq!(promo.lines[0].discount, dec("3.00"));
    assert_eq!(promo.total, Some(dec("29.40")));
}

#[test]
fn sample_amazon_unshipped_is_checked_but_never_staged_without_prices() {
    let r = read_path(&sample("amazon/unshipped-us.txt"), &detect_spec()).unwrap();
    assert_eq!((r.rows_read, r.orders.len()), (4, 0));
    assert_eq!(
        reasons(&r),
        vec![
            (1, "price_unavailable".into()),
            (2, "price_unavailable".into()),
            (3, "price_unavailable".into()),
            (4, "ragged_row".into()),
        ]
    );
}

#[test]
fn sample_woocommerce_files() {
    let spec = ChannelSpec {
        time_zone: Some("Europe/Berlin".parse().unwrap()),
        ..detect_spec()
    };
    let r = read_path(&sample("woocommerce/orders.csv"), &spec).unwrap();
    assert_eq!(r.format, Format::Woocommerce);
    assert_eq!((r.rows_read, r.orders.len(), line_count(&r)), (5, 2, 3));
    assert_eq!(
        reasons(&r),
        vec![(4, "bad_decimal".into()), (5, "bad_date".into())]
    );
    assert_eq!(
        r.orders[0].created_at.to_rfc3339(),
        "2025-12-30T08:12:00+00:00"
    );
    assert_eq!(
        r.orders[1].notes.as_deref(),
        Some("=HYPERLINK(\"http://evil.example\",\"click\")")
    );

    let r = read_path(&sample("woocommerce/orders-excel-semicolon.csv"), &spec).unwrap();
    assert_eq!(r.encoding, "windows-1252");
    assert_eq!((r.rows_read, r.orders.len(), line_count(&r)), (3, 2, 3));
    assert!(r.rejected.is_empty());
    let o = &r.orders[0];
    assert_eq!(o.total, Some(dec("370.00")));
    assert!(o.taxes_included);
    assert_eq!(o.lines_total(), dec("370.00"));
    assert_eq!(o.customer.name.as_deref(), Some("Jürgen Müller"));
    assert_eq!(o.created_at.to_rfc3339(), "2025-12-31T10:23:00+00:00");
    assert!(!r.orders[1].taxes_included);

    let r = read_path(&sample("woocommerce/orders.json"), &spec).unwrap();
    assert_eq!((r.rows_read, r.orders.len(), line_count(&r)), (3, 2, 3));
    assert_eq!(reasons(&r), vec![(3, "bad_quantity".into())]);
    assert_eq!(
        r.rejected[0].column.as_deref(),
        Some("line_items[0].quantity")
    );
    let o = &r.orders[0];
    assert_eq!(o.created_at.to_rfc3339(), "2025-11-02T09:15:00+00:00");
    assert_eq!(o.lines[0].unit_price, dec("15.00"));
    assert_eq!(o.lines[0].discount, dec("5.00"));
    assert_eq!(o.total, Some(dec("54.88")));
}

#[test]
fn sample_mapped_csv() {
    let spec = super::mapped_csv::tests::sample_spec();
    let r = read_path(&sample("csv/marketplace.csv"), &spec).unwrap();
    assert_eq!(r.format, Format::Csv);
    assert_eq!((r.rows_read, r.orders.len(), line_count(&r)), (6, 2, 3));
    assert_eq!(
        reasons(&r),
        vec![
            (4, "bad_decimal".into()),
            (5, "order_incomplete".into()),
            (6, "missing_value".into()),
        ]
    );
    let o = &r.orders[0];
    assert_eq!(o.currency.as_str(), "GBP");
    assert_eq!(
        o.lines_total() + o.shipping_amount.unwrap(),
        o.total.unwrap()
    );
    let o = &r.orders[1];
    assert_eq!(
        o.shipping.as_ref().unwrap().postal_code.as_deref(),
        Some("01234")
    );
    assert_eq!(
        o.lines_total() + o.lines[0].tax + o.shipping_amount.unwrap(),
        dec("26.60")
    );
}

/// (file, format, rows, orders, lines, rejected reasons by row) — sample_data/README.md.
type SampleCounts = (
    &'static str,
    Format,
    u64,
    usize,
    usize,
    &'static [(u64, &'static str)],
);

const NEW_SAMPLES: &[SampleCounts] = &[
    (
        "ebay/eBay-OrdersReport-Jun-02-2023-10_15_00-0700-1234.csv",
        Format::Ebay,
        7,
        3,
        4,
        &[(6, "bad_date"), (7, "currency_mismatch")],
    ),
    ("ebay/us-orders-report.csv", Format::Ebay, 2, 2, 2, &[]),
    (
        "etsy/EtsySoldOrderItems2023-1.csv",
        Format::Etsy,
        4,
        2,
        3,
        &[(4, "bad_quantity")],
    ),
    (
        "etsy/EtsySoldOrders2023-1.csv",
        Format::Etsy,
        3,
        2,
        3,
        &[(3, "order_incomplete")],
    ),
    (
        "etsy/EtsySoldOrderItems2023-2.csv",
        Format::Etsy,
        2,
        1,
        1,
        &[(2, "bad_date")],
    ),
    (
        "bigcommerce/orders-2024-09.csv",
        Format::Bigcommerce,
        4,
        2,
        3,
        &[(3, "bad_product_details"), (4, "bad_date")],
    ),
    (
        "shopify-json/orders.json",
        Format::Shopify,
        3,
        2,
        3,
        &[(3, "bad_quantity")],
    ),
    (
        "amazon-json/orders-with-items.json",
        Format::Amazon,
        3,
        2,
        3,
        &[(3, "price_unavailable")],
    ),
    (
        "magento/orders.json",
        Format::Magento,
        3,
        2,
        3,
        &[(3, "bad_date")],
    ),
];

#[test]
fn new_format_samples_match_their_documented_counts() {
    for (file, format, rows, orders, lines, rejected) in NEW_SAMPLES {
        let r = read_path(&sample(file), &detect_spec()).unwrap();
        assert_eq!(r.format, *format, "{file}");
        assert_eq!(r.rows_read, *rows, "{file}");
        assert_eq!(r.orders.len(), *orders, "{file}");
        assert_eq!(line_count(&r), *lines, "{file}");
        let got: Vec<(u64, String)> = reasons(&r);
        let want: Vec<(u64, String)> = rejected.iter().map(|(n, s)| (*n, s.to_string())).collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn spreadsheet_damage_is_noted_on_the_file() {
    let r = read_path(&sample("etsy/EtsySoldOrderItems2023-2.csv"), &detect_spec()).unwrap();
    let notes = r.notes.join("\n");
    assert!(notes.contains("mojibake suspected"), "{notes}");
    assert!(notes.contains("delimited by TAB"), "{notes}");
    assert!(
        notes.contains("EtsySoldOrders2023-2.csv not found"),
        "{notes}"
    );
    assert_eq!(r.orders[0].total, None, "no orders file: total unknown");
    let r = read_path(&sample("ebay/us-orders-report.csv"), &detect_spec()).unwrap();
    assert!(
        r.notes.iter().any(|n| n.contains("\"2134\" (US)")),
        "{:?}",
        r.notes
    );
    assert_eq!(
        r.orders[0]
            .shipping
            .as_ref()
            .unwrap()
            .postal_code
            .as_deref(),
        Some("2134"),
        "kept as in the file"
    );
}
