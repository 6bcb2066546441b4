use super::sibling_name;
use crate::channels::tests::{dec, detect_spec, read_path};
use std::path::Path;

const ITEMS: &str = "Sale Date,Item Name,Buyer,Quantity,Price,Discount Amount,Shipping Discount,Order Shipping,Order Sales Tax,Item Total,Currency,Order ID,SKU,Ship Name,Ship Zipcode,Ship Country\n\
12/31/22,Mug,ann,2,18.00,0,0,5.00,3.40,36.00,USD,1001,MUG,Ann,03104,US\n\
12/31/22,Coaster,ann,1,12.5,0,0,5.00,3.40,12.5,USD,1001,CO,Ann,03104,US\n";
const ORDERS: &str = "Sale Date,Order ID,Full Name,Currency,Order Value,Discount Amount,Shipping Discount,Shipping,Sales Tax,Order Total,Status\n\
12/31/22,1001,Ann Buyer,USD,48.50,0,0,5.00,3.40,56.90,Completed\n";

#[test]
fn sibling_names_follow_the_period() {
    let n = sibling_name(Path::new("/in/EtsySoldOrderItems2023-1.csv"), true);
    assert_eq!(n.as_deref(), Some("EtsySoldOrders2023-1.csv"));
    let n = sibling_name(Path::new("EtsySoldOrders2022.csv"), false);
    assert_eq!(n.as_deref(), Some("EtsySoldOrderItems2022.csv"));
    assert_eq!(sibling_name(Path::new("items.csv"), true), None);
}

#[test]
fn items_alone_count_order_money_once_and_leave_the_total_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("EtsySoldOrderItems2022-12.csv");
    std::fs::write(&items, ITEMS).unwrap();
    let r = read_path(&items, &detect_spec()).unwrap();
    let o = &r.orders[0];
    assert_eq!(o.lines.len(), 2);
    assert_eq!(
        (o.shipping_amount, o.tax),
        (Some(dec("5.00")), Some(dec("3.40")))
    );
    assert_eq!((o.subtotal, o.total), (Some(dec("48.50")), None));
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("EtsySoldOrders2022-12.csv not found")));
}

#[test]
fn both_files_join_into_the_same_order_from_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("EtsySoldOrderItems2022-12.csv");
    let orders = dir.path().join("EtsySoldOrders2022-12.csv");
    std::fs::write(&items, ITEMS).unwrap();
    std::fs::write(&orders, ORDERS).unwrap();
    let a = read_path(&items, &detect_spec()).unwrap();
    let b = read_path(&orders, &detect_spec()).unwrap();
    let (mut x, mut y) = (a.orders[0].clone(), b.orders[0].clone());
    assert_eq!(x.total, Some(dec("56.90")));
    assert_eq!(x.financial_status.as_deref(), Some("Completed"));
    x.source = Default::default();
    y.source = Default::default();
    assert_eq!(x, y);
    // An items file missing a line does not add up to Order Value: refused.
    std::fs::write(&items, ITEMS.lines().take(2).collect::<Vec<_>>().join("\n")).unwrap();
    let r = read_path(&items, &detect_spec()).unwrap();
    assert_eq!(r.rejected[0].reason_code, "join_mismatch");
}

#[test]
fn an_orders_file_alone_cannot_be_staged() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("EtsySoldOrders2022-12.csv");
    std::fs::write(&orders, ORDERS).unwrap();
    let r = read_path(&orders, &detect_spec()).unwrap();
    assert!(r.orders.is_empty());
    assert_eq!(r.rejected[0].reason_code, "lines_unavailable");
}
