//! The pieces adapters fill in before an [`Order`] is assembled: order-level fields (read from
//! an order's first row) and one line per item row.

use super::fields::{Problem, Timestamp};
use crate::model::{Address, CurrencyCode, Customer, Order, OrderLine, Provenance};
use rust_decimal::Decimal;

/// Order-level fields.
#[derive(Debug, Clone)]
pub(crate) struct OrderHead {
    pub created: Timestamp,
    pub currency: CurrencyCode,
    pub customer: Customer,
    pub billing: Option<Address>,
    pub shipping: Option<Address>,
    pub subtotal: Option<Decimal>,
    pub shipping_amount: Option<Decimal>,
    pub tax: Option<Decimal>,
    pub discount: Option<Decimal>,
    pub total: Option<Decimal>,
    pub taxes_included: bool,
    pub financial_status: Option<String>,
    pub notes: Option<String>,
}

/// One item row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LineDraft {
    pub sku: Option<String>,
    pub name: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub discount: Decimal,
    pub tax: Decimal,
}

impl OrderHead {
    pub fn into_order(self, channel: &str, external_id: &str, lines: Vec<LineDraft>) -> Order {
        let lines = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| OrderLine {
                line_number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                sku: l.sku,
                name: l.name,
                quantity: l.quantity,
                unit_price: l.unit_price,
                discount: l.discount,
                tax: l.tax,
            })
            .collect();
        Order {
            channel: channel.to_string(),
            external_id: external_id.to_string(),
            created_at: self.created.utc,
            created_at_original: self.created.original,
            currency: self.currency,
            customer: self.customer,
            billing: self.billing,
            shipping: self.shipping,
            lines,
            subtotal: self.subtotal,
            shipping_amount: self.shipping_amount,
            tax: self.tax,
            discount: self.discount,
            total: self.total,
            taxes_included: self.taxes_included,
            financial_status: self.financial_status,
            notes: self.notes,
            source: Provenance::default(),
        }
    }
}

/// The SKU and display name of a line: the name falls back to the SKU; both empty is a
/// `missing_value` problem.
pub(crate) fn sku_and_name(
    sku_column: &str,
    sku: &str,
    name_column: &str,
    name: &str,
) -> Result<(Option<String>, String), Problem> {
    let sku = super::fields::text(sku);
    match (super::fields::text(name), sku) {
        (Some(n), sku) => Ok((sku, n)),
        (None, Some(s)) => Ok((Some(s.clone()), s)),
        (None, None) => Err(Problem::new(
            name_column,
            "missing_value",
            format!("both {sku_column:?} and {name_column:?} are empty; a line needs one of them"),
        )),
    }
}

/// `None` when every field is empty.
pub(crate) fn non_empty(address: Address) -> Option<Address> {
    (address != Address::default()).then_some(address)
}

/// Join first and last name cells into one display name.
pub(crate) fn full_name(first: &str, last: &str) -> Option<String> {
    super::fields::text(&format!("{} {}", first.trim(), last.trim()))
}
