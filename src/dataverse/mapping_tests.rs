//! Mapping tests: exact money text, column lengths, catalog vs write-in, e-mail contacts.

use super::*;
use crate::model::{CurrencyCode, Customer, Provenance};
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const PRICE_LIST: &str = "11111111-0000-0000-0000-000000000001";
const ACCOUNT: &str = "22222222-0000-0000-0000-000000000002";
const USD: &str = "33333333-0000-0000-0000-000000000003";
const UNIT: &str = "44444444-0000-0000-0000-000000000004";

fn refs() -> References {
    References {
        price_list_id: PRICE_LIST.into(),
        account_id: Some(ACCOUNT.into()),
        currencies: [("USD".to_string(), USD.to_string())].into(),
        unit_id: Some(UNIT.into()),
    }
}

fn cfg() -> MappingConfig {
    MappingConfig::from_target(&TargetConfig::default())
}

fn order() -> Order {
    Order {
        channel: "shopify-us".into(),
        external_id: "#1001".into(),
        created_at: chrono::Utc::now(),
        created_at_original: "2024-03-01 10:00:00 -0500".into(),
        currency: CurrencyCode::parse("USD").unwrap(),
        customer: Customer {
            email: Some("Ann.Lee@Example.com".into()),
            name: Some("Ann Marie Lee".into()),
            phone: None,
        },
        billing: None,
        shipping: Some(Address {
            name: Some("Ann Lee".into()),
            line1: Some("1 Main St".into()),
            city: Some("Springfield".into()),
            postal_code: Some("01234".into()),
            country: Some("US".into()),
            ..Address::default()
        }),
        lines: vec![
            OrderLine {
                line_number: 1,
                sku: Some("TS-RED-M".into()),
                name: "T-shirt".into(),
                quantity: d("2"),
                unit_price: d("0.10"),
                discount: d("0.00"),
                tax: d("0.20"),
            },
            OrderLine {
                line_number: 2,
                sku: None,
                name: "Gift wrap".into(),
                quantity: d("1"),
                unit_price: d("12345678901234.5678"),
                discount: d("0"),
                tax: d("0"),
            },
        ],
        subtotal: None,
        shipping_amount: Some(d("4.99")),
        tax: None,
        discount: None,
        total: Some(d("0.3") + d("0.1") - d("0.1")),
        taxes_included: false,
        financial_status: None,
        notes: Some("Leave at the door".into()),
        source: Provenance::default(),
    }
}

fn json(op: &PlannedOperation) -> serde_json::Value {
    serde_json::from_str(&op.body).unwrap()
}

#[test]
fn write_in_order_maps_every_column() {
    let plan = plan_changeset(&order(), &cfg(), &refs()).unwrap();
    assert_eq!(plan.order_key, "shopify-us.#1001");
    assert_eq!(plan.operations.len(), 3);
    let o = &plan.operations[0];
    assert_eq!(o.method, "PATCH");
    assert_eq!(
        o.path,
        "salesorders(new_externalorderid='shopify-us.%231001')"
    );
    assert_eq!(
        o.body,
        format!(
            concat!(
                r#"{{"name":"shopify-us #1001","pricelevelid@odata.bind":"/pricelevels({})","#,
                r#""transactioncurrencyid@odata.bind":"/transactioncurrencies({})","#,
                r#""customerid_account@odata.bind":"/accounts({})","description":"Leave at the door","#,
                r#""freightamount":4.99,"totalamount":0.3,"shipto_name":"Ann Lee","shipto_line1":"1 Main St","#,
                r#""shipto_city":"Springfield","shipto_postalcode":"01234","shipto_country":"US"}}"#
            ),
            PRICE_LIST, USD, ACCOUNT
        )
    );
    assert!(
        !o.body.contains("new_externalorderid"),
        "key column not repeated"
    );
    let l1 = &plan.operations[1];
    assert_eq!(
        l1.path,
        "salesorderdetails(new_externallineid='shopify-us.%231001.1')"
    );
    assert_eq!(
        l1.body,
        r#"{"salesorderid@odata.bind":"/salesorders(new_externalorderid='shopify-us.%231001')","lineitemnumber":1,"quantity":2,"priceperunit":0.1,"ispriceoverridden":true,"manualdiscountamount":0,"tax":0.2,"isproductoverridden":true,"productdescription":"T-shirt (SKU TS-RED-M)"}"#
    );
    assert_eq!(json(&plan.operations[2])["productdescription"], "Gift wrap");
}

#[test]
fn money_is_exact_decimal_text() {
    let plan = plan_changeset(&order(), &cfg(), &refs()).unwrap();
    // 12345678901234.5678 does not survive f64 (it would print 12345678901234.568).
    assert!(plan.operations[2]
        .body
        .contains(r#""priceperunit":12345678901234.5678,"#));
    assert!(plan.operations[0].body.contains(r#""totalamount":0.3,"#));
    let mut o = order();
    o.lines[0].unit_price = d("-0.50");
    o.lines[0].quantity = d("1.50000");
    let plan = plan_changeset(&o, &cfg(), &refs()).unwrap();
    assert!(plan.operations[1]
        .body
        .contains(r#""quantity":1.5,"priceperunit":-0.5,"#));
    // The body is valid JSON.
    for op in &plan.operations {
        json(op);
    }
}

#[test]
fn too_long_value_names_the_column() {
    let mut o = order();
    o.shipping.as_mut().unwrap().postal_code = Some("12345678901234567890123".into());
    let err = plan_changeset(&o, &cfg(), &refs()).unwrap_err();
    assert_eq!(err.code, "value_too_long");
    assert_eq!(
        err.message,
        "shipto_postalcode: 23 characters, column allows 20 (value \"12345678901234567890123\")"
    );
    let mut o = order();
    o.lines[1].name = "x".repeat(501);
    let err = plan_changeset(&o, &cfg(), &refs()).unwrap_err();
    assert!(
        err.message
            .starts_with("line 2: productdescription: 501 characters, column allows 500"),
        "{}",
        err.message
    );
    let mut o = order();
    o.notes = Some("é".repeat(2000));
    assert!(
        plan_changeset(&o, &cfg(), &refs()).is_ok(),
        "2000 characters fit"
    );
    o.notes = Some("😀".repeat(1001));
    let err = plan_changeset(&o, &cfg(), &refs()).unwrap_err();
    assert!(
        err.message.starts_with("description: 2002 characters"),
        "UTF-16 units: {}",
        err.message
    );
}

#[test]
fn unknown_currency_fails_the_order() {
    let mut o = order();
    o.currency = CurrencyCode::parse("NZD").unwrap();
    let err = plan_changeset(&o, &cfg(), &refs()).unwrap_err();
    assert_eq!(err.code, "unknown_currency");
    assert!(err.message.contains("NZD"));
}

#[test]
fn catalog_products_bind_by_sku_and_unit() {
    let cfg = MappingConfig {
        product_mode: ProductMode::Catalog,
        ..cfg()
    };
    let plan = plan_changeset(&order(), &cfg, &refs()).unwrap();
    let l1 = json(&plan.operations[1]);
    assert_eq!(
        l1["productid@odata.bind"],
        "/products(productnumber='TS-RED-M')"
    );
    assert_eq!(l1["uomid@odata.bind"], format!("/uoms({UNIT})"));
    assert!(l1.get("isproductoverridden").is_none());
    // A line without a SKU stays a write-in.
    assert_eq!(json(&plan.operations[2])["isproductoverridden"], true);
    let mut o = order();
    o.lines[0].sku = Some("A/B".into());
    assert_eq!(
        plan_changeset(&o, &cfg, &refs()).unwrap_err().code,
        "unaddressable_key"
    );
}

#[test]
fn email_customers_upsert_a_contact_first() {
    let cfg = MappingConfig {
        customer_match: CustomerMatch::Email,
        ..cfg()
    };
    let plan = plan_changeset(&order(), &cfg, &refs()).unwrap();
    assert_eq!(plan.operations.len(), 4);
    let c = &plan.operations[0];
    assert_eq!(c.label, "contact");
    assert_eq!(c.path, "contacts(emailaddress1='ann.lee@example.com')");
    assert_eq!(c.body, r#"{"firstname":"Ann Marie","lastname":"Lee"}"#);
    let o = json(&plan.operations[1]);
    assert_eq!(
        o["customerid_contact@odata.bind"],
        "/contacts(emailaddress1='ann.lee@example.com')"
    );
    assert!(o.get("customerid_account@odata.bind").is_none());
    // No e-mail: the default account.
    let mut no_email = order();
    no_email.customer.email = None;
    let plan = plan_changeset(&no_email, &cfg, &refs()).unwrap();
    assert_eq!(plan.operations.len(), 3);
    assert!(json(&plan.operations[0])
        .get("customerid_account@odata.bind")
        .is_some());
    let mut plus = order();
    plus.customer.email = Some("a+b@x.com".into());
    assert_eq!(
        plan_changeset(&plus, &cfg, &refs()).unwrap_err().code,
        "unaddressable_key"
    );
}

#[test]
fn other_refusals() {
    let mut o = order();
    o.lines[1].line_number = 1;
    assert_eq!(
        plan_changeset(&o, &cfg(), &refs()).unwrap_err().code,
        "duplicate_line_number"
    );
    let mut o = order();
    o.lines[0].quantity = d("1.000001");
    let err = plan_changeset(&o, &cfg(), &refs()).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        (
            "value_too_precise",
            "line 1: quantity: 1.000001 has more than 5 decimal places"
        )
    );
    let mut o = order();
    o.lines[0].discount = d("-1");
    assert_eq!(
        plan_changeset(&o, &cfg(), &refs()).unwrap_err().code,
        "invalid_value"
    );
    let mut o = order();
    o.external_id = "x".repeat(300);
    let err = plan_changeset(&o, &cfg(), &refs()).unwrap_err();
    assert!(
        err.message
            .starts_with("name: 311 characters, column allows 300"),
        "{}",
        err.message
    );
}

#[test]
fn quotes_in_ids_are_doubled_in_paths_and_binds() {
    let mut o = order();
    o.external_id = "O'Neil/1".into();
    let plan = plan_changeset(&o, &cfg(), &refs()).unwrap();
    assert_eq!(
        plan.operations[0].path,
        "salesorders(new_externalorderid='shopify-us.O''Neil~2F1')"
    );
    assert_eq!(
        json(&plan.operations[1])["salesorderid@odata.bind"],
        "/salesorders(new_externalorderid='shopify-us.O''Neil~2F1')"
    );
    assert_eq!(json(&plan.operations[0])["name"], "shopify-us O'Neil/1");
}

#[test]
fn lines_an_earlier_version_had_above_the_new_count_are_deleted_by_key() {
    let o = order();
    assert_eq!(o.lines.len(), 2);
    let removals = plan_removed_lines(&o, 4, &cfg());
    let shown: Vec<(&str, &str, &str, &str)> = removals
        .iter()
        .map(|op| {
            (
                op.method.as_str(),
                op.path.as_str(),
                op.body.as_str(),
                op.label.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "DELETE",
                "salesorderdetails(new_externallineid='shopify-us.%231001.3')",
                "",
                "remove line 3"
            ),
            (
                "DELETE",
                "salesorderdetails(new_externallineid='shopify-us.%231001.4')",
                "",
                "remove line 4"
            ),
        ]
    );
    // Nothing to remove when no earlier version had more lines.
    assert!(plan_removed_lines(&o, 2, &cfg()).is_empty());
    assert!(plan_removed_lines(&o, 0, &cfg()).is_empty());
}
