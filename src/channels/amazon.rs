//! Amazon Seller Central order reports: tab-separated, never quoted (product names contain
//! bare `"`), one row per order item, grouped by order id.
//!
//! - **All Orders** (`amazon-order-id…`): order fields repeat on every row. `item-price` is the
//!   row's extended price (quantity × unit), so the unit price is `item-price / quantity`, and
//!   must divide exactly. Line discount = |`item-promotion-discount`|, line tax = `item-tax`.
//!   Order amounts are sums over the rows. Prices are taken as tax-inclusive on marketplaces
//!   where consumer prices include VAT/GST by law (`sales-channel` Amazon.co.uk, .de, .fr, .it,
//!   .es, .nl, .se, .pl, .com.be, .ie, .com.au, .co.jp); elsewhere tax-exclusive
//!   (total = items + shipping + gift wrap + taxes − promotions). An order whose rows have an
//!   empty `item-price` (pending) is rejected (`price_unavailable`): unknown money is not zero.
//!   Cancelled rows with quantity 0 are rejected as `cancelled_order`: there is nothing to load.
//! - **Unshipped Orders** (`order-id…`): the report has no prices at all. Its rows are read
//!   and checked (so ragged or broken rows are reported precisely), but every order is then
//!   rejected with `price_unavailable`: staging it would either invent a zero price or, when the
//!   same order also arrives in an All Orders file, overwrite the priced order with an unpriced
//!   one. Load All Orders (or the Orders API) for these orders.
//!
//! Field counts: a row with a different number of fields than the header is accepted when the
//! difference is only trailing empty fields (the trailing tab of US/CA/UK headers and rows);
//! otherwise it is rejected (`ragged_row`) naming both counts. Nothing is guessed.

use super::draft::{non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, money_opt, text, text_unquoted, Problem};
use super::group::RowAdapter;
use super::records::Record;
use crate::model::{Address, Customer, Order};
use rust_decimal::Decimal;

pub(crate) const REQUIRED_ALL_ORDERS: &[&[&str]] = &[
    &["amazon-order-id"],
    &["purchase-date"],
    &["sku"],
    &["product-name"],
    &["quantity"],
    &["currency"],
    &["item-price"],
];

pub(crate) const REQUIRED_UNSHIPPED: &[&[&str]] = &[
    &["order-id"],
    &["purchase-date"],
    &["sku"],
    &["product-name"],
    &["quantity-purchased"],
];

pub(crate) const VAT_INCLUSIVE_CHANNELS: &[&str] = &[
    "amazon.co.uk",
    "amazon.de",
    "amazon.fr",
    "amazon.it",
    "amazon.es",
    "amazon.nl",
    "amazon.se",
    "amazon.pl",
    "amazon.com.be",
    "amazon.ie",
    "amazon.com.au",
    "amazon.co.jp",
];

pub(crate) struct Amazon {
    pub channel: String,
    pub unshipped: bool,
}

/// Per-row amounts summed into the order.
pub(crate) struct AmazonRow {
    /// `None` for an item cancelled within an order that was not (quantity 0, no price): the
    /// row is part of the order but adds no line and no amount.
    line: Option<LineDraft>,
    currency: String,
    item_price: Decimal,
    item_tax: Decimal,
    shipping: Decimal,
    shipping_tax: Decimal,
    gift_wrap: Decimal,
    gift_wrap_tax: Decimal,
    item_promotion: Decimal,
    ship_promotion: Decimal,
}

impl AmazonRow {
    /// A row with no line and no amounts yet, in the row's currency: what a cancelled item
    /// contributes, and where every other row starts.
    fn without_line(rec: &Record) -> Self {
        AmazonRow {
            line: None,
            currency: rec.get("currency").to_string(),
            item_price: Decimal::ZERO,
            item_tax: Decimal::ZERO,
            shipping: Decimal::ZERO,
            shipping_tax: Decimal::ZERO,
            gift_wrap: Decimal::ZERO,
            gift_wrap_tax: Decimal::ZERO,
            item_promotion: Decimal::ZERO,
            ship_promotion: Decimal::ZERO,
        }
    }
}

fn money0(rec: &Record, column: &'static str) -> Result<Decimal, Problem> {
    fields::money_or_zero(column, rec.get(column), false)
}

/// Accept a field-count difference only when it is made of trailing empty fields.
pub(crate) fn check_field_count(rec: &Record) -> Result<(), Problem> {
    let expected = rec.columns.len();
    let found = rec.fields.len();
    let unnamed_value = rec
        .columns
        .names
        .iter()
        .zip(rec.fields.iter())
        .find(|(n, v)| n.is_empty() && !v.trim().is_empty());
    if let Some((_, v)) = unnamed_value {
        return Err(Problem::new(
            "",
            "ragged_row",
            format!("value {v:?} under an unnamed header column; fields may be shifted"),
        ));
    }
    if found == expected {
        return Ok(());
    }
    let only_trailing_empty = if found > expected {
        rec.fields
            .iter()
            .skip(expected)
            .all(|f| f.trim().is_empty())
    } else {
        rec.columns.names[found..].iter().all(|n| n.is_empty())
    };
    if only_trailing_empty {
        return Ok(());
    }
    Err(Problem::new(
        "",
        "ragged_row",
        format!(
            "row has {found} tab-separated fields but the header has {expected}; fields cannot \
             be matched to columns safely"
        ),
    ))
}

impl RowAdapter for Amazon {
    type Head = OrderHead;
    type Row = AmazonRow;

    fn key_column(&self) -> &str {
        if self.unshipped {
            "order-id"
        } else {
            "amazon-order-id"
        }
    }

    fn check_shape(&self, rec: &Record) -> Result<(), Problem> {
        check_field_count(rec)
    }

    fn head(&self, rec: &Record) -> Result<OrderHead, Problem> {
        let created = fields::timestamp("purchase-date", rec.get("purchase-date"), None)?;
        let shipping = non_empty(Address {
            name: text(rec.get("recipient-name")),
            company: None,
            line1: text(rec.get("ship-address-1")),
            line2: text(&join_nonempty(&[
                rec.get("ship-address-2"),
                rec.get("ship-address-3"),
            ])),
            city: text(rec.get("ship-city")),
            province: text(rec.get("ship-state")),
            postal_code: text_unquoted(rec.get("ship-postal-code")),
            country: text(rec.get("ship-country")),
            phone: None,
        });
        let customer = Customer {
            email: text(rec.get("buyer-email")),
            name: text(rec.get("buyer-name")),
            phone: text(rec.get("buyer-phone-number")),
        };
        // The Unshipped report has no currency column; its orders are always rejected in
        // `build` (no prices), so the placeholder below never reaches staging.
        let currency = if self.unshipped {
            fields::currency("currency", "USD")?
        } else {
            fields::currency("currency", rec.get("currency"))?
        };
        let sales_channel = rec.get("sales-channel").to_ascii_lowercase();
        Ok(OrderHead {
            created,
            currency,
            customer,
            billing: None,
            shipping,
            subtotal: None,
            shipping_amount: None,
            tax: None,
            discount: None,
            total: None,
            taxes_included: VAT_INCLUSIVE_CHANNELS.contains(&sales_channel.as_str()),
            financial_status: text(rec.get("order-status")),
            notes: None,
        })
    }

    fn row(&self, rec: &Record) -> Result<AmazonRow, Problem> {
        let qty_col = if self.unshipped {
            "quantity-purchased"
        } else {
            "quantity"
        };
        let status = rec.get("order-status");
        let qty_raw = rec.get(qty_col);
        if status.eq_ignore_ascii_case("cancelled")
            && (qty_raw == "0" || rec.get("item-price").is_empty())
        {
            return Err(Problem::new(
                "order-status",
                "cancelled_order",
                format!(
                    "order status is {status:?} with {qty_col} {qty_raw:?} and no price; \
                     nothing to load"
                ),
            ));
        }
        if rec.get("item-status").eq_ignore_ascii_case("cancelled")
            && (qty_raw == "0" || qty_raw.is_empty())
            && rec.get("item-price").is_empty()
        {
            return Ok(AmazonRow::without_line(rec));
        }
        let quantity = fields::quantity(qty_col, qty_raw)?;
        let (sku, name) = sku_and_name(
            "sku",
            rec.get("sku"),
            "product-name",
            rec.get("product-name"),
        )?;
        let mut row = AmazonRow::without_line(rec);
        let mut line = LineDraft {
            sku,
            name,
            quantity,
            unit_price: Decimal::ZERO,
            discount: Decimal::ZERO,
            tax: Decimal::ZERO,
        };
        if self.unshipped {
            row.line = Some(line);
            return Ok(row);
        }
        let item_price =
            money_opt("item-price", rec.get("item-price"), false)?.ok_or_else(|| {
                Problem::new(
                    "item-price",
                    "price_unavailable",
                    "\"item-price\" is empty (pending order?); an unknown price is not zero",
                )
            })?;
        if item_price.is_sign_negative() && !item_price.is_zero() {
            return Err(Problem::new(
                "item-price",
                "bad_decimal",
                format!("\"item-price\" is {item_price}; expected zero or more"),
            ));
        }
        line.unit_price = fields::unit_from_extended("item-price", item_price, quantity)?;
        row.item_price = item_price;
        row.item_tax = money0(rec, "item-tax")?;
        row.shipping = money0(rec, "shipping-price")?;
        row.shipping_tax = money0(rec, "shipping-tax")?;
        row.gift_wrap = money0(rec, "gift-wrap-price")?;
        row.gift_wrap_tax = money0(rec, "gift-wrap-tax")?;
        row.item_promotion = money0(rec, "item-promotion-discount")?.abs();
        row.ship_promotion = money0(rec, "ship-promotion-discount")?.abs();
        line.discount = row.item_promotion;
        line.tax = row.item_tax;
        row.line = Some(line);
        Ok(row)
    }

    /// The order's amounts are sums over its rows.
    fn repeats(&self) -> crate::model::Repeats {
        crate::model::Repeats::MoreLinesAndAmounts
    }

    fn build(&self, key: &str, head: OrderHead, rows: Vec<AmazonRow>) -> Result<Order, Problem> {
        if self.unshipped {
            return Err(Problem::new(
                "",
                "price_unavailable",
                "an Amazon Unshipped Orders report has no prices; the order is loaded from the \
                 All Orders report (or the Orders API) instead",
            ));
        }
        let mut h = head;
        if let Some(r) = rows
            .iter()
            .find(|r| r.line.is_some() && !r.currency.eq_ignore_ascii_case(h.currency.as_str()))
        {
            return Err(Problem::new(
                "currency",
                "currency_mismatch",
                format!(
                    "rows of one order have different currencies ({} and {:?})",
                    h.currency, r.currency
                ),
            ));
        }
        let sum = |f: fn(&AmazonRow) -> Decimal| rows.iter().map(f).sum::<Decimal>();
        let items = sum(|r| r.item_price);
        let item_promos = sum(|r| r.item_promotion);
        let shipping = sum(|r| r.shipping);
        let gift_wrap = sum(|r| r.gift_wrap);
        let ship_promos = sum(|r| r.ship_promotion);
        let tax = sum(|r| r.item_tax + r.shipping_tax + r.gift_wrap_tax);
        let mut total = items - item_promos + shipping + gift_wrap - ship_promos;
        if !h.taxes_included {
            total += tax;
        }
        h.subtotal = Some(items - item_promos);
        h.shipping_amount = Some(shipping + gift_wrap);
        h.tax = Some(tax);
        h.discount = Some(item_promos + ship_promos);
        h.total = Some(total);
        let lines: Vec<LineDraft> = rows.into_iter().filter_map(|r| r.line).collect();
        if lines.is_empty() {
            return Err(Problem::new(
                "item-status",
                super::group::NOTHING_TO_LOAD,
                "every item in these rows of the order is cancelled (quantity 0, no price); \
                 nothing to load from them",
            ));
        }
        Ok(h.into_order(&self.channel, key, lines))
    }
}

fn join_nonempty(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "amazon_tests.rs"]
mod tests;
