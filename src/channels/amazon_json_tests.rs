use crate::channels::tests::{detect_spec, read_bytes};
use crate::channels::Format;

#[test]
fn orders_need_their_items_and_one_currency() {
    let json = r#"{"payload": {"Orders": [
        {"AmazonOrderId": "1", "PurchaseDate": "2024-10-24T08:30:00Z", "OrderStatus": "Shipped"},
        {"AmazonOrderId": "2", "PurchaseDate": "2024-10-24T08:30:00Z", "OrderStatus": "Shipped",
         "OrderItems": [{"SellerSKU": "A", "QuantityOrdered": 1,
            "ItemPrice": {"CurrencyCode": "USD", "Amount": "5.00"},
            "ItemTax": {"CurrencyCode": "EUR", "Amount": "1.00"}}]},
        {"AmazonOrderId": "3", "PurchaseDate": "2024-10-24T08:30:00Z", "OrderStatus": "Canceled",
         "OrderItems": [{"SellerSKU": "A", "QuantityOrdered": 0}]},
        {"AmazonOrderId": "4", "PurchaseDate": "2024-10-24T08:30:00Z", "OrderStatus": "Shipped",
         "OrderItems": [{"SellerSKU": "A", "QuantityOrdered": 3,
            "ItemPrice": {"CurrencyCode": "USD", "Amount": "10.00"}}]}
    ]}}"#;
    let r = read_bytes(json.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Amazon);
    let reasons: Vec<&str> = r.rejected.iter().map(|x| x.reason_code.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "missing_value",
            "currency_mismatch",
            "cancelled_order",
            "bad_decimal"
        ]
    );
}
