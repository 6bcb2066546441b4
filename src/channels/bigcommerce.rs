//! BigCommerce default "Export orders" CSV (channel-formats.md §6; no real file checked): one
//! row per order, the items packed into `Product Details`:
//!
//! ```text
//! Product ID: 77, Product Qty: 2, Product SKU: TER-L, Product Name: Orbit Terrarium,
//! Product Weight: 1.0000, Product Variation Details: Size: L, Product Unit Price: 54.50,
//! Product Total Price: 109.00|Product ID: 81, ...
//! ```
//!
//! Items are separated by `|`; inside an item each field starts with `Product <Key>:` at the
//! start or after `, ` (so names may contain commas, but not `, Product Qty:` and the like, nor
//! `|`). Unknown keys are kept in the value before them; a missing `Qty` or `Unit Price` rejects
//! the row (`bad_product_details`).
//!
//! Money comes in inc/ex-tax pairs. The product prices are taken as tax-inclusive when their
//! total equals `Subtotal (inc tax)` and differs from `Subtotal (ex tax)` (with a tax > 0);
//! then the inc-tax subtotal and shipping are staged and `taxes_included` is true; otherwise
//! the ex-tax ones. `Order Total (inc tax)` is the total. A line's discount is
//! `Unit Price × Qty − Total Price`. `Order Date` is read in the channel's time zone; ISO and
//! month-name dates are accepted, numeric day/month dates refused (the store's format is not
//! known).

use super::draft::{full_name, non_empty, LineDraft, OrderHead};
use super::fields::{self, text, text_unquoted, Problem};
use super::group::RowAdapter;
use super::records::Record;
use super::spreadsheet::{local_date, NumericDates};
use crate::model::{Address, Customer, Order};
use rust_decimal::Decimal;

pub(crate) const SIGNATURE: &[&str] = &["Order ID", "Customer ID", "Customer Name"];

pub(crate) const REQUIRED: &[&[&str]] = &[
    &["Order ID"],
    &["Order Date"],
    &["Product Details"],
    &["Order Total (inc tax)"],
];

const KEYS: &[&str] = &[
    "ID",
    "Qty",
    "SKU",
    "Name",
    "Weight",
    "Variation Details",
    "Unit Price",
    "Total Price",
];

/// One packed product, as `(key, value)` pairs in the order they appear.
fn split_product(item: &str) -> Vec<(&'static str, &str)> {
    let mut marks: Vec<(usize, usize, &'static str)> = Vec::new();
    let mut at = 0;
    while let Some(off) = item[at..].find("Product ") {
        let start = at + off;
        let boundary = start == 0 || item[..start].trim_end().ends_with(',');
        let rest = &item[start + "Product ".len()..];
        if boundary {
            if let Some(k) = KEYS.iter().find(|k| rest.starts_with(&format!("{k}:"))) {
                marks.push((start, start + "Product ".len() + k.len() + 1, k));
            }
        }
        at = start + 1;
    }
    marks
        .iter()
        .enumerate()
        .map(|(i, &(_, value_start, key))| {
            let end = marks.get(i + 1).map_or(item.len(), |m| m.0);
            let value = item[value_start..end].trim().trim_end_matches(',').trim();
            (key, value)
        })
        .collect()
}

pub(crate) fn parse_products(cell: &str) -> Result<Vec<LineDraft>, Problem> {
    let bad = |why: String| Problem::new("Product Details", "bad_product_details", why);
    let mut lines = Vec::new();
    for (i, item) in cell
        .split('|')
        .enumerate()
        .filter(|(_, s)| !s.trim().is_empty())
    {
        let fields = split_product(item);
        let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let n = i + 1;
        let (Some(qty), Some(unit)) = (get("Qty"), get("Unit Price")) else {
            return Err(bad(format!(
                "product {n} {:?} has no \"Product Qty:\" or \"Product Unit Price:\"",
                item.trim()
            )));
        };
        let quantity = fields::quantity(&format!("Product Details: product {n} Qty"), qty)?;
        let unit_price = fields::unit_price(
            &format!("Product Details: product {n} Unit Price"),
            unit,
            false,
        )?;
        let extended = unit_price * quantity;
        let total = match get("Total Price") {
            Some(t) => fields::money(
                &format!("Product Details: product {n} Total Price"),
                t,
                false,
            )?,
            None => extended,
        };
        if total > extended || total.is_sign_negative() {
            return Err(bad(format!(
                "product {n}: Total Price {total} is not between 0 and Unit Price × Qty {extended}"
            )));
        }
        let (sku, name) = super::draft::sku_and_name(
            "Product SKU",
            get("SKU").unwrap_or(""),
            "Product Name",
            &match (
                get("Name").unwrap_or(""),
                get("Variation Details").unwrap_or(""),
            ) {
                (n, v) if !n.is_empty() && !v.is_empty() => format!("{n} ({v})"),
                (n, _) => n.to_string(),
            },
        )?;
        lines.push(LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount: extended - total,
            tax: Decimal::ZERO,
        });
    }
    if lines.is_empty() {
        return Err(Problem::missing("Product Details"));
    }
    Ok(lines)
}

pub(crate) struct BigCommerce {
    pub channel: String,
    pub zone: Option<chrono_tz::Tz>,
    pub default_currency: Option<String>,
}

fn address(rec: &Record, kind: &str) -> Option<Address> {
    let g = |c: &str| rec.get_named(&format!("{kind} {c}")).to_string();
    non_empty(Address {
        name: full_name(&g("First Name"), &g("Last Name")),
        company: text(&g("Company")),
        line1: text_unquoted(&g("Street 1")),
        line2: text_unquoted(&g("Street 2")),
        city: text(&g("Suburb")).or_else(|| text(&g("City"))),
        province: text(&g("State")),
        postal_code: text_unquoted(&g("Zip")),
        country: text(&g("Country")),
        phone: text_unquoted(&g("Phone")),
    })
}

/// The order fields plus the ex-tax half of each inc/ex pair, decided in `build`.
pub(crate) struct BigHead {
    head: OrderHead,
    subtotal_ex: Option<Decimal>,
    shipping_ex: Option<Decimal>,
}

impl RowAdapter for BigCommerce {
    type Head = BigHead;
    type Row = Vec<LineDraft>;

    /// One row per order.
    fn repeats(&self) -> crate::model::Repeats {
        crate::model::Repeats::WholeOrder
    }

    fn key_column(&self) -> &str {
        "Order ID"
    }

    fn head(&self, rec: &Record) -> Result<BigHead, Problem> {
        let raw_date = rec.get("Order Date");
        let created = match chrono::DateTime::parse_from_rfc2822(raw_date) {
            Ok(t) => fields::Timestamp {
                utc: t.with_timezone(&chrono::Utc),
                original: raw_date.to_string(),
            },
            Err(_) => local_date("Order Date", raw_date, self.zone, NumericDates::Refused)?,
        };
        let currency = match (rec.get("Order Currency Code"), &self.default_currency) {
            (c, _) if !c.is_empty() => fields::currency("Order Currency Code", c)?,
            (_, Some(d)) => fields::currency("currency", d)?,
            _ => return Err(Problem::missing("Order Currency Code")),
        };
        let m = |c: &'static str| fields::money_opt(c, rec.get(c), false);
        let billing = address(rec, "Billing");
        let head = OrderHead {
            created,
            currency,
            customer: Customer {
                email: text(rec.get("Customer Email")).or_else(|| text(rec.get("Billing Email"))),
                name: text(rec.get("Customer Name"))
                    .or_else(|| billing.as_ref().and_then(|a| a.name.clone())),
                phone: text_unquoted(rec.get("Customer Phone")),
            },
            billing,
            shipping: address(rec, "Shipping"),
            subtotal: m("Subtotal (inc tax)")?,
            shipping_amount: m("Shipping Cost (inc tax)")?,
            tax: m("Tax Total")?,
            discount: None,
            total: m("Order Total (inc tax)")?,
            taxes_included: false,
            financial_status: text(rec.get("Order Status")),
            notes: text(rec.get("Customer Message")).or_else(|| text(rec.get("Order Notes"))),
        };
        Ok(BigHead {
            head,
            subtotal_ex: m("Subtotal (ex tax)")?,
            shipping_ex: m("Shipping Cost (ex tax)")?,
        })
    }

    fn row(&self, rec: &Record) -> Result<Vec<LineDraft>, Problem> {
        parse_products(rec.get("Product Details"))
    }

    fn build(&self, key: &str, b: BigHead, rows: Vec<Vec<LineDraft>>) -> Result<Order, Problem> {
        let mut h = b.head;
        let lines: Vec<LineDraft> = rows.into_iter().flatten().collect();
        let items: Decimal = lines
            .iter()
            .map(|l| l.unit_price * l.quantity - l.discount)
            .sum();
        let tax_positive = h.tax.is_some_and(|t| t > Decimal::ZERO);
        let inclusive = tax_positive && h.subtotal == Some(items) && b.subtotal_ex != Some(items);
        if !inclusive {
            h.subtotal = b.subtotal_ex.or(Some(items));
            h.shipping_amount = b.shipping_ex.or(h.shipping_amount);
        }
        h.taxes_included = inclusive;
        Ok(h.into_order(&self.channel, key, lines))
    }
}

#[cfg(test)]
#[path = "bigcommerce_tests.rs"]
mod tests;
