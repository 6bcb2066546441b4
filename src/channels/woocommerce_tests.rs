use crate::channels::tests::{dec, detect_spec, read_bytes};
use crate::channels::{ChannelSpec, FileError, Format};

const ALGOL: &str = "\"Order Number\",\"Order Status\",\"Order Date\",\"First Name (Billing)\",\"Last Name (Billing)\",\"Zip (Billing)\",\"Phone (Billing)\",\"SKU\",\"Name\",\"Quantity\",\"Item Cost\",\"Currency\",\"Order Shipping Amount\",\"Order Total Tax Amount\",\"Order Total Amount\"";

#[test]
fn algolplus_comma_file_with_repeated_order_columns() {
    let text = format!(
        "{ALGOL}\r\n100,Completed,\"2025-12-31 11:23\",Ann,Lee,01067,0301234567,A-1,\"Mug, blue\",2,12.00,EUR,4.90,0,28.90\r\n100,Completed,\"2025-12-31 11:23\",Ann,Lee,01067,0301234567,A-2,Spoon,1,0.00,EUR,4.90,0,28.90\r\n"
    );
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.format, Format::Woocommerce);
    assert_eq!(r.orders.len(), 1);
    let o = &r.orders[0];
    assert_eq!(o.lines.len(), 2);
    assert_eq!(o.lines[0].name, "Mug, blue");
    assert_eq!(
        o.lines_total() + o.shipping_amount.unwrap(),
        o.total.unwrap()
    );
    let bill = o.billing.as_ref().unwrap();
    assert_eq!(bill.postal_code.as_deref(), Some("01067"));
    assert_eq!(bill.phone.as_deref(), Some("0301234567"));
    assert_eq!(o.created_at.to_rfc3339(), "2025-12-31T11:23:00+00:00");
    assert_eq!(o.financial_status.as_deref(), Some("Completed"));
}

#[test]
fn semicolon_delimiter_is_sniffed_and_decimal_commas_read() {
    let header = ALGOL.replace("\",\"", ";").replace('"', "");
    let text = format!("{header}\n200;Completed;2025/12/31 11:23;Bo;Ek;80802;891234567;B-1;Lamp;1;370,00;EUR;0,00;59,08;370,00\n");
    let spec = ChannelSpec {
        time_zone: Some("Europe/Berlin".parse().unwrap()),
        ..detect_spec()
    };
    let r = read_bytes(text.as_bytes(), &spec).unwrap();
    assert_eq!(r.orders.len(), 1, "{:?}", r.rejected);
    let o = &r.orders[0];
    assert_eq!(o.total, Some(dec("370.00")));
    assert_eq!(o.tax, Some(dec("59.08")));
    assert!(o.taxes_included);
    assert_eq!(o.created_at.to_rfc3339(), "2025-12-31T10:23:00+00:00");
    assert_eq!(o.created_at_original, "2025/12/31 11:23");
}

#[test]
fn algolplus_without_currency_needs_a_default() {
    let header = ALGOL.replace(",\"Currency\"", "");
    let row = "300,Completed,2025-12-31 11:23,Ann,Lee,1,2,A,Mug,1,5.00,0,0,5.00";
    let text = format!("{header}\n{row}\n");
    assert!(matches!(
        read_bytes(text.as_bytes(), &detect_spec()),
        Err(FileError::Invalid { .. })
    ));
    let spec = ChannelSpec {
        default_currency: Some("GBP".into()),
        ..detect_spec()
    };
    let r = read_bytes(text.as_bytes(), &spec).unwrap();
    assert_eq!(r.orders[0].currency.as_str(), "GBP");
}

const SKY: &str = "order_id,order_number,order_number_formatted,date,status,shipping_total,shipping_tax_total,tax_total,discount_total,order_total,order_currency,billing_first_name,billing_last_name,billing_email,billing_phone,billing_postcode,customer_note,item_id,item_name,item_sku,item_quantity,item_subtotal,item_subtotal_tax,item_total,item_total_tax";

#[test]
fn skyverge_one_row_per_item() {
    let text = format!(
        "{SKY}\n41,1041,#1041,2024-02-01 09:30:00,completed,5.00,0.00,3.80,2.00,46.80,USD,Kim,Park,kim@example.com,'+1 555 0100,'02134,,1,Poster,POS-1,2,20.00,1.60,18.00,1.44,\n41,1041,#1041,2024-02-01 09:30:00,completed,5.00,0.00,3.80,2.00,46.80,USD,Kim,Park,kim@example.com,'+1 555 0100,'02134,,2,Frame,FRM-1,1,20.00,2.36,20.00,2.36\n"
    );
    let r = read_bytes(text.as_bytes(), &detect_spec()).unwrap();
    assert_eq!(r.orders.len(), 1, "{:?}", r.rejected);
    let o = &r.orders[0];
    assert_eq!(o.external_id, "1041");
    assert_eq!(o.lines[0].unit_price, dec("10.00"));
    assert_eq!(o.lines[0].discount, dec("2.00"));
    assert_eq!(o.subtotal, Some(dec("38.00")));
    assert_eq!(o.customer.phone.as_deref(), Some("+1 555 0100"));
    assert_eq!(
        o.billing.as_ref().unwrap().postal_code.as_deref(),
        Some("02134")
    );
    assert_eq!(
        o.subtotal.unwrap() + o.shipping_amount.unwrap() + o.tax.unwrap(),
        o.total.unwrap()
    );
}

#[test]
fn skyverge_packed_default_format_is_explained() {
    let header = "order_id,order_number,order_number_formatted,date,status,order_total,order_currency,line_items";
    let text = format!("{header}\n1,1,#1,2024-01-01 00:00:00,completed,5.00,USD,name:A|qty:1\n");
    match read_bytes(text.as_bytes(), &detect_spec()) {
        Err(FileError::Invalid { detail, .. }) => {
            assert!(detail.contains("default_one_row_per_item"), "{detail}")
        }
        other => panic!("{:?}", other.map(|r| r.rows_read)),
    }
}
