use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::Format;

#[test]
fn single_order_envelope_and_line_discounts() {
    let json = r##"{"order": {"name": "#9", "created_at": "2024-01-02T03:04:05+01:00",
        "currency": "USD", "total_price": "18.00", "line_items": [{"sku": "A", "name": "A",
        "quantity": 2, "price": "10.00", "discount_allocations": [{"amount": "2.00"}]}]}}"##;
    let r = read_bytes(json.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Shopify);
    let o = &r.orders[0];
    assert_eq!(o.external_id, "#9");
    assert_eq!(o.created_at.to_rfc3339(), "2024-01-02T02:04:05+00:00");
    assert_eq!(o.lines[0].discount, dec("2.00"));
    assert_eq!(o.lines_total(), dec("18.00"));
}
