//! Magento / Adobe Commerce REST `GET /V1/orders?searchCriteria…` result (channel-formats.md
//! §7): `{"items": [ … ], "search_criteria": …, "total_count": …}` (or a bare array).
//!
//! Order key `increment_id` (zero-padded text, kept as is). `created_at` has no zone; Magento
//! stores and returns UTC, so it is read as UTC whatever the channel's time zone. Money is in
//! the order currency (`order_currency_code`, `grand_total`, …), not the base currency.
//! Items: a configurable product appears twice, a parent (`product_type` `configurable`,
//! carrying price and quantity) and its child (`parent_item_id` = the parent's `item_id`, price
//! 0); any item whose parent is in the same order is skipped, so each product is counted once
//! (bundles are counted by their parent line too). Line: `price` unit price, `qty_ordered`,
//! `discount_amount`, `tax_amount`. `discount_amount` on the order is negative in Magento and
//! staged as a positive amount. `taxes_included` is true when the tax is > 0 and
//! subtotal − discount + shipping = grand total.

use super::draft::{full_name, non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, Problem};
use super::json_stream::{array, object, scalar, text_at, Envelope};
use crate::model::{Address, Customer, Order};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::HashSet;

pub(crate) static ENVELOPE: Envelope = Envelope {
    arrays: &["items"],
    singles: &[],
    descend: &[],
    expected: "a GET /V1/orders search result {\"items\": [...], \"total_count\": ...}",
    top_object_is_order: false,
};

pub(crate) const KEY_FIELDS: &[&str] = &["increment_id", "entity_id"];

fn address(a: Option<&Map<String, Value>>) -> Option<Address> {
    let a = a?;
    let t = |k: &str| fields::text_unquoted(&text_at(a, k));
    let street: Vec<String> = array(a, "street")
        .iter()
        .filter_map(|s| scalar(Some(s)))
        .collect();
    non_empty(Address {
        name: full_name(&text_at(a, "firstname"), &text_at(a, "lastname")),
        company: t("company"),
        line1: street.first().cloned(),
        line2: fields::text(&street.get(1..).map(|s| s.join(", ")).unwrap_or_default()),
        city: t("city"),
        province: t("region"),
        postal_code: t("postcode"),
        country: t("country_id"),
        phone: t("telephone"),
    })
}

fn money_at(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Decimal>, Problem> {
    fields::money_opt(path, &text_at(obj, key), false)
}

/// The shipping address of `extension_attributes.shipping_assignments[0].shipping.address`.
fn shipping_address(obj: &Map<String, Value>) -> Option<&Map<String, Value>> {
    let ext = object(obj, "extension_attributes")?;
    let first = array(ext, "shipping_assignments").first()?.as_object()?;
    object(object(first, "shipping")?, "address")
}

/// Convert one order of the search result.
pub(crate) fn order_from_json(obj: &Map<String, Value>, channel: &str) -> Result<Order, Problem> {
    let key = KEY_FIELDS
        .iter()
        .find_map(|k| scalar(obj.get(*k)))
        .ok_or_else(|| Problem::missing("increment_id"))?;
    let created = fields::timestamp("created_at", &text_at(obj, "created_at"), None)?;
    let currency = fields::currency("order_currency_code", &text_at(obj, "order_currency_code"))?;
    let items = array(obj, "items");
    let ids: HashSet<String> = items
        .iter()
        .filter_map(|i| i.as_object())
        .filter_map(|i| scalar(i.get("item_id")))
        .collect();
    let mut lines = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = |k: &str| format!("items[{i}].{k}");
        let Some(item) = item.as_object() else {
            return Err(Problem::new(
                &format!("items[{i}]"),
                "bad_json",
                "expected an order item object",
            ));
        };
        let parent = scalar(item.get("parent_item_id"))
            .or_else(|| object(item, "parent_item").and_then(|p| scalar(p.get("item_id"))));
        if parent.is_some_and(|p| ids.contains(&p)) {
            continue;
        }
        let quantity = fields::quantity(&path("qty_ordered"), &text_at(item, "qty_ordered"))?;
        let unit_price = fields::unit_price(&path("price"), &text_at(item, "price"), false)?;
        let (sku, name) = sku_and_name(
            &path("sku"),
            &text_at(item, "sku"),
            &path("name"),
            &text_at(item, "name"),
        )?;
        lines.push(LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount: money_at(item, "discount_amount", &path("discount_amount"))?
                .unwrap_or_default()
                .abs(),
            tax: money_at(item, "tax_amount", &path("tax_amount"))?.unwrap_or_default(),
        });
    }
    if lines.is_empty() {
        return Err(Problem::new(
            "items",
            "missing_value",
            "the order has no items",
        ));
    }
    let billing = address(object(obj, "billing_address"));
    let subtotal = money_at(obj, "subtotal", "subtotal")?;
    let shipping_amount = money_at(obj, "shipping_amount", "shipping_amount")?;
    let tax = money_at(obj, "tax_amount", "tax_amount")?;
    let discount = money_at(obj, "discount_amount", "discount_amount")?.map(|d| d.abs());
    let total = money_at(obj, "grand_total", "grand_total")?;
    let taxes_included = match (subtotal, tax, total) {
        (Some(s), Some(t), Some(g)) if t > Decimal::ZERO => {
            s - discount.unwrap_or_default() + shipping_amount.unwrap_or_default() == g
        }
        _ => false,
    };
    let head = OrderHead {
        created,
        currency,
        customer: Customer {
            email: fields::text(&text_at(obj, "customer_email")),
            name: full_name(
                &text_at(obj, "customer_firstname"),
                &text_at(obj, "customer_lastname"),
            )
            .or_else(|| billing.as_ref().and_then(|a| a.name.clone())),
            phone: billing.as_ref().and_then(|a| a.phone.clone()),
        },
        billing,
        shipping: address(shipping_address(obj)),
        subtotal,
        shipping_amount,
        tax,
        discount,
        total,
        taxes_included,
        financial_status: scalar(obj.get("status")),
        notes: scalar(obj.get("customer_note")),
    };
    Ok(head.into_order(channel, &key, lines))
}

#[cfg(test)]
#[path = "magento_tests.rs"]
mod tests;
