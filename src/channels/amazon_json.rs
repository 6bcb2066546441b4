//! Amazon SP-API Orders JSON (channel-formats.md §3.5): a `getOrders` response
//! (`{"payload": {"Orders": [ … ]}}`, or `{"Orders": [ … ]}`, or a bare array) in which each
//! order carries its `getOrderItems` result as an `OrderItems` array — the way most tools save
//! the two calls together. (`getOrders` alone has no items; an order without `OrderItems` is
//! rejected with `missing_value`, naming the key to add.)
//!
//! Same rules as the All Orders report: `ItemPrice` is the line's extended price (unit ×
//! quantity, must divide exactly); `PromotionDiscount` the line discount; `ItemTax` the line
//! tax; shipping, gift wrap and their taxes and discounts are summed into the order. An item
//! without `ItemPrice` (a `Pending` order) is `price_unavailable`; a `Canceled` order whose
//! items have quantity 0 or no price is `cancelled_order`. `OrderTotal` is the total when
//! present. Every amount must be in one currency (`currency_mismatch`). Prices are
//! tax-inclusive on the VAT/GST marketplaces listed in the `amazon` adapter (`SalesChannel`).

use super::amazon::VAT_INCLUSIVE_CHANNELS;
use super::draft::{non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, Problem};
use super::json_stream::{object, scalar, text_at, Envelope};
use crate::model::{Address, CurrencyCode, Customer, Order};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

pub(crate) static ENVELOPE: Envelope = Envelope {
    arrays: &["Orders"],
    singles: &[],
    descend: &["payload"],
    expected: "a getOrders response {\"payload\": {\"Orders\": [...]}} whose orders carry \
               their items in \"OrderItems\"",
    top_object_is_order: false,
};

pub(crate) const KEY_FIELDS: &[&str] = &["AmazonOrderId"];

/// A `Money` object `{CurrencyCode, Amount}`: `None` when absent.
fn money(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    currency: &mut Option<(CurrencyCode, String)>,
) -> Result<Option<Decimal>, Problem> {
    let Some(m) = object(obj, key) else {
        return Ok(None);
    };
    let code = text_at(m, "CurrencyCode");
    if !code.is_empty() {
        let c = fields::currency(&format!("{path}.CurrencyCode"), &code)?;
        match currency {
            Some((first, at)) if *first != c => {
                return Err(Problem::new(
                    &format!("{path}.CurrencyCode"),
                    "currency_mismatch",
                    format!("amounts of one order are in different currencies ({first} in {at}, {c} in {path})"),
                ))
            }
            Some(_) => {}
            None => *currency = Some((c, path.to_string())),
        }
    }
    fields::money_opt(&format!("{path}.Amount"), &text_at(m, "Amount"), false)
}

#[derive(Default)]
struct Sums {
    items: Decimal,
    promos: Decimal,
    shipping: Decimal,
    ship_promos: Decimal,
    tax: Decimal,
}

/// Convert one order object with its `OrderItems`.
pub(crate) fn order_from_json(obj: &Map<String, Value>, channel: &str) -> Result<Order, Problem> {
    let key = scalar(obj.get("AmazonOrderId")).ok_or_else(|| Problem::missing("AmazonOrderId"))?;
    let created = fields::timestamp("PurchaseDate", &text_at(obj, "PurchaseDate"), None)?;
    let status = text_at(obj, "OrderStatus");
    let Some(items) = obj
        .get("OrderItems")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return Err(Problem::new(
            "OrderItems",
            "missing_value",
            "the order has no \"OrderItems\"; save each order's getOrderItems result in it",
        ));
    };
    let mut currency = None;
    let total = money(obj, "OrderTotal", "OrderTotal", &mut currency)?;
    let mut sums = Sums::default();
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = |k: &str| format!("OrderItems[{i}].{k}");
        let Some(item) = item.as_object() else {
            return Err(Problem::new(
                &format!("OrderItems[{i}]"),
                "bad_json",
                "expected an order item object",
            ));
        };
        let qty_raw = text_at(item, "QuantityOrdered");
        let price = money(item, "ItemPrice", &path("ItemPrice"), &mut currency)?;
        if status.eq_ignore_ascii_case("canceled") && (qty_raw == "0" || price.is_none()) {
            return Err(Problem::new(
                "OrderStatus",
                "cancelled_order",
                format!(
                    "order status is {status:?} with QuantityOrdered {qty_raw:?}; nothing to load"
                ),
            ));
        }
        let quantity = fields::quantity(&path("QuantityOrdered"), &qty_raw)?;
        let Some(extended) = price else {
            return Err(Problem::new(
                &path("ItemPrice"),
                "price_unavailable",
                format!("no ItemPrice (order status {status:?}); an unknown price is not zero"),
            ));
        };
        let unit_price = fields::unit_from_extended(&path("ItemPrice"), extended, quantity)?;
        let mut m =
            |k: &str| money(item, k, &path(k), &mut currency).map(|v| v.unwrap_or_default());
        let item_tax = m("ItemTax")?;
        let promo = m("PromotionDiscount")?.abs();
        sums.shipping += m("ShippingPrice")? + m("GiftWrapPrice")?;
        sums.tax += item_tax + m("ShippingTax")? + m("GiftWrapTax")?;
        sums.ship_promos += m("ShippingDiscount")?.abs();
        sums.items += extended;
        sums.promos += promo;
        let (sku, name) = sku_and_name(
            &path("SellerSKU"),
            &text_at(item, "SellerSKU"),
            &path("Title"),
            &text_at(item, "Title"),
        )?;
        lines.push(LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount: promo,
            tax: item_tax,
        });
    }
    let Some((currency, _)) = currency else {
        return Err(Problem::missing("OrderTotal.CurrencyCode"));
    };
    let sales_channel = text_at(obj, "SalesChannel").to_ascii_lowercase();
    let taxes_included = VAT_INCLUSIVE_CHANNELS.contains(&sales_channel.as_str());
    let mut computed = sums.items - sums.promos + sums.shipping - sums.ship_promos;
    if !taxes_included {
        computed += sums.tax;
    }
    let a = object(obj, "ShippingAddress");
    let buyer = object(obj, "BuyerInfo");
    let t = |o: Option<&Map<String, Value>>, k: &str| o.and_then(|o| fields::text(&text_at(o, k)));
    let line2 = [t(a, "AddressLine2"), t(a, "AddressLine3")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let head = OrderHead {
        created,
        currency,
        customer: Customer {
            email: t(buyer, "BuyerEmail"),
            name: t(buyer, "BuyerName"),
            phone: t(a, "Phone"),
        },
        billing: None,
        shipping: a.and_then(|_| {
            non_empty(Address {
                name: t(a, "Name"),
                company: t(a, "CompanyName"),
                line1: t(a, "AddressLine1"),
                line2: fields::text(&line2),
                city: t(a, "City"),
                province: t(a, "StateOrRegion"),
                postal_code: t(a, "PostalCode"),
                country: t(a, "CountryCode"),
                phone: t(a, "Phone"),
            })
        }),
        subtotal: Some(sums.items - sums.promos),
        shipping_amount: Some(sums.shipping),
        tax: Some(sums.tax),
        discount: Some(sums.promos + sums.ship_promos),
        total: Some(total.unwrap_or(computed)),
        taxes_included,
        financial_status: fields::text(&status),
        notes: None,
    };
    Ok(head.into_order(channel, &key, lines))
}

#[cfg(test)]
#[path = "amazon_json_tests.rs"]
mod tests;
