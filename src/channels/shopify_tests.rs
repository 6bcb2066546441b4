use super::*;
use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::Format;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The 79 columns of a 2025 export, in order.
const COLUMNS_79: &str = "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem compare at price,Lineitem sku,Lineitem requires shipping,Lineitem taxable,Lineitem fulfillment status,Billing Name,Billing Street,Billing Address1,Billing Address2,Billing Company,Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Shipping Name,Shipping Street,Shipping Address1,Shipping Address2,Shipping Company,Shipping City,Shipping Zip,Shipping Province,Shipping Country,Shipping Phone,Notes,Note Attributes,Cancelled at,Payment Method,Payment Reference,Refunded Amount,Vendor,Outstanding Balance,Employee,Location,Device ID,Id,Tags,Risk Level,Source,Lineitem discount,Tax 1 Name,Tax 1 Value,Tax 2 Name,Tax 2 Value,Tax 3 Name,Tax 3 Value,Tax 4 Name,Tax 4 Value,Tax 5 Name,Tax 5 Value,Phone,Receipt Number,Duties,Billing Province Name,Shipping Province Name,Payment ID,Payment Terms Name,Next Payment Due At,Payment References";

/// The 2022 73-column set: no POS block, no `Payment ID`, no `Payment References`.
fn columns_73() -> Vec<&'static str> {
    let dropped = [
        "Outstanding Balance",
        "Employee",
        "Location",
        "Device ID",
        "Payment ID",
        "Payment References",
    ];
    COLUMNS_79
        .split(',')
        .filter(|c| !dropped.contains(c))
        .collect()
}

/// Write rows (column → value) under `header` as CSV.
fn csv_file(header: &[&str], rows: &[BTreeMap<&str, String>]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).unwrap();
    for r in rows {
        let rec: Vec<&str> = header
            .iter()
            .map(|c| r.get(c).map(String::as_str).unwrap_or(""))
            .collect();
        w.write_record(rec).unwrap();
    }
    w.into_inner().unwrap()
}

fn first_row(name: &str, currency: &str, total: &str) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("Name", name),
        ("Email", "a@example.com"),
        ("Financial Status", "paid"),
        ("Currency", currency),
        ("Subtotal", total),
        ("Shipping", "0.00"),
        ("Taxes", "0.00"),
        ("Total", total),
        ("Created at", "2021-05-13 11:01:13 +0200"),
        ("Lineitem quantity", "1"),
        ("Lineitem name", "Thing"),
        ("Lineitem price", total),
        ("Lineitem sku", "T-1"),
        ("Billing Zip", "'4001"),
        ("Billing Phone", "'+46 70 123 45 67"),
        ("Outstanding Balance", "0.00"),
        ("Payment References", "abc"),
    ] {
        m.insert(k, v.to_string());
    }
    m
}

fn continuation(name: &str, qty: &str, item: &str, price: &str) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("Name", name.to_string());
    m.insert("Email", "a@example.com".to_string());
    m.insert("Created at", "2021-05-13 11:01:13 +0200".to_string());
    m.insert("Lineitem quantity", qty.to_string());
    m.insert("Lineitem name", item.to_string());
    m.insert("Lineitem price", price.to_string());
    m.insert("Vendor", "Acme".to_string());
    m
}

#[test]
fn column_sets_73_and_79_read_the_same_orders() {
    let rows = vec![
        first_row("#1001", "SEK", "100.00"),
        continuation("#1001", "2", "Extra", "5.50"),
    ];
    let c79: Vec<&str> = COLUMNS_79.split(',').collect();
    assert_eq!(c79.len(), 79);
    let c73 = columns_73();
    assert_eq!(c73.len(), 73);
    let a = read_bytes(&csv_file(&c79, &rows), &detect_spec()).unwrap();
    let b = read_bytes(&csv_file(&c73, &rows), &detect_spec()).unwrap();
    assert_eq!(a.format, Format::Shopify);
    assert_eq!(b.format, Format::Shopify);
    assert_eq!(a.orders.len(), 1);
    let without_path = |mut o: crate::model::Order| {
        o.source.path = None;
        o
    };
    assert_eq!(
        without_path(a.orders[0].clone()),
        without_path(b.orders[0].clone())
    );
    let o = &a.orders[0];
    assert_eq!(o.created_at.to_rfc3339(), "2021-05-13T09:01:13+00:00");
    assert_eq!(o.currency.as_str(), "SEK");
    assert_eq!(o.lines.len(), 2);
    assert_eq!(o.lines[1].quantity, dec("2"));
    assert_eq!(o.lines[1].unit_price, dec("5.50"));
    assert_eq!(o.lines[1].sku, None);
    let bill = o.billing.as_ref().unwrap();
    assert_eq!(bill.postal_code.as_deref(), Some("4001"));
    assert_eq!(bill.phone.as_deref(), Some("+46 70 123 45 67"));
}

#[test]
fn unknown_extra_columns_and_reordered_columns_are_tolerated() {
    let mut header: Vec<&str> = COLUMNS_79.split(',').collect();
    header.push("Some Future Column");
    let (head, tail) = header.split_at(4);
    let mut reordered: Vec<&str> = head.to_vec();
    let mut rest = tail.to_vec();
    rest.reverse();
    reordered.extend(rest);
    let mut row = first_row("#7", "USD", "9.99");
    row.insert("Some Future Column", "whatever, \"quoted\"".into());
    let r = read_bytes(&csv_file(&reordered, &[row]), &detect_spec()).unwrap();
    assert_eq!(r.orders.len(), 1);
    assert_eq!(r.orders[0].total, Some(dec("9.99")));
}

#[test]
fn continuation_row_without_its_first_row_is_rejected() {
    let c79: Vec<&str> = COLUMNS_79.split(',').collect();
    let rows = vec![
        first_row("#1", "USD", "10.00"),
        first_row("#2", "USD", "20.00"),
        continuation("#1", "1", "Late line", "1.00"),
    ];
    let r = read_bytes(&csv_file(&c79, &rows), &detect_spec()).unwrap();
    assert_eq!(r.orders.len(), 2);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].row_number, 3);
    assert_eq!(r.rejected[0].reason_code, "missing_value");
    assert_eq!(r.rejected[0].column.as_deref(), Some("Currency"));
}

#[test]
fn non_contiguous_key_is_yielded_again_as_a_separate_order() {
    let c79: Vec<&str> = COLUMNS_79.split(',').collect();
    let rows = vec![
        first_row("#1", "USD", "10.00"),
        first_row("#2", "USD", "20.00"),
        first_row("#1", "USD", "10.00"),
    ];
    let r = read_bytes(&csv_file(&c79, &rows), &detect_spec()).unwrap();
    let ids: Vec<&str> = r.orders.iter().map(|o| o.external_id.as_str()).collect();
    assert_eq!(ids, ["#1", "#2", "#1"]);
    assert_eq!(r.orders[2].source.rows, vec![3]);
}

#[test]
fn order_level_problems_reject_every_row_of_the_order() {
    let c79: Vec<&str> = COLUMNS_79.split(',').collect();
    let mut bad_date = first_row("#9", "USD", "10.00");
    bad_date.insert("Created at", "45384.34789351852".into());
    let rows = vec![bad_date, continuation("#9", "1", "More", "1.00")];
    let r = read_bytes(&csv_file(&c79, &rows), &detect_spec()).unwrap();
    assert!(r.orders.is_empty());
    assert_eq!(r.rejected.len(), 2);
    for rej in &r.rejected {
        assert_eq!(rej.reason_code, "bad_date");
        assert_eq!(rej.column.as_deref(), Some("Created at"));
        assert!(rej.message.starts_with("order #9: "), "{}", rej.message);
    }
}

#[test]
fn tax_inclusive_rule() {
    let d = |s: &str| Some(dec(s));
    // VAT shop: 699.00 + 85.00 = 784.00 with 91.17 inside.
    assert!(taxes_included(
        d("699.00"),
        d("85.00"),
        None,
        d("91.17"),
        d("784.00")
    ));
    // Tax-exclusive: Total = Subtotal + Shipping + Taxes.
    assert!(!taxes_included(
        d("100.00"),
        d("10.00"),
        None,
        d("13.00"),
        d("123.00")
    ));
    // No tax at all: not inclusive.
    assert!(!taxes_included(
        d("100.00"),
        d("0"),
        None,
        d("0"),
        d("100.00")
    ));
}

#[derive(Debug, Clone)]
struct GenLine {
    name: String,
    sku: Option<String>,
    quantity: u32,
    price_cents: u64,
}

#[derive(Debug, Clone)]
struct GenOrder {
    currency: &'static str,
    notes: String,
    lines: Vec<GenLine>,
}

fn text_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9é][a-zA-Z0-9é ,;\"'\n\r\t=+-]{0,20}[a-zA-Z0-9é]"
}

fn order_strategy() -> impl Strategy<Value = GenOrder> {
    let line = (
        text_strategy(),
        proptest::option::of("[A-Z0-9-]{1,10}"),
        1u32..500,
        0u64..10_000_000,
    )
        .prop_map(|(name, sku, quantity, price_cents)| GenLine {
            name,
            sku,
            quantity,
            price_cents,
        });
    (
        prop_oneof![Just("USD"), Just("EUR"), Just("GBP")],
        text_strategy(),
        proptest::collection::vec(line, 1..5),
    )
        .prop_map(|(currency, notes, lines)| GenOrder {
            currency,
            notes,
            lines,
        })
}

fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_orders_round_trip_through_csv(orders in proptest::collection::vec(order_strategy(), 1..6)) {
        let header: Vec<&str> = COLUMNS_79.split(',').collect();
        let mut rows = Vec::new();
        for (i, o) in orders.iter().enumerate() {
            let name = format!("#{}", 1000 + i);
            let subtotal: u64 = o.lines.iter().map(|l| l.price_cents * u64::from(l.quantity)).sum();
            for (j, l) in o.lines.iter().enumerate() {
                let mut m = if j == 0 {
                    let mut m = first_row(&name, o.currency, &cents(subtotal));
                    m.insert("Notes", o.notes.clone());
                    m
                } else {
                    continuation(&name, "", "", "")
                };
                m.insert("Lineitem quantity", l.quantity.to_string());
                m.insert("Lineitem name", l.name.clone());
                m.insert("Lineitem price", cents(l.price_cents));
                m.insert("Lineitem sku", l.sku.clone().unwrap_or_default());
                rows.push(m);
            }
        }
        let r = read_bytes(&csv_file(&header, &rows), &detect_spec()).unwrap();
        prop_assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        prop_assert_eq!(r.rows_read, rows.len() as u64);
        prop_assert_eq!(r.orders.len(), orders.len());
        for (i, (got, want)) in r.orders.iter().zip(&orders).enumerate() {
            prop_assert_eq!(&got.external_id, &format!("#{}", 1000 + i));
            prop_assert_eq!(got.currency.as_str(), want.currency);
            prop_assert_eq!(got.notes.as_deref(), Some(want.notes.as_str()));
            prop_assert_eq!(got.lines.len(), want.lines.len());
            for (gl, wl) in got.lines.iter().zip(&want.lines) {
                prop_assert_eq!(&gl.name, &wl.name);
                prop_assert_eq!(&gl.sku, &wl.sku);
                prop_assert_eq!(gl.quantity, rust_decimal::Decimal::from(wl.quantity));
                prop_assert_eq!(gl.unit_price, rust_decimal::Decimal::new(wl.price_cents as i64, 2));
            }
            let subtotal: u64 = want.lines.iter().map(|l| l.price_cents * u64::from(l.quantity)).sum();
            prop_assert_eq!(got.lines_total(), rust_decimal::Decimal::new(subtotal as i64, 2));
            prop_assert_eq!(got.total, Some(rust_decimal::Decimal::new(subtotal as i64, 2)));
        }
    }
}
