//! eBay Seller Hub "Orders report" CSV (channel-formats.md §4): the 54/68/69-column variants,
//! UK (`Post to …`, `Postage and packaging`) and US (`Ship To …`, `Shipping And Handling`)
//! wording, header names matched without regard to case.
//!
//! - Preamble (a BOM, an empty or comma-only line, the all-empty record after the header) is
//!   skipped by the decoder and the record reader. The footer records
//!   (`"<n>","record(s) downloaded"`, `"Seller ID : …"`) are not data: they are skipped and
//!   **not counted as rows**, like blank lines.
//! - Money cells carry the currency (`GB £64.95`, `US $27.95`, `€ 29.95`, `AU $…`, `C $…`);
//!   every amount of one order must be in one currency (`currency_mismatch`). A bare number or
//!   a bare `$` takes the channel's `currency`; without one the order is refused.
//! - `Sale date` `May-29-23` (no time, no zone) is read as midnight in the channel's time zone.
//!   Spreadsheet rewrites with a month name or year first are accepted; `5/29/2023` is refused
//!   (UK and US sellers' spreadsheets write day and month in different orders).
//! - Rows sharing `Order number` form one order. A row without `Item number` and `Item title`
//!   is the order's summary row (multi-item orders): it gives the order's postage, tax and total
//!   and no line. Without a summary row, the order amounts are the sums over its item rows.
//!   `Sold for` is the unit price; `Quantity` the quantity; `Custom label` the SKU.
//! - Tax = `Seller collected tax` + `eBay collected tax`. `taxes_included` is true when the tax
//!   is > 0 and items + postage = total exactly (UK VAT-inclusive prices).

use super::draft::{non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, text, text_unquoted, Problem, Timestamp};
use super::group::RowAdapter;
use super::records::{Columns, Record};
use super::spreadsheet::{local_date, money_with_currency, NumericDates};
use crate::model::{Address, CurrencyCode, Customer, Order};
use rust_decimal::Decimal;

/// Header signature: the first two cells, compared without case.
pub(crate) const SIGNATURE: &[&str] = &["Sales record number", "Order number"];

pub(crate) const REQUIRED: &[&[&str]] = &[
    &["Order number", "Sales record number"],
    &["Sale date"],
    &["Quantity"],
    &["Sold for"],
    &["Item title", "Custom label"],
];

/// Is a record one of the report's footer lines?
pub(crate) fn is_footer(fields: &csv::StringRecord) -> bool {
    let first = fields.get(0).unwrap_or("").trim();
    let second = fields.get(1).unwrap_or("").trim();
    second.eq_ignore_ascii_case("record(s) downloaded")
        || first.to_ascii_lowercase().starts_with("seller id")
}

/// The file's header name for each alternative, resolved once without regard to case.
struct Cols {
    names: Vec<(&'static str, String)>,
}

/// (canonical name, alternatives in the UK, US and older variants).
const ALTERNATIVES: &[(&str, &[&str])] = &[
    ("order", &["Order number", "Sales record number"]),
    ("username", &["Buyer username", "User id"]),
    ("buyer", &["Buyer name", "Buyer fullname"]),
    ("email", &["Buyer email"]),
    ("note", &["Buyer note"]),
    ("b1", &["Buyer address 1"]),
    ("b2", &["Buyer address 2"]),
    ("bcity", &["Buyer city"]),
    ("bstate", &["Buyer county", "Buyer state"]),
    ("bzip", &["Buyer postcode", "Buyer zip"]),
    ("bcountry", &["Buyer country"]),
    ("sname", &["Post to name", "Ship to name"]),
    ("sphone", &["Post to phone", "Ship to phone"]),
    ("s1", &["Post to address 1", "Ship to address 1"]),
    ("s2", &["Post to address 2", "Ship to address 2"]),
    ("scity", &["Post to city", "Ship to city"]),
    (
        "sstate",
        &["Post to county", "Ship to state", "Ship to county"],
    ),
    (
        "szip",
        &["Post to postcode", "Ship to zip", "Ship to postcode"],
    ),
    ("scountry", &["Post to country", "Ship to country"]),
    ("item", &["Item number"]),
    ("title", &["Item title"]),
    ("sku", &["Custom label"]),
    ("variation", &["Variation details"]),
    ("qty", &["Quantity"]),
    ("sold", &["Sold for"]),
    (
        "postage",
        &["Postage and packaging", "Shipping and handling"],
    ),
    ("seller_tax", &["Seller collected tax"]),
    ("ebay_tax", &["eBay collected tax"]),
    ("total", &["Total price"]),
    ("sale", &["Sale date"]),
    ("paid", &["Paid on date"]),
];

impl Cols {
    fn new(columns: &Columns) -> Self {
        let mut names = Vec::new();
        for (key, alts) in ALTERNATIVES {
            let found = alts.iter().find_map(|a| {
                columns
                    .names
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(a))
                    .cloned()
            });
            if let Some(f) = found {
                names.push((*key, f));
            }
        }
        Cols { names }
    }

    /// The header name for a canonical key (the first alternative when absent, for messages).
    fn name<'a>(&'a self, key: &'a str) -> &'a str {
        self.names
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, n)| n.as_str())
            .or_else(|| {
                ALTERNATIVES
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, a)| a[0])
            })
            .unwrap_or(key)
    }
}

/// Which required columns (without regard to case) the header lacks.
pub(crate) fn missing(cells: &[String]) -> Vec<String> {
    REQUIRED
        .iter()
        .filter(|alts| {
            !alts
                .iter()
                .any(|a| cells.iter().any(|c| c.eq_ignore_ascii_case(a)))
        })
        .map(|alts| {
            alts.iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        })
        .collect()
}

pub(crate) struct Ebay {
    channel: String,
    zone: Option<chrono_tz::Tz>,
    default_currency: Option<String>,
    cols: Cols,
}

impl Ebay {
    pub fn new(
        channel: String,
        zone: Option<chrono_tz::Tz>,
        default_currency: Option<String>,
        columns: &Columns,
    ) -> Self {
        Ebay {
            channel,
            zone,
            default_currency,
            cols: Cols::new(columns),
        }
    }

    fn get<'a>(&self, rec: &'a Record, key: &str) -> &'a str {
        rec.get_named(self.cols.name(key))
    }

    fn amount(&self, rec: &Record, key: &str) -> Result<Option<Amount>, Problem> {
        let col = self.cols.name(key);
        let v = rec.get_named(col);
        if v.is_empty() {
            return Ok(None);
        }
        let (currency, value) = money_with_currency(col, v)?;
        Ok(Some(Amount {
            column: col.to_string(),
            currency,
            value,
        }))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Amount {
    column: String,
    currency: Option<CurrencyCode>,
    value: Decimal,
}

pub(crate) struct EbayHead {
    created: Timestamp,
    customer: Customer,
    billing: Option<Address>,
    shipping: Option<Address>,
    paid: bool,
    notes: Option<String>,
}

/// What one row contributes: a line (item rows) and amounts.
pub(crate) struct EbayRow {
    line: Option<(LineDraft, Amount)>,
    postage: Option<Amount>,
    tax: Vec<Amount>,
    total: Option<Amount>,
}

impl RowAdapter for Ebay {
    type Head = EbayHead;
    type Row = EbayRow;

    fn key_column(&self) -> &str {
        self.cols.name("order")
    }

    fn head(&self, rec: &Record) -> Result<EbayHead, Problem> {
        let created = local_date(
            self.cols.name("sale"),
            self.get(rec, "sale"),
            self.zone,
            NumericDates::Refused,
        )?;
        let g = |k: &str| self.get(rec, k);
        let shipping = non_empty(Address {
            name: text(g("sname")),
            company: None,
            line1: text_unquoted(g("s1")),
            line2: text_unquoted(g("s2")),
            city: text(g("scity")),
            province: text(g("sstate")),
            postal_code: text_unquoted(g("szip")),
            country: text(g("scountry")),
            phone: text_unquoted(g("sphone")),
        });
        let billing = non_empty(Address {
            name: text(g("buyer")),
            company: None,
            line1: text_unquoted(g("b1")),
            line2: text_unquoted(g("b2")),
            city: text(g("bcity")),
            province: text(g("bstate")),
            postal_code: text_unquoted(g("bzip")),
            country: text(g("bcountry")),
            phone: None,
        });
        Ok(EbayHead {
            created,
            customer: Customer {
                email: text(g("email")),
                name: text(g("buyer")).or_else(|| text(g("username"))),
                phone: text_unquoted(g("sphone")),
            },
            billing,
            shipping,
            paid: !g("paid").is_empty(),
            notes: text(g("note")),
        })
    }

    fn row(&self, rec: &Record) -> Result<EbayRow, Problem> {
        let summary = self.get(rec, "item").is_empty()
            && self.get(rec, "title").is_empty()
            && self.get(rec, "sku").is_empty();
        let line = if summary {
            None
        } else {
            let qty_col = self.cols.name("qty");
            let quantity = fields::quantity(qty_col, rec.get_named(qty_col))?;
            let sold_col = self.cols.name("sold");
            let price = self.amount(rec, "sold")?.ok_or_else(|| {
                Problem::new(
                    sold_col,
                    "missing_value",
                    format!(
                        "{sold_col:?} is empty; a price is required (an unknown price is not zero)"
                    ),
                )
            })?;
            if price.value.is_sign_negative() && !price.value.is_zero() {
                return Err(Problem::new(
                    sold_col,
                    "bad_decimal",
                    format!(
                        "{sold_col:?} is {}; expected a price of zero or more",
                        price.value
                    ),
                ));
            }
            let title = self.get(rec, "title");
            let variation = self.get(rec, "variation");
            let name = match (title.is_empty(), variation.is_empty()) {
                (false, false) => format!("{title} ({variation})"),
                _ => title.to_string(),
            };
            let (sku, name) = sku_and_name(
                self.cols.name("sku"),
                fields::strip_apostrophe(self.get(rec, "sku")),
                self.cols.name("title"),
                &name,
            )?;
            Some((
                LineDraft {
                    sku,
                    name,
                    quantity,
                    unit_price: price.value,
                    discount: Decimal::ZERO,
                    tax: Decimal::ZERO,
                },
                price,
            ))
        };
        let tax = [
            self.amount(rec, "seller_tax")?,
            self.amount(rec, "ebay_tax")?,
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(EbayRow {
            line,
            postage: self.amount(rec, "postage")?,
            tax,
            total: self.amount(rec, "total")?,
        })
    }

    fn build(&self, key: &str, head: EbayHead, rows: Vec<EbayRow>) -> Result<Order, Problem> {
        let amounts = || {
            rows.iter().flat_map(|r| {
                r.line
                    .iter()
                    .map(|(_, a)| a)
                    .chain(r.postage.iter())
                    .chain(r.tax.iter())
                    .chain(r.total.iter())
            })
        };
        let currency = currency_of(amounts(), self.default_currency.as_deref())?;
        let has_summary = rows.len() > 1 && rows.iter().any(|r| r.line.is_none());
        let order_rows: Vec<&EbayRow> = rows
            .iter()
            .filter(|r| !has_summary || r.line.is_none())
            .collect();
        let sum =
            |f: &dyn Fn(&EbayRow) -> Decimal| order_rows.iter().map(|r| f(r)).sum::<Decimal>();
        let any = |f: &dyn Fn(&EbayRow) -> bool| order_rows.iter().any(|r| f(r));
        let shipping = any(&|r| r.postage.is_some())
            .then(|| sum(&|r| r.postage.as_ref().map_or(Decimal::ZERO, |a| a.value)));
        let tax =
            any(&|r| !r.tax.is_empty()).then(|| sum(&|r| r.tax.iter().map(|a| a.value).sum()));
        let total = any(&|r| r.total.is_some())
            .then(|| sum(&|r| r.total.as_ref().map_or(Decimal::ZERO, |a| a.value)));
        let lines: Vec<LineDraft> = rows
            .into_iter()
            .filter_map(|r| r.line.map(|(l, _)| l))
            .collect();
        if lines.is_empty() {
            return Err(Problem::new(
                self.cols.name("title"),
                "missing_value",
                "the order has no item rows (only a summary row)",
            ));
        }
        let items: Decimal = lines.iter().map(|l| l.unit_price * l.quantity).sum();
        let taxes_included = match (tax, total) {
            (Some(t), Some(total)) if t > Decimal::ZERO => {
                items + shipping.unwrap_or_default() == total
            }
            _ => false,
        };
        let order = OrderHead {
            created: head.created,
            currency,
            customer: head.customer,
            billing: head.billing,
            shipping: head.shipping,
            subtotal: Some(items),
            shipping_amount: shipping,
            tax,
            discount: None,
            total,
            taxes_included,
            financial_status: Some(if head.paid { "paid" } else { "unpaid" }.to_string()),
            notes: head.notes,
        };
        Ok(order.into_order(&self.channel, key, lines))
    }
}

/// The one currency of an order's amounts; the channel default when no cell names one.
fn currency_of<'a>(
    amounts: impl Iterator<Item = &'a Amount>,
    default: Option<&str>,
) -> Result<CurrencyCode, Problem> {
    let mut found: Option<(&CurrencyCode, &str)> = None;
    let mut bare: Option<&str> = None;
    for a in amounts {
        match (&a.currency, found) {
            (Some(c), None) => found = Some((c, &a.column)),
            (Some(c), Some((f, col))) if c != f => {
                return Err(Problem::new(
                    &a.column,
                    "currency_mismatch",
                    format!(
                        "amounts of one order are in different currencies ({f} in {col:?}, {c} \
                         in {:?})",
                        a.column
                    ),
                ))
            }
            (None, _) => bare = bare.or(Some(&a.column)),
            _ => {}
        }
    }
    if let Some((c, _)) = found {
        return Ok(c.clone());
    }
    match default {
        Some(d) => fields::currency("currency", d),
        None => Err(Problem::new(
            bare.unwrap_or("Total price"),
            "missing_value",
            "the amounts carry no currency (a bare number or \"$\") and the channel has no \
             `currency` configured",
        )),
    }
}

#[cfg(test)]
#[path = "ebay_tests.rs"]
mod tests;
