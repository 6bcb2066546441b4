//! The canonical order every channel adapter produces and every later stage consumes.
//!
//! Money and quantities are `rust_decimal::Decimal`; identifiers, SKUs, postal codes and
//! phones are text; times are UTC with the original string kept beside them.

mod currency;
pub mod json;

pub use currency::{CurrencyCode, CurrencyError};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One e-commerce order, as staged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Configured channel name, e.g. `shopify-us`.
    pub channel: String,
    /// The platform's order key (Shopify `Name`, Amazon `amazon-order-id`, Woo `Order Number`).
    pub external_id: String,
    pub created_at: DateTime<Utc>,
    /// The date as the file wrote it (offset or zone included), for audit.
    pub created_at_original: String,
    pub currency: CurrencyCode,
    pub customer: Customer,
    pub billing: Option<Address>,
    pub shipping: Option<Address>,
    pub lines: Vec<OrderLine>,
    pub subtotal: Option<Decimal>,
    pub shipping_amount: Option<Decimal>,
    pub tax: Option<Decimal>,
    pub discount: Option<Decimal>,
    pub total: Option<Decimal>,
    /// True when the order's prices include tax (VAT shops).
    #[serde(default)]
    pub taxes_included: bool,
    pub financial_status: Option<String>,
    pub notes: Option<String>,
    /// Not in staging's stored form (`json::write_order_stored`): the columns hold it.
    #[serde(default)]
    pub source: Provenance,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub name: Option<String>,
    pub company: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub province: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// 1-based position of the line within the order.
    pub line_number: u32,
    pub sku: Option<String>,
    pub name: String,
    pub quantity: Decimal,
    /// Unit price before discounts.
    pub unit_price: Decimal,
    /// Discount on the whole line (not per unit).
    pub discount: Decimal,
    /// Tax on the whole line.
    pub tax: Decimal,
}

/// What an order key seen again in the same file means: how a later part of an order is
/// combined with what the file gave for it before (`staging::prepare::merge_into`). The
/// reader of each format says which (`channels::OrderReader::repeats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Repeats {
    /// More rows of the order, further down (row-per-item exports whose order-level fields
    /// are stated once, e.g. on the first row): its lines are added.
    #[default]
    MoreLines,
    /// More rows of an order whose order-level amounts are sums over its rows (Amazon): its
    /// lines are added and so are its subtotal, shipping, tax, discount and total.
    MoreLinesAndAmounts,
    /// The whole order again (one record per order: JSON exports, BigCommerce, Etsy's orders
    /// file), e.g. pages of an API export that overlap: it replaces the earlier copy (a
    /// no-op when the same), never adds to it.
    WholeOrder,
}

/// Where an order came from: the file and the 1-based data-record numbers in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub file_id: Option<i64>,
    pub path: Option<String>,
    pub rows: Vec<u64>,
}

impl Order {
    /// Total of the lines after line discounts, excluding order-level shipping.
    pub fn lines_total(&self) -> Decimal {
        self.lines
            .iter()
            .map(|l| l.unit_price * l.quantity - l.discount)
            .sum()
    }
}
