use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::{ChannelSpec, Format};

const HEADER: &str = "\"Sales record number\",\"Order number\",\"Buyer name\",\"Item number\",\"Item title\",Custom label,\"Quantity\",\"Sold for\",\"Postage and packaging\",\"Total price\",\"Sale date\",\"Paid on date\"";

fn file(rows: &[&str]) -> Vec<u8> {
    let mut s = format!("\u{FEFF},,,,,,,,,,,\r\n{HEADER}\r\n\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\"\r\n");
    for r in rows {
        s.push_str(r);
        s.push_str("\r\n");
    }
    s.push_str("\"\",\"\"\r\n\"2\",\"record(s) downloaded\"\r\n\"Seller ID : someone\"");
    s.into_bytes()
}

#[test]
fn preamble_and_footer_are_not_rows_and_currency_comes_from_the_cells() {
    let r = read_bytes(
        &file(&["1,01-1,Jo,11,Lamp,L-1,2,GB £12.50,GB £3.45,GB £28.45,May-29-23,May-29-23"]),
        &detect_spec(),
    )
    .unwrap();
    assert_eq!((r.format, r.rows_read), (Format::Ebay, 1));
    let o = &r.orders[0];
    assert_eq!(o.currency.as_str(), "GBP");
    assert_eq!(o.lines[0].unit_price, dec("12.50"));
    assert_eq!(o.total, Some(dec("28.45")));
    assert_eq!(o.created_at.to_rfc3339(), "2023-05-29T00:00:00+00:00");
}

#[test]
fn a_summary_row_gives_the_totals_of_a_multi_item_order() {
    let r = read_bytes(
        &file(&[
            "2,02-2,Jo,,,,2,,GB £4.00,GB £39.98,May-29-23,",
            "2,02-2,Jo,21,Towel,T-2,1,GB £15.99,,,May-29-23,",
            "2,02-2,Jo,22,Mug,M-1,1,GB £19.99,,,May-29-23,",
        ]),
        &detect_spec(),
    )
    .unwrap();
    let o = &r.orders[0];
    assert_eq!(o.lines.len(), 2);
    assert_eq!(o.source.rows, vec![1, 2, 3]);
    assert_eq!(
        (o.shipping_amount, o.total),
        (Some(dec("4.00")), Some(dec("39.98")))
    );
    assert_eq!(o.financial_status.as_deref(), Some("unpaid"));
}

#[test]
fn bare_dollars_need_the_channel_currency_and_day_month_dates_are_refused() {
    let rows = ["3,03-3,Jo,31,Spoon,S-1,1,$6.00,$0.00,$6.00,Jun-01-23,"];
    let r = read_bytes(&file(&rows), &detect_spec()).unwrap();
    assert_eq!(r.rejected[0].reason_code, "missing_value");
    let spec = ChannelSpec {
        default_currency: Some("CAD".into()),
        ..detect_spec()
    };
    let r = read_bytes(&file(&rows), &spec).unwrap();
    assert_eq!(r.orders[0].currency.as_str(), "CAD");
    let r = read_bytes(
        &file(&["4,04-4,Jo,41,Lamp,L-1,1,GB £1.00,,GB £1.00,05/06/2023,"]),
        &detect_spec(),
    )
    .unwrap();
    assert_eq!(r.rejected[0].reason_code, "bad_date");
}
