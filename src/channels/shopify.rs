//! Shopify admin "Export orders" CSV (all column-set variants: 73, 75, 78, 79 columns).
//!
//! One row per line item. The order's first row carries the order-level columns (`Currency`,
//! totals, addresses, `Financial Status`, ...); continuation rows fill only `Name`, `Email`,
//! `Created at`, the `Lineitem …` columns and maybe `Vendor`/`Phone`, so order-level fields
//! always come from the first row. Columns are mapped by header name; unknown columns are
//! ignored.
//!
//! Tax-inclusive rule: `taxes_included` is true when `Taxes` > 0 and
//! `Subtotal + Shipping (+ Duties) == Total` exactly (VAT shops: the tax is inside the prices);
//! otherwise false (tax-exclusive shops have `Total = Subtotal + Shipping + Taxes`).

use super::draft::{non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, money_opt, text, text_unquoted, Problem};
use super::group::RowAdapter;
use super::records::Record;
use crate::model::{Address, Customer, Order};
use rust_decimal::Decimal;

/// Columns without which a Shopify file cannot be read.
pub(crate) const REQUIRED: &[&[&str]] = &[
    &["Name"],
    &["Created at"],
    &["Currency"],
    &["Lineitem quantity"],
    &["Lineitem name"],
    &["Lineitem price"],
];

pub(crate) struct Shopify {
    pub channel: String,
    pub zone: Option<chrono_tz::Tz>,
}

/// The column names of one of the two address blocks, spelled out once (building them per row
/// with `format!` was ~8 % of an ingest's CPU).
struct AddressColumns {
    name: &'static str,
    company: &'static str,
    address1: &'static str,
    street: &'static str,
    address2: &'static str,
    city: &'static str,
    province: &'static str,
    zip: &'static str,
    country: &'static str,
    phone: &'static str,
}

const BILLING: AddressColumns = AddressColumns {
    name: "Billing Name",
    company: "Billing Company",
    address1: "Billing Address1",
    street: "Billing Street",
    address2: "Billing Address2",
    city: "Billing City",
    province: "Billing Province",
    zip: "Billing Zip",
    country: "Billing Country",
    phone: "Billing Phone",
};

const SHIPPING: AddressColumns = AddressColumns {
    name: "Shipping Name",
    company: "Shipping Company",
    address1: "Shipping Address1",
    street: "Shipping Street",
    address2: "Shipping Address2",
    city: "Shipping City",
    province: "Shipping Province",
    zip: "Shipping Zip",
    country: "Shipping Country",
    phone: "Shipping Phone",
};

fn address(rec: &Record, c: &AddressColumns) -> Option<Address> {
    non_empty(Address {
        name: text(rec.get(c.name)),
        company: text_unquoted(rec.get(c.company)),
        line1: text_unquoted(rec.get(c.address1)).or_else(|| text_unquoted(rec.get(c.street))),
        line2: text_unquoted(rec.get(c.address2)),
        city: text(rec.get(c.city)),
        province: text(rec.get(c.province)),
        postal_code: text_unquoted(rec.get(c.zip)),
        country: text(rec.get(c.country)),
        phone: text_unquoted(rec.get(c.phone)),
    })
}

/// A row's line and its `Currency` cell (empty on continuation rows).
pub(crate) struct ShopifyRow {
    line: LineDraft,
    currency: String,
}

impl RowAdapter for Shopify {
    type Head = OrderHead;
    type Row = ShopifyRow;

    fn key_column(&self) -> &str {
        "Name"
    }

    fn head(&self, rec: &Record) -> Result<OrderHead, Problem> {
        if rec.get("Currency").is_empty() {
            return Err(Problem::new(
                "Currency",
                "missing_value",
                "the order's first row has no \"Currency\" (a continuation row whose first \
                 row is missing or elsewhere in the file?)",
            ));
        }
        let currency = fields::currency("Currency", rec.get("Currency"))?;
        let created = fields::timestamp("Created at", rec.get("Created at"), self.zone)?;
        let m = |c: &'static str| money_opt(c, rec.get(c), false);
        let subtotal = m("Subtotal")?;
        let shipping_amount = m("Shipping")?;
        let tax = m("Taxes")?;
        let total = m("Total")?;
        let duties = m("Duties")?;
        let billing = address(rec, &BILLING);
        let shipping = address(rec, &SHIPPING);
        let taxes_included = taxes_included(subtotal, shipping_amount, duties, tax, total);
        let customer = Customer {
            email: text(rec.get("Email")),
            name: billing
                .as_ref()
                .and_then(|a| a.name.clone())
                .or_else(|| shipping.as_ref().and_then(|a| a.name.clone())),
            phone: text_unquoted(rec.get("Phone"))
                .or_else(|| billing.as_ref().and_then(|a| a.phone.clone())),
        };
        Ok(OrderHead {
            created,
            currency,
            customer,
            billing,
            shipping,
            subtotal,
            shipping_amount,
            tax,
            discount: m("Discount Amount")?,
            total,
            taxes_included,
            financial_status: text(rec.get("Financial Status")),
            notes: text(rec.get("Notes")),
        })
    }

    fn row(&self, rec: &Record) -> Result<ShopifyRow, Problem> {
        let quantity = fields::quantity("Lineitem quantity", rec.get("Lineitem quantity"))?;
        let unit_price = fields::unit_price("Lineitem price", rec.get("Lineitem price"), false)?;
        let discount =
            fields::money_or_zero("Lineitem discount", rec.get("Lineitem discount"), false)?;
        let (sku, name) = sku_and_name(
            "Lineitem sku",
            fields::strip_apostrophe(rec.get("Lineitem sku")),
            "Lineitem name",
            rec.get("Lineitem name"),
        )?;
        Ok(ShopifyRow {
            line: LineDraft {
                sku,
                name,
                quantity,
                unit_price,
                discount,
                tax: Decimal::ZERO,
            },
            currency: rec.get("Currency").trim().to_string(),
        })
    }

    /// A continuation row leaves the order's fields empty; one that fills `Currency` with
    /// another currency than the first row's prices its line in it, so the order is refused
    /// like rows of two currencies anywhere.
    fn build(&self, key: &str, head: OrderHead, rows: Vec<ShopifyRow>) -> Result<Order, Problem> {
        if let Some(r) = rows.iter().find(|r| {
            !r.currency.is_empty() && !r.currency.eq_ignore_ascii_case(head.currency.as_str())
        }) {
            return Err(Problem::new(
                "Currency",
                "currency_mismatch",
                format!(
                    "rows of one order have different currencies ({} and {:?})",
                    head.currency, r.currency
                ),
            ));
        }
        let lines = rows.into_iter().map(|r| r.line).collect();
        Ok(head.into_order(&self.channel, key, lines))
    }
}

/// See the module documentation.
pub(crate) fn taxes_included(
    subtotal: Option<Decimal>,
    shipping: Option<Decimal>,
    duties: Option<Decimal>,
    taxes: Option<Decimal>,
    total: Option<Decimal>,
) -> bool {
    match (subtotal, taxes, total) {
        (Some(s), Some(t), Some(total)) if t > Decimal::ZERO => {
            s + shipping.unwrap_or_default() + duties.unwrap_or_default() == total
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "shopify_tests.rs"]
mod tests;
