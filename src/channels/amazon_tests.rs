use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::{ChannelSpec, Format};

const ALL: &str = "amazon-order-id\tmerchant-order-id\tpurchase-date\tlast-updated-date\torder-status\tsales-channel\tproduct-name\tsku\tquantity\tcurrency\titem-price\titem-tax\tshipping-price\tship-postal-code";

fn all_row(id: &str, name: &str, qty: &str, price: &str) -> String {
    format!("{id}\t\t2021-01-16T20:40:23+00:00\t2021-01-17T01:00:00+00:00\tShipped\tAmazon.com\t{name}\tSKU-1\t{qty}\tUSD\t{price}\t0.80\t4.99\t02134-0001")
}

#[test]
fn groups_items_by_order_id_and_keeps_bare_quotes() {
    let text = format!(
        "{ALL}\n{}\n{}\n{}",
        all_row("111-1", "Stand 6.5\"-10\" \"Pro", "2", "20.00"),
        all_row("111-1", "Cable", "1", "5.00"),
        all_row("111-2", "Lamp", "1", "9.99"),
    );
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Amazon);
    assert_eq!(r.orders.len(), 2);
    let o = &r.orders[0];
    assert_eq!(o.lines[0].name, "Stand 6.5\"-10\" \"Pro");
    assert_eq!(o.lines[0].unit_price, dec("10.00"));
    assert_eq!(o.lines[0].tax, dec("0.80"));
    assert_eq!(o.shipping_amount, Some(dec("9.98")));
    assert_eq!(o.tax, Some(dec("1.60")));
    assert_eq!(o.total, Some(dec("25.00") + dec("9.98") + dec("1.60")));
    assert_eq!(
        o.shipping.as_ref().unwrap().postal_code.as_deref(),
        Some("02134-0001")
    );
    assert!(!o.taxes_included);
}

#[test]
fn ragged_rows_trailing_empty_fields_accepted_others_rejected() {
    let header = format!("{ALL}\t"); // trailing empty header column
    let good = all_row("111-1", "A", "1", "1.00");
    let short_by_trailing_tab = good.clone(); // header has an extra empty column: accepted
    let long_empty = format!("{}\t\t", all_row("111-2", "B", "1", "1.00")); // extra empty: accepted
    let long_data = format!("{}\t\tsurprise", all_row("111-3", "C", "1", "1.00"));
    let full = all_row("111-4", "D", "1", "1.00");
    let short_data = full.split('\t').take(9).collect::<Vec<_>>().join("\t");
    let text = format!(
        "{header}\r\n{short_by_trailing_tab}\r\n{long_empty}\r\n{long_data}\r\n{short_data}"
    );
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    let ids: Vec<&str> = r.orders.iter().map(|o| o.external_id.as_str()).collect();
    assert_eq!(ids, ["111-1", "111-2"]);
    assert_eq!(r.rejected.len(), 2);
    for (rej, found) in r.rejected.iter().zip(["16", "9"]) {
        assert_eq!(rej.reason_code, "ragged_row");
        assert!(
            rej.message.contains(&format!("has {found} ")),
            "{}",
            rej.message
        );
        assert!(rej.message.contains("header has 15"), "{}", rej.message);
    }
    assert_eq!(r.rejected[1].raw, short_data);
}

#[test]
fn extended_price_must_divide_into_a_unit_price() {
    let text = format!("{ALL}\n{}", all_row("111-1", "A", "3", "10.00"));
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert!(r.orders.is_empty());
    assert_eq!(r.rejected[0].reason_code, "bad_decimal");
    assert_eq!(r.rejected[0].column.as_deref(), Some("item-price"));
}

#[test]
fn mixed_currencies_in_one_order_are_rejected() {
    let second = all_row("111-1", "B", "1", "1.00").replace("\tUSD\t", "\tEUR\t");
    let text = format!("{ALL}\n{}\n{second}", all_row("111-1", "A", "1", "1.00"));
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert!(r.orders.is_empty());
    assert!(r
        .rejected
        .iter()
        .all(|x| x.reason_code == "currency_mismatch"));
    assert_eq!(r.rejected.len(), 2);
}

#[test]
fn unshipped_layouts_per_marketplace_are_recognised() {
    let spec = ChannelSpec {
        format: Some(Format::Amazon),
        ..detect_spec()
    };
    // AU: ends at ship-country plus a trailing tab.
    let au = "order-id\torder-item-id\tpurchase-date\tpayments-date\treporting-date\tpromise-date\tdays-past-promise\tbuyer-email\tbuyer-phone-number\tsku\tproduct-name\tquantity-purchased\tquantity-shipped\tquantity-to-ship\tship-service-level\trecipient-name\tship-address-1\tship-address-2\tship-address-3\tship-city\tship-state\tship-postal-code\tship-country\t";
    let row = "503-1\t1\t2021-01-16T20:40:23+00:00\t2021-01-17T07:40:23+11:00\t\t\t-3\tx@marketplace.amazon.com.au\t\tSKU\tThing\t1\t0\t1\tStandard\tJo\t1 St\t\t\tSydney\tNSW\t2000\tAU\t";
    let r = read_bytes(format!("{au}\r\n{row}").as_bytes(), &spec).unwrap();
    assert_eq!(r.format, Format::Amazon);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].reason_code, "price_unavailable");
    let bad_qty = row.replace("\tThing\t1\t", "\tThing\t0\t");
    let r = read_bytes(format!("{au}\n{bad_qty}").as_bytes(), &spec).unwrap();
    assert_eq!(r.rejected[0].reason_code, "bad_quantity");
    assert_eq!(r.rejected[0].column.as_deref(), Some("quantity-purchased"));
}
