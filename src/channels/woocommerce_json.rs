//! WooCommerce REST API v3 orders as JSON (`/wp-json/wc/v3/orders`): an array of orders, or
//! one order object.
//!
//! The array is read element by element (a small scanner finds where each order ends; serde
//! parses that one order), so memory holds one order, not the file. Each order object is one
//! record. Any problem in an order (including in one of its line items) rejects that record,
//! with `column` set to the JSON path (`line_items[1].quantity`).
//!
//! Dates: `date_created_gmt` (UTC without offset) when present, else `date_created` in the
//! channel's time zone. Money is a string (`"29.35"`); numbers are accepted too and read from
//! their decimal text, never through a float. The unit price is `subtotal / quantity` (the line
//! price before discounts, exact), the line discount `subtotal − total`, the line tax
//! `total_tax`. `prices_include_tax` sets `taxes_included`.

use super::draft::{full_name, non_empty, LineDraft, OrderHead};
use super::fields::{self, Problem};
use super::json_stream::{scalar, text_at, Envelope};
use crate::model::{Address, Customer, Order};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

/// The array of orders, or one order object at the top level.
pub(crate) static ENVELOPE: Envelope = Envelope {
    arrays: &[],
    singles: &[],
    descend: &[],
    expected: "a WooCommerce REST v3 order array ([{...}]) or one order object ({...})",
    top_object_is_order: true,
};

/// Fields that name the order in a rejection message.
pub(crate) const KEY_FIELDS: &[&str] = &["number", "id"];

fn address(obj: &Map<String, Value>, key: &str) -> Option<Address> {
    let a = obj.get(key)?.as_object()?;
    let t = |k: &str| fields::text(&text_at(a, k));
    non_empty(Address {
        name: full_name(&text_at(a, "first_name"), &text_at(a, "last_name")),
        company: t("company"),
        line1: t("address_1"),
        line2: t("address_2"),
        city: t("city"),
        province: t("state"),
        postal_code: t("postcode"),
        country: t("country"),
        phone: t("phone"),
    })
}

fn money_at(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Decimal>, Problem> {
    fields::money_opt(path, &text_at(obj, key), false)
}

fn line(item: &Value, i: usize) -> Result<(LineDraft, Decimal), Problem> {
    let path = |k: &str| format!("line_items[{i}].{k}");
    let Some(item) = item.as_object() else {
        return Err(Problem::new(
            &format!("line_items[{i}]"),
            "bad_json",
            "expected a line item object",
        ));
    };
    let quantity = fields::quantity(&path("quantity"), &text_at(item, "quantity"))?;
    let subtotal = fields::unit_price(&path("subtotal"), &text_at(item, "subtotal"), false)?;
    let unit_price = fields::unit_from_extended(&path("subtotal"), subtotal, quantity)?;
    let total = money_at(item, "total", &path("total"))?.unwrap_or(subtotal);
    let tax = money_at(item, "total_tax", &path("total_tax"))?.unwrap_or_default();
    let (sku, name) = super::draft::sku_and_name(
        &path("sku"),
        &text_at(item, "sku"),
        &path("name"),
        &text_at(item, "name"),
    )?;
    Ok((
        LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount: subtotal - total,
            tax,
        },
        total,
    ))
}

/// Convert one REST v3 order object.
pub(crate) fn order_from_json(
    obj: &Map<String, Value>,
    channel: &str,
    zone: Option<chrono_tz::Tz>,
) -> Result<Order, Problem> {
    let key = scalar(obj.get("number"))
        .or_else(|| scalar(obj.get("id")))
        .ok_or_else(|| Problem::missing("number"))?;
    let created = match scalar(obj.get("date_created_gmt")) {
        Some(gmt) => fields::timestamp("date_created_gmt", &gmt, None)?,
        None => fields::timestamp("date_created", &text_at(obj, "date_created"), zone)?,
    };
    let currency = fields::currency("currency", &text_at(obj, "currency"))?;
    let items = match obj.get("line_items") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(Problem::new(
                "line_items",
                "missing_value",
                "the order has no line_items",
            ))
        }
    };
    let mut lines = Vec::with_capacity(items.len());
    let mut items_total = Decimal::ZERO;
    for (i, item) in items.iter().enumerate() {
        let (l, total) = line(item, i)?;
        items_total += total;
        lines.push(l);
    }
    let billing = address(obj, "billing");
    let billing_obj = obj.get("billing").and_then(Value::as_object);
    let tax = money_at(obj, "total_tax", "total_tax")?;
    let head = OrderHead {
        created,
        currency,
        customer: Customer {
            email: billing_obj.and_then(|b| scalar(b.get("email"))),
            name: billing.as_ref().and_then(|a| a.name.clone()),
            phone: billing.as_ref().and_then(|a| a.phone.clone()),
        },
        billing,
        shipping: address(obj, "shipping"),
        subtotal: Some(items_total),
        shipping_amount: money_at(obj, "shipping_total", "shipping_total")?,
        tax,
        discount: money_at(obj, "discount_total", "discount_total")?,
        total: money_at(obj, "total", "total")?,
        taxes_included: obj
            .get("prices_include_tax")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        financial_status: scalar(obj.get("status")),
        notes: scalar(obj.get("customer_note")),
    };
    Ok(head.into_order(channel, &key, lines))
}

#[cfg(test)]
#[path = "woocommerce_json_tests.rs"]
mod tests;
