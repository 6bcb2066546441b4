//! WooCommerce export-plugin CSVs, one row per item with the order columns repeated:
//!
//! - **AlgolPlus** "Advanced Order Export For WooCommerce": `Order Number`, `… (Billing)` /
//!   `… (Shipping)` columns, `SKU`, `Name`/`Item Name`, `Quantity`, `Item Cost` (unit price).
//!   Also after a spreadsheet save in a comma-decimal locale: `;`-delimited, dates
//!   `2025/12/31 11:23`, and then `370,00` is read as 370.00.
//! - **SkyVerge** `default_one_row_per_item`: snake_case (`order_number`, `item_sku`,
//!   `item_subtotal` = the line's extended price before discounts, `item_total` after).
//!
//! Dates carry no offset: they are read in the channel's `time_zone` (UTC when unset).
//! Tax-inclusive rule (the CSVs have no flag): `taxes_included` is true when the tax is > 0 and
//! `items after discounts + shipping == total` exactly.

use super::draft::{full_name, non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, text, text_unquoted, Problem};
use super::group::RowAdapter;
use super::records::Record;
use crate::model::{Address, CurrencyCode, Customer, Order};
use rust_decimal::Decimal;

pub(crate) const REQUIRED_ALGOLPLUS: &[&[&str]] = &[
    &["Order Number"],
    &["Order Date"],
    QUANTITY,
    &["Item Cost"],
    &["Name", "Item Name", "Product Name", "SKU"],
];

pub(crate) const REQUIRED_SKYVERGE: &[&[&str]] = &[
    &["order_number"],
    &["date"],
    &["order_currency"],
    &["item_name", "item_sku"],
    &["item_quantity"],
    &["item_subtotal"],
];

const QUANTITY: &[&str] = &["Quantity", "Qty", "Quantity (- Refund)"];
const ITEM_NAME: &[&str] = &["Name", "Item Name", "Product Name"];
const CURRENCY: &[&str] = &["Currency", "Order Currency"];

/// Is there a currency column in an AlgolPlus header (else the channel's default is needed)?
pub(crate) fn algolplus_has_currency(columns: &super::records::Columns) -> bool {
    columns.first_of(CURRENCY).is_some()
}

pub(crate) struct AlgolPlus {
    pub channel: String,
    pub zone: Option<chrono_tz::Tz>,
    pub default_currency: Option<String>,
    pub decimal_comma: bool,
}

fn algol_address(rec: &Record, kind: &str) -> Option<Address> {
    let g = |names: &[&str]| {
        let cols: Vec<String> = names.iter().map(|n| format!("{n} ({kind})")).collect();
        let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
        rec.get_any(&refs).to_string()
    };
    non_empty(Address {
        name: full_name(&g(&["First Name"]), &g(&["Last Name"])),
        company: text(&g(&["Company"])),
        line1: text(&g(&["Address 1", "Address 1&2"])),
        line2: text(&g(&["Address 2"])),
        city: text(&g(&["City"])),
        province: text(&g(&["State", "State Code"])),
        postal_code: text_unquoted(&g(&["Zip", "Postcode"])),
        country: text(&g(&["Country Code", "Country"])),
        phone: text_unquoted(&g(&["Phone"])),
    })
}

/// See the module documentation.
fn taxes_included(
    items_after_discounts: Decimal,
    shipping: Option<Decimal>,
    tax: Option<Decimal>,
    total: Option<Decimal>,
) -> bool {
    match (tax, total) {
        (Some(t), Some(total)) if t > Decimal::ZERO => {
            items_after_discounts + shipping.unwrap_or_default() == total
        }
        _ => false,
    }
}

impl RowAdapter for AlgolPlus {
    type Head = OrderHead;
    type Row = LineDraft;

    fn key_column(&self) -> &str {
        "Order Number"
    }

    fn head(&self, rec: &Record) -> Result<OrderHead, Problem> {
        let created = fields::timestamp("Order Date", rec.get("Order Date"), self.zone)?;
        let currency = match rec.columns.first_of(CURRENCY) {
            Some(col) if !rec.get(col).is_empty() => fields::currency(col, rec.get(col))?,
            _ => default_currency(&self.default_currency)?,
        };
        let dc = self.decimal_comma;
        let m = |cols: &[&'static str]| match rec.columns.first_of(cols) {
            Some(c) => fields::money_opt(c, rec.get(c), dc),
            None => Ok(None),
        };
        let billing = algol_address(rec, "Billing");
        let shipping = algol_address(rec, "Shipping");
        Ok(OrderHead {
            created,
            currency,
            customer: Customer {
                email: text(rec.get("Email (Billing)")),
                name: billing.as_ref().and_then(|a| a.name.clone()),
                phone: billing.as_ref().and_then(|a| a.phone.clone()),
            },
            billing,
            shipping,
            subtotal: m(&["Order Subtotal Amount"])?,
            shipping_amount: m(&["Order Shipping Amount"])?,
            tax: m(&["Order Total Tax Amount", "Order Tax Amount"])?,
            discount: m(&["Cart Discount Amount"])?,
            total: m(&["Order Total Amount"])?,
            taxes_included: false,
            financial_status: text(rec.get("Order Status")),
            notes: text(rec.get("Customer Note")),
        })
    }

    fn row(&self, rec: &Record) -> Result<LineDraft, Problem> {
        let qcol = rec.columns.first_of(QUANTITY).unwrap_or("Quantity");
        let quantity = fields::quantity_with(qcol, rec.get(qcol), self.decimal_comma)?;
        let unit_price = fields::unit_price("Item Cost", rec.get("Item Cost"), self.decimal_comma)?;
        let tax = fields::money_or_zero(
            "Order line tax",
            rec.get("Order line tax"),
            self.decimal_comma,
        )?;
        let name_col = rec.columns.first_of(ITEM_NAME).unwrap_or("Name");
        let (sku, name) = sku_and_name("SKU", rec.get("SKU"), name_col, rec.get(name_col))?;
        Ok(LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount: Decimal::ZERO,
            tax,
        })
    }

    fn build(
        &self,
        key: &str,
        mut head: OrderHead,
        rows: Vec<LineDraft>,
    ) -> Result<Order, Problem> {
        let items: Decimal = rows.iter().map(|l| l.unit_price * l.quantity).sum();
        let after_discounts = items - head.discount.unwrap_or_default();
        head.taxes_included =
            taxes_included(after_discounts, head.shipping_amount, head.tax, head.total);
        Ok(head.into_order(&self.channel, key, rows))
    }
}

fn default_currency(default: &Option<String>) -> Result<CurrencyCode, Problem> {
    match default {
        Some(c) => fields::currency("default_currency", c),
        None => Err(Problem::new(
            "Currency",
            "missing_value",
            "the file has no currency column and the channel has no default_currency",
        )),
    }
}

pub(crate) struct SkyVerge {
    pub channel: String,
    pub zone: Option<chrono_tz::Tz>,
}

fn sky_address(rec: &Record, prefix: &str) -> Option<Address> {
    let g = |c: &str| rec.get_named(&format!("{prefix}_{c}")).to_string();
    non_empty(Address {
        name: full_name(&g("first_name"), &g("last_name")),
        company: text_unquoted(&g("company")),
        line1: text_unquoted(&g("address_1")),
        line2: text_unquoted(&g("address_2")),
        city: text_unquoted(&g("city")),
        province: text_unquoted(&g("state")),
        postal_code: text_unquoted(&g("postcode")),
        country: text_unquoted(&g("country")),
        phone: text_unquoted(&g("phone")),
    })
}

/// Per-row values of a SkyVerge line.
pub(crate) struct SkyRow {
    line: LineDraft,
    total_after_discount: Decimal,
}

impl RowAdapter for SkyVerge {
    type Head = OrderHead;
    type Row = SkyRow;

    fn key_column(&self) -> &str {
        "order_number"
    }

    fn head(&self, rec: &Record) -> Result<OrderHead, Problem> {
        let created = fields::timestamp("date", rec.get("date"), self.zone)?;
        let currency = fields::currency("order_currency", rec.get("order_currency"))?;
        let m = |c: &'static str| fields::money_opt(c, rec.get(c), false);
        let tax = match (m("tax_total")?, m("shipping_tax_total")?) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
        };
        let billing = sky_address(rec, "billing");
        Ok(OrderHead {
            created,
            currency,
            customer: Customer {
                email: text_unquoted(rec.get("billing_email")),
                name: billing.as_ref().and_then(|a| a.name.clone()),
                phone: billing.as_ref().and_then(|a| a.phone.clone()),
            },
            billing,
            shipping: sky_address(rec, "shipping"),
            subtotal: None,
            shipping_amount: m("shipping_total")?,
            tax,
            discount: m("discount_total")?,
            total: m("order_total")?,
            taxes_included: false,
            financial_status: text(rec.get("status")),
            notes: text(rec.get("customer_note")),
        })
    }

    fn row(&self, rec: &Record) -> Result<SkyRow, Problem> {
        let quantity = fields::quantity("item_quantity", rec.get("item_quantity"))?;
        let extended = fields::unit_price("item_subtotal", rec.get("item_subtotal"), false)?;
        let unit_price = fields::unit_from_extended("item_subtotal", extended, quantity)?;
        let total = match fields::money_opt("item_total", rec.get("item_total"), false)? {
            Some(t) => t,
            None => extended,
        };
        let (sku, name) = sku_and_name(
            "item_sku",
            fields::strip_apostrophe(rec.get("item_sku")),
            "item_name",
            rec.get("item_name"),
        )?;
        Ok(SkyRow {
            line: LineDraft {
                sku,
                name,
                quantity,
                unit_price,
                discount: extended - total,
                tax: fields::money_or_zero("item_total_tax", rec.get("item_total_tax"), false)?,
            },
            total_after_discount: total,
        })
    }

    fn build(&self, key: &str, mut head: OrderHead, rows: Vec<SkyRow>) -> Result<Order, Problem> {
        let items: Decimal = rows.iter().map(|r| r.total_after_discount).sum();
        head.subtotal = Some(items);
        head.taxes_included = taxes_included(items, head.shipping_amount, head.tax, head.total);
        let lines = rows.into_iter().map(|r| r.line).collect();
        Ok(head.into_order(&self.channel, key, lines))
    }
}

#[cfg(test)]
#[path = "woocommerce_tests.rs"]
mod tests;
