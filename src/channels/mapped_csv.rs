//! Any CSV/TSV whose columns are mapped to canonical fields in the channel configuration
//! (`mapping`: canonical field name → header in the file). This is how a channel without its
//! own adapter is onboarded.
//!
//! One row per item, rows grouped by `external_id`. Order-level fields are read from each
//! order's first row (later rows of the order may leave them empty). Currency comes from the
//! mapped `currency` column, or the channel's `default_currency` when the column is not mapped
//! or the cell is empty. With a `;` delimiter, `12,50` is read as 12.50.

use super::draft::{non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, text, text_unquoted, Problem};
use super::group::RowAdapter;
use super::records::Record;
use super::ChannelSpec;
use crate::model::{Address, Customer, Order};
use std::collections::HashMap;

/// Every canonical field name a mapping may use.
pub const FIELDS: &[&str] = &[
    "external_id",
    "created_at",
    "currency",
    "email",
    "customer_name",
    "phone",
    "sku",
    "name",
    "quantity",
    "unit_price",
    "line_discount",
    "line_tax",
    "subtotal",
    "shipping",
    "tax",
    "discount",
    "total",
    "financial_status",
    "notes",
    "ship_name",
    "ship_company",
    "ship_line1",
    "ship_line2",
    "ship_city",
    "ship_province",
    "ship_postal_code",
    "ship_country",
    "ship_phone",
    "bill_name",
    "bill_company",
    "bill_line1",
    "bill_line2",
    "bill_city",
    "bill_province",
    "bill_postal_code",
    "bill_country",
    "bill_phone",
];

/// Fields a mapping must have (`sku` or `name` is checked separately).
const REQUIRED: &[&str] = &["external_id", "created_at", "quantity", "unit_price"];

/// Check a channel's mapping against the header: known field names, required fields mapped,
/// mapped columns present. The error names everything that is wrong.
pub(crate) fn check_mapping(spec: &ChannelSpec, cells: &[String]) -> Result<(), String> {
    let mut errors = Vec::new();
    let unknown: Vec<&String> = spec
        .mapping
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        errors.push(format!(
            "unknown field name(s) in mapping: {unknown:?} (known: {})",
            FIELDS.join(", ")
        ));
    }
    let unmapped: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|f| !spec.mapping.contains_key(*f))
        .collect();
    if !unmapped.is_empty() {
        errors.push(format!(
            "mapping lacks required field(s): {}",
            unmapped.join(", ")
        ));
    }
    if !spec.mapping.contains_key("sku") && !spec.mapping.contains_key("name") {
        errors.push("mapping needs \"sku\" or \"name\"".to_string());
    }
    if !spec.mapping.contains_key("currency") && spec.default_currency.is_none() {
        errors.push("mapping has no \"currency\" and the channel has no default_currency".into());
    }
    let absent: Vec<String> = spec
        .mapping
        .iter()
        .filter(|(_, header)| !cells.iter().any(|c| c == *header))
        .map(|(field, header)| format!("{header:?} (for {field})"))
        .collect();
    if !absent.is_empty() {
        errors.push(format!(
            "mapped column(s) missing from the file: {}",
            absent.join(", ")
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

pub(crate) struct Mapped {
    pub channel: String,
    pub zone: Option<chrono_tz::Tz>,
    pub default_currency: Option<String>,
    pub decimal_comma: bool,
    pub mapping: HashMap<String, String>,
    key_header: String,
}

impl Mapped {
    pub fn new(spec: &ChannelSpec, decimal_comma: bool) -> Self {
        let mapping: HashMap<String, String> = spec
            .mapping
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let key_header = mapping.get("external_id").cloned().unwrap_or_default();
        Mapped {
            channel: spec.name.clone(),
            zone: spec.time_zone,
            default_currency: spec.default_currency.clone(),
            decimal_comma,
            mapping,
            key_header,
        }
    }

    /// (header, cell) of a canonical field; empty header and cell when not mapped.
    fn cell<'r>(&'r self, rec: &'r Record, field: &str) -> (&'r str, &'r str) {
        match self.mapping.get(field) {
            Some(h) => (h.as_str(), rec.get_named(h)),
            None => ("", ""),
        }
    }

    fn money(&self, rec: &Record, field: &str) -> Result<Option<rust_decimal::Decimal>, Problem> {
        let (h, v) = self.cell(rec, field);
        fields::money_opt(h, v, self.decimal_comma)
    }

    fn address(&self, rec: &Record, p: &str) -> Option<Address> {
        let t = |f: &str| text(self.cell(rec, &format!("{p}_{f}")).1);
        let u = |f: &str| text_unquoted(self.cell(rec, &format!("{p}_{f}")).1);
        non_empty(Address {
            name: t("name"),
            company: t("company"),
            line1: t("line1"),
            line2: t("line2"),
            city: t("city"),
            province: t("province"),
            postal_code: u("postal_code"),
            country: t("country"),
            phone: u("phone"),
        })
    }
}

impl RowAdapter for Mapped {
    type Head = OrderHead;
    type Row = LineDraft;

    fn key_column(&self) -> &str {
        &self.key_header
    }

    fn head(&self, rec: &Record) -> Result<OrderHead, Problem> {
        let (h, v) = self.cell(rec, "created_at");
        let created = fields::timestamp(h, v, self.zone)?;
        let currency = match self.cell(rec, "currency") {
            (h, v) if !v.is_empty() => fields::currency(h, v)?,
            (h, _) => match &self.default_currency {
                Some(c) => fields::currency("default_currency", c)?,
                None => return Err(Problem::missing(h)),
            },
        };
        let shipping = self.address(rec, "ship");
        let billing = self.address(rec, "bill");
        let name = text(self.cell(rec, "customer_name").1)
            .or_else(|| billing.as_ref().and_then(|a| a.name.clone()))
            .or_else(|| shipping.as_ref().and_then(|a| a.name.clone()));
        Ok(OrderHead {
            created,
            currency,
            customer: Customer {
                email: text(self.cell(rec, "email").1),
                name,
                phone: text_unquoted(self.cell(rec, "phone").1),
            },
            billing,
            shipping,
            subtotal: self.money(rec, "subtotal")?,
            shipping_amount: self.money(rec, "shipping")?,
            tax: self.money(rec, "tax")?,
            discount: self.money(rec, "discount")?,
            total: self.money(rec, "total")?,
            taxes_included: false,
            financial_status: text(self.cell(rec, "financial_status").1),
            notes: text(self.cell(rec, "notes").1),
        })
    }

    fn row(&self, rec: &Record) -> Result<LineDraft, Problem> {
        let (qh, qv) = self.cell(rec, "quantity");
        let quantity = fields::quantity_with(qh, qv, self.decimal_comma)?;
        let (ph, pv) = self.cell(rec, "unit_price");
        let unit_price = fields::unit_price(ph, pv, self.decimal_comma)?;
        let (dh, dv) = self.cell(rec, "line_discount");
        let discount = fields::money_or_zero(dh, dv, self.decimal_comma)?;
        let (th, tv) = self.cell(rec, "line_tax");
        let tax = fields::money_or_zero(th, tv, self.decimal_comma)?;
        let (sh, sv) = self.cell(rec, "sku");
        let (nh, nv) = self.cell(rec, "name");
        let (sku, name) = sku_and_name(
            if sh.is_empty() { "sku" } else { sh },
            fields::strip_apostrophe(sv),
            if nh.is_empty() { "name" } else { nh },
            nv,
        )?;
        Ok(LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount,
            tax,
        })
    }

    fn build(&self, key: &str, head: OrderHead, rows: Vec<LineDraft>) -> Result<Order, Problem> {
        Ok(head.into_order(&self.channel, key, rows))
    }
}

#[cfg(test)]
#[path = "mapped_csv_tests.rs"]
pub(crate) mod tests;
