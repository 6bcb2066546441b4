use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::{ChannelSpec, FileError, Format};
use std::collections::BTreeMap;

/// The mapping documented in sample_data/README.md for `sample_data/csv/marketplace.csv`.
pub(crate) fn sample_spec() -> ChannelSpec {
    let mapping: BTreeMap<String, String> = [
        ("external_id", "Order Ref"),
        ("created_at", "Order Date"),
        ("currency", "Currency"),
        ("email", "Buyer Email"),
        ("customer_name", "Buyer"),
        ("sku", "Item SKU"),
        ("name", "Item Title"),
        ("quantity", "Qty"),
        ("unit_price", "Unit Price"),
        ("line_discount", "Item Discount"),
        ("line_tax", "Item Tax"),
        ("shipping", "Shipping"),
        ("total", "Order Total"),
        ("financial_status", "Status"),
        ("ship_name", "Ship To"),
        ("ship_line1", "Ship Address"),
        ("ship_city", "Ship City"),
        ("ship_postal_code", "Ship Postcode"),
        ("ship_country", "Ship Country"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ChannelSpec {
        name: "marketplace".into(),
        format: Some(Format::Csv),
        time_zone: None,
        mapping,
        default_currency: Some("GBP".into()),
        archive: None,
        encoding: None,
    }
}

fn small_spec() -> ChannelSpec {
    let mapping = [
        ("external_id", "ref"),
        ("created_at", "when"),
        ("name", "item"),
        ("quantity", "n"),
        ("unit_price", "each"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ChannelSpec {
        name: "m".into(),
        format: Some(Format::Csv),
        mapping,
        default_currency: Some("EUR".into()),
        ..detect_spec()
    }
}

#[test]
fn tab_separated_file_with_default_currency() {
    let text = "ref\twhen\titem\tn\teach\textra\nA-1\t2024-01-02 03:04\tThing\t3\t1.10\tx\nA-1\t\tOther\t1\t2.00\t\nB-2\t2024-01-03 00:00\tThing\t1\t1.10\t\n";
    let r = read_bytes(text.as_bytes(), &small_spec()).unwrap();
    assert_eq!(r.orders.len(), 2);
    let o = &r.orders[0];
    assert_eq!(o.currency.as_str(), "EUR");
    assert_eq!(o.lines_total(), dec("5.30"));
    assert_eq!(o.created_at.to_rfc3339(), "2024-01-02T03:04:00+00:00");
    assert_eq!(o.source.rows, vec![1, 2]);
}

#[test]
fn mapping_problems_name_fields_and_columns() {
    let mut spec = small_spec();
    spec.mapping.insert("colour".into(), "c".into());
    spec.mapping.insert("sku".into(), "Item SKU".into());
    spec.mapping.remove("unit_price");
    match read_bytes(b"ref,when,item,n,each\n", &spec) {
        Err(FileError::Invalid { detail, .. }) => {
            assert!(detail.contains("\"colour\""), "{detail}");
            assert!(detail.contains("unit_price"), "{detail}");
            assert!(detail.contains("\"Item SKU\" (for sku)"), "{detail}");
        }
        other => panic!("{:?}", other.map(|r| r.rows_read)),
    }
}

#[test]
fn unknown_currency_in_the_file_rejects_the_order() {
    let mut spec = small_spec();
    spec.mapping.insert("currency".into(), "cur".into());
    let text = "ref,when,item,n,each,cur\nA,2024-01-01 00:00,T,1,1.00,EURO\nA,,U,1,1.00,\n";
    let r = read_bytes(text.as_bytes(), &spec).unwrap();
    assert!(r.orders.is_empty());
    assert_eq!(r.rejected.len(), 2);
    assert!(r
        .rejected
        .iter()
        .all(|x| x.reason_code == "unknown_currency"));
    assert_eq!(r.rejected[0].column.as_deref(), Some("cur"));
}

#[test]
fn a_later_part_of_a_rejected_order_is_rejected_too() {
    // A-1's first part has a bad quantity; its second part comes after B-2 (a file sorted by
    // something other than the order). Staging that part alone would stage A-1 without a line.
    let text = "ref,when,item,n,each\n\
                A-1,2024-01-02 03:04,Thing,lots,1.10\n\
                B-2,2024-01-03 00:00,Thing,1,1.10\n\
                A-1,2024-01-02 03:04,Other,1,2.00\n\
                C-3,2024-01-03 00:00,Thing,1,1.10\n";
    let r = read_bytes(text.as_bytes(), &small_spec()).unwrap();
    let ids: Vec<&str> = r.orders.iter().map(|o| o.external_id.as_str()).collect();
    assert_eq!(ids, ["B-2", "C-3"]);
    let rejected: Vec<(u64, &str)> = r
        .rejected
        .iter()
        .map(|x| (x.row_number, x.reason_code.as_str()))
        .collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0].0, 1);
    assert_ne!(rejected[0].1, "order_incomplete");
    assert_eq!(rejected[1], (3, "order_incomplete"));
    assert!(
        r.rejected[1].message.contains("row 1 of the same order"),
        "{}",
        r.rejected[1].message
    );
    assert!(r.rejected[1].raw.contains("Other"));
    // Both carry their order's key (staging holds back an order this file staged from it).
    assert!(r
        .rejected
        .iter()
        .all(|x| x.order_key.as_deref() == Some("A-1")));
}

#[test]
fn a_later_part_of_an_order_rejected_for_an_order_level_problem_is_rejected_too() {
    let text = "ref,when,item,n,each\n\
                D-4,yesterday,Thing,1,1.10\n\
                B-2,2024-01-03 00:00,Thing,1,1.10\n\
                D-4,2024-01-02 03:04,Other,1,2.00\n";
    let r = read_bytes(text.as_bytes(), &small_spec()).unwrap();
    let ids: Vec<&str> = r.orders.iter().map(|o| o.external_id.as_str()).collect();
    assert_eq!(ids, ["B-2"]);
    let rejected: Vec<(u64, &str)> = r
        .rejected
        .iter()
        .map(|x| (x.row_number, x.reason_code.as_str()))
        .collect();
    assert_eq!(rejected, [(1, "bad_date"), (3, "order_incomplete")]);
    assert!(r
        .rejected
        .iter()
        .all(|x| x.order_key.as_deref() == Some("D-4")));
}
