use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::Format;

fn order(number: u32, quantity: &str) -> String {
    format!(
        r#"{{"id": {number}, "number": "{number}", "status": "completed", "currency": "EUR",
  "date_created": "2017-03-22T16:28:02", "date_created_gmt": "2017-03-22T19:28:02",
  "prices_include_tax": true, "shipping_total": "10.00", "total_tax": "1.35",
  "discount_total": "0.00", "total": "29.35", "customer_note": "ring, then \"knock\" ]}}",
  "billing": {{"first_name": "John", "last_name": "Doe", "postcode": "94103",
               "country": "US", "email": "john.doe@example.com", "phone": "(555) 555-5555"}},
  "line_items": [{{"id": 1, "name": "Woo Single #1", "sku": "", "quantity": {quantity},
                  "subtotal": "6.00", "total": "6.00", "total_tax": "0.45", "price": 3}},
                 {{"id": 2, "name": "Ninja Silhouette", "sku": "NS-1", "quantity": 1,
                  "subtotal": "12.00", "total": "12.00", "total_tax": "0.90", "price": 12}}]}}"#
    )
}

#[test]
fn array_of_orders_is_read_one_by_one() {
    let text = format!("\n  [ {}, {} ]\n", order(727, "2"), order(728, "2"));
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Woocommerce);
    assert_eq!(r.orders.len(), 2);
    let o = &r.orders[0];
    assert_eq!(o.external_id, "727");
    assert_eq!(o.created_at.to_rfc3339(), "2017-03-22T19:28:02+00:00");
    assert_eq!(o.created_at_original, "2017-03-22T19:28:02");
    assert_eq!(o.lines[0].unit_price, dec("3.00"));
    assert_eq!(o.lines[0].sku, None);
    assert_eq!(o.lines[0].tax, dec("0.45"));
    assert!(o.taxes_included);
    assert_eq!(o.notes.as_deref(), Some("ring, then \"knock\" ]}"));
    assert_eq!(o.customer.email.as_deref(), Some("john.doe@example.com"));
    assert_eq!(r.orders[1].source.rows, vec![2]);
}

#[test]
fn single_order_object_is_one_record() {
    let r = read_bytes(order(9, "2").as_bytes(), &detect_spec()).unwrap();
    assert_eq!((r.rows_read, r.orders.len()), (1, 1));
    assert_eq!(r.orders[0].lines.len(), 2);
}

#[test]
fn bad_orders_are_rejected_with_a_json_path() {
    let text = format!(
        "[{}, {}, 42, {{\"number\": \"x\" ",
        order(1, "2"),
        order(2, "\"2.5x\"")
    );
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.orders.len(), 1);
    let reasons: Vec<(&str, Option<&str>)> = r
        .rejected
        .iter()
        .map(|x| (x.reason_code.as_str(), x.column.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("bad_quantity", Some("line_items[0].quantity")),
            ("bad_json", None),
            ("bad_json", None),
        ]
    );
    assert!(r.rejected[0].message.starts_with("order 2: "));
    assert!(r.rejected[0].raw.contains("Ninja Silhouette"));
}

#[test]
fn missing_gmt_date_uses_the_channel_zone() {
    let text = order(5, "2").replace(r#""date_created_gmt": "2017-03-22T19:28:02","#, "");
    let spec = crate::channels::ChannelSpec {
        time_zone: Some("America/New_York".parse().unwrap()),
        ..detect_spec()
    };
    let r = read_bytes(text.as_bytes(), &spec).unwrap();
    assert_eq!(
        r.orders[0].created_at.to_rfc3339(),
        "2017-03-22T20:28:02+00:00"
    );
}
