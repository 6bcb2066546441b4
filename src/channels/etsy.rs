//! Etsy Shop Manager downloads (channel-formats.md §5): "Sold Order Items"
//! (`EtsySoldOrderItems<period>.csv`, one row per transaction) and "Sold Orders"
//! (`EtsySoldOrders<period>.csv`, one row per order), joined on `Order ID`.
//!
//! - **Items file**: gives the lines (`Price` is the unit price). When the Sold Orders file of
//!   the same period is found next to it (or in the channel's archive folder), that file is
//!   indexed by `Order ID` (it is small: one row per order) and gives the totals, the status,
//!   the buyer and the address. The items must add up to its `Order Value`, else the order is
//!   refused (`join_mismatch`: a missing item row or files of different periods). Without the
//!   orders file the lines are still staged, with `Order Shipping`, `Order Sales Tax` and the
//!   discounts taken once per order (they repeat on every item row) and the total left unknown;
//!   the file's notes say so.
//! - **Orders file**: an order without lines cannot be sent, so its rows are staged only by
//!   joining the items file of the same period (indexed by `Order ID`; found the same way). The
//!   joined order is built by the same code as from the items side, so loading both files stages
//!   each order once (the second copy is unchanged). Without the items file every row is
//!   rejected as `lines_unavailable`.
//! - Dates (`Sale Date` `12/31/22`; `12/31/2022`, `1/2/2020` after a spreadsheet save) are
//!   month-first, read as midnight in the channel's time zone. Serial numbers are refused.
//! - `taxes_included` is true when the tax is > 0 and value − discounts + shipping = total.

use super::draft::{non_empty, sku_and_name, LineDraft, OrderHead};
use super::fields::{self, money_or_zero, text, text_unquoted, Problem, Timestamp};
use super::group::RowAdapter;
use super::records::{Record, RecordSource};
use super::spreadsheet::{local_date, NumericDates};
use crate::model::{Address, CurrencyCode, Customer, Order};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const ITEMS_SIGNATURE: &[&str] = &["Sale Date", "Item Name", "Buyer", "Quantity"];
pub(crate) const ORDERS_SIGNATURE: &[&str] = &["Sale Date", "Order ID"];

pub(crate) const REQUIRED_ITEMS: &[&[&str]] = &[
    &["Sale Date"],
    &["Order ID"],
    &["Item Name", "SKU"],
    &["Quantity"],
    &["Price"],
    &["Currency"],
];

pub(crate) const REQUIRED_ORDERS: &[&[&str]] = &[
    &["Sale Date"],
    &["Order ID"],
    &["Currency"],
    &["Order Value"],
    &["Order Total"],
];

const ITEMS_PREFIX: &str = "EtsySoldOrderItems";
const ORDERS_PREFIX: &str = "EtsySoldOrders";

/// The sibling file of the other kind for the same period, by name: `EtsySoldOrderItems2023-1.csv`
/// ↔ `EtsySoldOrders2023-1.csv`. `None` when the name does not follow the pattern.
pub(crate) fn sibling_name(path: &Path, items: bool) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (from, to) = if items {
        (ITEMS_PREFIX, ORDERS_PREFIX)
    } else {
        (ORDERS_PREFIX, ITEMS_PREFIX)
    };
    let period = name.strip_prefix(from)?;
    Some(format!("{to}{period}"))
}

/// Look for the sibling in the file's folder, then in the archive folder.
pub(crate) fn find_sibling(path: &Path, name: &str, archive: Option<&Path>) -> Option<PathBuf> {
    let here = path.parent().map(|d| d.join(name));
    let there = archive.map(|d| d.join(name));
    [here, there].into_iter().flatten().find(|p| p.is_file())
}

fn date(rec: &Record, zone: Option<chrono_tz::Tz>) -> Result<Timestamp, Problem> {
    local_date(
        "Sale Date",
        rec.get("Sale Date"),
        zone,
        NumericDates::MonthFirst,
    )
}

fn amount(rec: &Record, column: &'static str) -> Result<Decimal, Problem> {
    money_or_zero(column, rec.get(column), false)
}

/// One item row: the line and the currency the row states.
fn item_line(rec: &Record) -> Result<(LineDraft, String), Problem> {
    let quantity = fields::quantity("Quantity", rec.get("Quantity"))?;
    let unit_price = fields::unit_price("Price", rec.get("Price"), false)?;
    let name = match (rec.get("Item Name"), rec.get("Variations")) {
        (n, v) if !n.is_empty() && !v.is_empty() => format!("{n} ({v})"),
        (n, _) => n.to_string(),
    };
    let (sku, name) = sku_and_name(
        "SKU",
        fields::strip_apostrophe(rec.get("SKU")),
        "Item Name",
        &name,
    )?;
    Ok((
        LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount: Decimal::ZERO,
            tax: Decimal::ZERO,
        },
        rec.get("Currency").to_string(),
    ))
}

/// What a Sold Orders row says about its order.
#[derive(Debug, Clone)]
pub(crate) struct OrdersRow {
    created: Timestamp,
    currency: CurrencyCode,
    customer: Customer,
    shipping: Option<Address>,
    value: Decimal,
    discount: Decimal,
    shipping_amount: Decimal,
    tax: Decimal,
    total: Decimal,
    status: Option<String>,
}

fn orders_row(rec: &Record, zone: Option<chrono_tz::Tz>) -> Result<OrdersRow, Problem> {
    let created = date(rec, zone)?;
    let currency = fields::currency("Currency", rec.get("Currency"))?;
    let name = text(rec.get("Full Name"))
        .or_else(|| super::draft::full_name(rec.get("First Name"), rec.get("Last Name")));
    let shipping = non_empty(Address {
        name: name.clone(),
        company: None,
        line1: text_unquoted(rec.get("Street 1")),
        line2: text_unquoted(rec.get("Street 2")),
        city: text(rec.get("Ship City")),
        province: text(rec.get("Ship State")),
        postal_code: text_unquoted(rec.get("Ship Zipcode")),
        country: text(rec.get("Ship Country")),
        phone: None,
    });
    let required = |c: &'static str| -> Result<Decimal, Problem> {
        fields::money_opt(c, rec.get(c), false)?.ok_or_else(|| Problem::missing(c))
    };
    Ok(OrdersRow {
        created,
        currency,
        customer: Customer {
            email: None,
            name: name.or_else(|| text(rec.get("Buyer"))),
            phone: None,
        },
        shipping,
        value: required("Order Value")?,
        discount: amount(rec, "Discount Amount")? + amount(rec, "Shipping Discount")?,
        shipping_amount: amount(rec, "Shipping")?,
        tax: amount(rec, "Sales Tax")?,
        total: required("Order Total")?,
        status: text(rec.get("Status")),
    })
}

/// The joined order: lines from the items file, everything else from the orders file.
fn joined(
    channel: &str,
    key: &str,
    o: &OrdersRow,
    lines: Vec<(LineDraft, String)>,
) -> Result<Order, Problem> {
    if let Some((_, c)) = lines
        .iter()
        .find(|(_, c)| !c.eq_ignore_ascii_case(o.currency.as_str()))
    {
        return Err(Problem::new(
            "Currency",
            "currency_mismatch",
            format!(
                "the items file says {c:?} but the Sold Orders file says {}",
                o.currency
            ),
        ));
    }
    let items: Decimal = lines.iter().map(|(l, _)| l.unit_price * l.quantity).sum();
    if items != o.value {
        return Err(Problem::new(
            "Order Value",
            "join_mismatch",
            format!(
                "the item rows add up to {items} but the Sold Orders file says \"Order Value\" \
                 {}: an item row is missing, or the two files are from different periods",
                o.value
            ),
        ));
    }
    let taxes_included =
        o.tax > Decimal::ZERO && o.value - o.discount + o.shipping_amount == o.total;
    let head = OrderHead {
        created: o.created.clone(),
        currency: o.currency.clone(),
        customer: o.customer.clone(),
        billing: None,
        shipping: o.shipping.clone(),
        subtotal: Some(o.value),
        shipping_amount: Some(o.shipping_amount),
        tax: Some(o.tax),
        discount: Some(o.discount),
        total: Some(o.total),
        taxes_included,
        financial_status: o.status.clone(),
        notes: None,
    };
    Ok(head.into_order(channel, key, lines.into_iter().map(|(l, _)| l).collect()))
}

/// Sold Orders rows by `Order ID` (a row that cannot be read is kept as its problem).
pub(crate) type OrdersIndex = HashMap<String, Result<OrdersRow, Problem>>;

pub(crate) fn index_orders(mut source: RecordSource, zone: Option<chrono_tz::Tz>) -> OrdersIndex {
    let mut index = HashMap::new();
    while let Some(r) = source.next_record() {
        let rec = Record {
            fields: &r.fields,
            columns: &source.columns,
        };
        let key = rec.get("Order ID").to_string();
        if !key.is_empty() {
            index.entry(key).or_insert_with(|| orders_row(&rec, zone));
        }
    }
    index
}

/// Item rows by `Order ID`: the lines, or the numbers of the rows that could not be read.
#[derive(Default)]
pub(crate) struct ItemsEntry {
    lines: Vec<(LineDraft, String)>,
    bad_rows: Vec<u64>,
}

pub(crate) type ItemsIndex = HashMap<String, ItemsEntry>;

pub(crate) fn index_items(mut source: RecordSource) -> ItemsIndex {
    let mut index: ItemsIndex = HashMap::new();
    while let Some(r) = source.next_record() {
        let rec = Record {
            fields: &r.fields,
            columns: &source.columns,
        };
        let key = rec.get("Order ID").to_string();
        if key.is_empty() {
            continue;
        }
        let entry = index.entry(key).or_default();
        match (
            r.defect,
            super::group::extra_cells(&rec).and_then(|_| item_line(&rec)),
        ) {
            (None, Ok(line)) => entry.lines.push(line),
            _ => entry.bad_rows.push(r.number),
        }
    }
    index
}

/// Order-level values of an items file, read from each order's first item row.
pub(crate) struct ItemsHead {
    created: Timestamp,
    currency: CurrencyCode,
    customer: Customer,
    shipping: Option<Address>,
    shipping_amount: Decimal,
    tax: Decimal,
    discount: Decimal,
}

pub(crate) struct EtsyItems {
    pub channel: String,
    pub zone: Option<chrono_tz::Tz>,
    /// The Sold Orders file of the same period, when found.
    pub orders: Option<Arc<OrdersIndex>>,
}

impl RowAdapter for EtsyItems {
    type Head = ItemsHead;
    type Row = (LineDraft, String);

    fn key_column(&self) -> &str {
        "Order ID"
    }

    fn head(&self, rec: &Record) -> Result<ItemsHead, Problem> {
        let created = date(rec, self.zone)?;
        let currency = fields::currency("Currency", rec.get("Currency"))?;
        let shipping = non_empty(Address {
            name: text(rec.get("Ship Name")),
            company: None,
            line1: text_unquoted(rec.get("Ship Address1")),
            line2: text_unquoted(rec.get("Ship Address2")),
            city: text(rec.get("Ship City")),
            province: text(rec.get("Ship State")),
            postal_code: text_unquoted(rec.get("Ship Zipcode")),
            country: text(rec.get("Ship Country")),
            phone: None,
        });
        Ok(ItemsHead {
            created,
            currency,
            customer: Customer {
                email: None,
                name: text(rec.get("Ship Name")).or_else(|| text(rec.get("Buyer"))),
                phone: None,
            },
            shipping,
            shipping_amount: amount(rec, "Order Shipping")?,
            tax: amount(rec, "Order Sales Tax")?,
            discount: amount(rec, "Discount Amount")? + amount(rec, "Shipping Discount")?,
        })
    }

    fn row(&self, rec: &Record) -> Result<(LineDraft, String), Problem> {
        item_line(rec)
    }

    fn build(
        &self,
        key: &str,
        h: ItemsHead,
        rows: Vec<(LineDraft, String)>,
    ) -> Result<Order, Problem> {
        if let Some(index) = &self.orders {
            match index.get(key) {
                Some(Ok(o)) => return joined(&self.channel, key, o, rows),
                Some(Err(p)) => {
                    return Err(Problem {
                        message: format!(
                            "its row in the Sold Orders file is unusable: {}",
                            p.message
                        ),
                        ..p.clone()
                    })
                }
                None => {}
            }
        }
        if let Some((_, c)) = rows
            .iter()
            .find(|(_, c)| !c.eq_ignore_ascii_case(h.currency.as_str()))
        {
            return Err(Problem::new(
                "Currency",
                "currency_mismatch",
                format!("item rows of one order say {} and {c:?}", h.currency),
            ));
        }
        let items: Decimal = rows.iter().map(|(l, _)| l.unit_price * l.quantity).sum();
        let head = OrderHead {
            created: h.created,
            currency: h.currency,
            customer: h.customer,
            billing: None,
            shipping: h.shipping,
            subtotal: Some(items),
            shipping_amount: Some(h.shipping_amount),
            tax: Some(h.tax),
            discount: Some(h.discount),
            total: None,
            taxes_included: false,
            financial_status: None,
            notes: None,
        };
        Ok(head.into_order(
            &self.channel,
            key,
            rows.into_iter().map(|(l, _)| l).collect(),
        ))
    }
}

pub(crate) struct EtsyOrders {
    pub channel: String,
    pub zone: Option<chrono_tz::Tz>,
    /// The Sold Order Items file of the same period, when found, and its name.
    pub items: Option<(ItemsIndex, String)>,
}

impl RowAdapter for EtsyOrders {
    type Head = OrdersRow;
    type Row = ();

    /// One row per order (its items joined from the items file).
    fn repeats(&self) -> crate::model::Repeats {
        crate::model::Repeats::WholeOrder
    }

    fn key_column(&self) -> &str {
        "Order ID"
    }

    fn head(&self, rec: &Record) -> Result<OrdersRow, Problem> {
        orders_row(rec, self.zone)
    }

    fn row(&self, _rec: &Record) -> Result<(), Problem> {
        Ok(())
    }

    fn build(&self, key: &str, head: OrdersRow, _rows: Vec<()>) -> Result<Order, Problem> {
        let Some((index, name)) = &self.items else {
            return Err(Problem::new(
                "",
                "lines_unavailable",
                "a Sold Orders file has no order lines; put the Sold Order Items file of the same \
                 period (EtsySoldOrderItems<period>.csv) in the same folder and load both",
            ));
        };
        match index.get(key) {
            None => Err(Problem::new(
                "Order ID",
                "lines_unavailable",
                format!("no item rows for this order in {name}"),
            )),
            Some(e) if !e.bad_rows.is_empty() => Err(Problem::new(
                "",
                "order_incomplete",
                format!(
                    "row(s) {} of {name} for this order cannot be read; fix them and load both \
                     files again",
                    e.bad_rows
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Some(e) => joined(&self.channel, key, &head, e.lines.clone()),
        }
    }
}

#[cfg(test)]
#[path = "etsy_tests.rs"]
mod tests;
