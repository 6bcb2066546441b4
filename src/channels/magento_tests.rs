use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::Format;

#[test]
fn configurable_children_are_counted_once() {
    let json = r#"{"items": [{"increment_id": "000000007", "created_at": "2022-11-01 03:27:33",
        "order_currency_code": "USD", "grand_total": 52,
        "items": [
          {"item_id": 1, "sku": "H-XS", "name": "Hoodie", "product_type": "configurable", "qty_ordered": 1, "price": 52},
          {"item_id": 2, "parent_item_id": 1, "sku": "H-XS", "name": "Hoodie-XS", "qty_ordered": 1, "price": 0}
        ]}], "total_count": 1}"#;
    let r = read_bytes(json.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Magento);
    let o = &r.orders[0];
    assert_eq!(o.external_id, "000000007");
    assert_eq!(o.lines.len(), 1);
    assert_eq!(o.lines_total(), dec("52"));
}
