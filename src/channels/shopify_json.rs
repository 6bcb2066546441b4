//! Shopify REST Admin order JSON (channel-formats.md §1.2): `{"orders": [ … ]}` as the list
//! endpoint returns it, `{"order": {…}}` as the single-order endpoint does, or a bare array.
//!
//! The order key is `name` (`#1001`), as in the CSV export, so an order loaded from both
//! stages once. Money is the shop currency (`currency`, `*_price` strings); the presentment
//! amounts of multi-currency shops (`*_set.presentment_money`) are not staged (the canonical
//! order has one currency). Line: `price` is the unit price, `total_discount` (else the sum of
//! `discount_allocations[].amount`) the line discount, the sum of `tax_lines[].price` the line
//! tax. Shipping: `total_shipping_price_set.shop_money.amount`, else the sum of
//! `shipping_lines[].price`. `taxes_included` is the order's own flag.

use super::draft::{non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, Problem};
use super::json_stream::{array, object, scalar, text_at, Envelope};
use crate::model::{Address, Customer, Order};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

pub(crate) static ENVELOPE: Envelope = Envelope {
    arrays: &["orders"],
    singles: &["order"],
    descend: &[],
    expected: "a Shopify REST response: {\"orders\": [...]} or {\"order\": {...}}",
    top_object_is_order: false,
};

pub(crate) const KEY_FIELDS: &[&str] = &["name", "order_number", "id"];

fn address(obj: &Map<String, Value>, key: &str) -> Option<Address> {
    let a = object(obj, key)?;
    let t = |k: &str| fields::text_unquoted(&text_at(a, k));
    let name = t("name")
        .or_else(|| super::draft::full_name(&text_at(a, "first_name"), &text_at(a, "last_name")));
    non_empty(Address {
        name,
        company: t("company"),
        line1: t("address1"),
        line2: t("address2"),
        city: t("city"),
        province: t("province"),
        postal_code: t("zip"),
        country: t("country_code").or_else(|| t("country")),
        phone: t("phone"),
    })
}

fn money_at(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Decimal>, Problem> {
    fields::money_opt(path, &text_at(obj, key), false)
}

fn sum_of(items: &[Value], key: &str, path: &str) -> Result<Decimal, Problem> {
    let mut sum = Decimal::ZERO;
    for (i, v) in items.iter().enumerate() {
        if let Some(o) = v.as_object() {
            sum += money_at(o, key, &format!("{path}[{i}].{key}"))?.unwrap_or_default();
        }
    }
    Ok(sum)
}

fn line(item: &Value, i: usize) -> Result<LineDraft, Problem> {
    let path = |k: &str| format!("line_items[{i}].{k}");
    let Some(item) = item.as_object() else {
        return Err(Problem::new(
            &format!("line_items[{i}]"),
            "bad_json",
            "expected a line item object",
        ));
    };
    let quantity = fields::quantity(&path("quantity"), &text_at(item, "quantity"))?;
    let unit_price = fields::unit_price(&path("price"), &text_at(item, "price"), false)?;
    let discount = match money_at(item, "total_discount", &path("total_discount"))? {
        Some(d) if !d.is_zero() => d,
        _ => sum_of(
            array(item, "discount_allocations"),
            "amount",
            &path("discount_allocations"),
        )?,
    };
    let tax = sum_of(array(item, "tax_lines"), "price", &path("tax_lines"))?;
    let name = text_at(item, "name");
    let name = if name.is_empty() {
        text_at(item, "title")
    } else {
        name
    };
    let (sku, name) = sku_and_name(&path("sku"), &text_at(item, "sku"), &path("name"), &name)?;
    Ok(LineDraft {
        sku,
        name,
        quantity,
        unit_price,
        discount,
        tax,
    })
}

/// Convert one REST order object.
pub(crate) fn order_from_json(obj: &Map<String, Value>, channel: &str) -> Result<Order, Problem> {
    let key = KEY_FIELDS
        .iter()
        .find_map(|k| scalar(obj.get(*k)))
        .ok_or_else(|| Problem::missing("name"))?;
    let created = fields::timestamp("created_at", &text_at(obj, "created_at"), None)?;
    let currency = fields::currency("currency", &text_at(obj, "currency"))?;
    let items = array(obj, "line_items");
    if items.is_empty() {
        return Err(Problem::new(
            "line_items",
            "missing_value",
            "the order has no line_items",
        ));
    }
    let lines = items
        .iter()
        .enumerate()
        .map(|(i, v)| line(v, i))
        .collect::<Result<Vec<_>, _>>()?;
    let shipping_set = object(obj, "total_shipping_price_set")
        .and_then(|s| object(s, "shop_money"))
        .map(|m| money_at(m, "amount", "total_shipping_price_set.shop_money.amount"))
        .transpose()?
        .flatten();
    let shipping_lines = array(obj, "shipping_lines");
    let shipping_amount = match shipping_set {
        Some(s) => Some(s),
        None if !shipping_lines.is_empty() => {
            Some(sum_of(shipping_lines, "price", "shipping_lines")?)
        }
        None => None,
    };
    let billing = address(obj, "billing_address");
    let customer_obj = object(obj, "customer");
    let customer = Customer {
        email: fields::text(&text_at(obj, "email"))
            .or_else(|| fields::text(&text_at(obj, "contact_email"))),
        name: billing.as_ref().and_then(|a| a.name.clone()).or_else(|| {
            customer_obj.and_then(|c| {
                super::draft::full_name(&text_at(c, "first_name"), &text_at(c, "last_name"))
            })
        }),
        phone: fields::text_unquoted(&text_at(obj, "phone"))
            .or_else(|| billing.as_ref().and_then(|a| a.phone.clone())),
    };
    let head = OrderHead {
        created,
        currency,
        customer,
        billing,
        shipping: address(obj, "shipping_address"),
        subtotal: money_at(obj, "subtotal_price", "subtotal_price")?,
        shipping_amount,
        tax: money_at(obj, "total_tax", "total_tax")?,
        discount: money_at(obj, "total_discounts", "total_discounts")?,
        total: money_at(obj, "total_price", "total_price")?,
        taxes_included: obj
            .get("taxes_included")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        financial_status: scalar(obj.get("financial_status")),
        notes: scalar(obj.get("note")),
    };
    Ok(head.into_order(channel, &key, lines))
}

#[cfg(test)]
#[path = "shopify_json_tests.rs"]
mod tests;
