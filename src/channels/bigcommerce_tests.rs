use super::parse_products;
use crate::channels::tests::dec;

#[test]
fn packed_products_split_on_known_keys_only() {
    let lines = parse_products(
        "Product ID: 1, Product Qty: 2, Product SKU: A, Product Name: Terrarium, Large, \
         Product Unit Price: 5.00, Product Total Price: 9.00|Product ID: 2, Product Qty: 1, \
         Product SKU: B, Product Name: Mug, Product Variation Details: Colour: Red, \
         Product Unit Price: 3.00",
    )
    .unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].name, "Terrarium, Large");
    assert_eq!(lines[0].discount, dec("1.00"));
    assert_eq!(lines[1].name, "Mug (Colour: Red)");
    assert_eq!(lines[1].unit_price, dec("3.00"));
    let p = parse_products("Product ID: 1, Product SKU: A").unwrap_err();
    assert_eq!(p.reason, "bad_product_details");
    let p = parse_products("Product Qty: 1, Product Unit Price: 2.00, Product Total Price: 3.00")
        .unwrap_err();
    assert_eq!(p.reason, "bad_product_details");
}
