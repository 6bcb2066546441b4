//! WooCommerce REST API v3 orders as JSON (`/wp-json/wc/v3/orders`): an array of orders, or
//! one order object.
//!
//! The array is read element by element (a small scanner finds where each order ends; serde
//! parses that one order), so memory holds one order, not the file. Each order object is one
//! record. Any problem in an order (including in one of its line items) rejects that record,
//! with `column` set to the JSON path (`line_items[1].quantity`).
//!
//! Dates: `date_created_gmt` (UTC without offset) when present, else `date_created` in the
//! channel's time zone. Money is a string (`"29.35"`); numbers are accepted too and read from
//! their decimal text, never through a float. The unit price is `subtotal / quantity` (the line
//! price before discounts, exact), the line discount `subtotal − total`, the line tax
//! `total_tax`. `prices_include_tax` sets `taxes_included`.

use super::draft::{full_name, non_empty, LineDraft, OrderHead};
use super::fields::{self, Problem};
use super::{Item, OrderReader, RejectedRow};
use crate::model::{Address, Customer, Order};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};

/// Largest single order object accepted.
const MAX_ORDER_BYTES: usize = 16 * 1024 * 1024;
/// Rejected records keep at most this much raw text.
const MAX_RAW: usize = 64 * 1024;

#[derive(PartialEq)]
enum State {
    Start,
    InArray,
    Done,
}

pub(crate) struct WooJsonReader {
    input: BufReader<Box<dyn Read + Send>>,
    state: State,
    rows_read: u64,
    channel: String,
    zone: Option<chrono_tz::Tz>,
    path: String,
}

impl WooJsonReader {
    pub fn new(
        input: Box<dyn Read + Send>,
        channel: String,
        zone: Option<chrono_tz::Tz>,
        path: String,
    ) -> Self {
        WooJsonReader {
            input: BufReader::with_capacity(64 * 1024, input),
            state: State::Start,
            rows_read: 0,
            channel,
            zone,
            path,
        }
    }

    fn peek(&mut self) -> Option<u8> {
        loop {
            let buf = self.input.fill_buf().ok()?;
            let first = *buf.first()?;
            if first.is_ascii_whitespace() {
                self.input.consume(1);
            } else {
                return Some(first);
            }
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = *self.input.fill_buf().ok()?.first()?;
        self.input.consume(1);
        Some(b)
    }

    /// Read one JSON value's bytes. `Err` holds what was read before the value broke off.
    fn read_value(&mut self) -> Result<Vec<u8>, Vec<u8>> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let Some(&b) = self.input.fill_buf().ok().and_then(|buf| buf.first()) else {
                return if depth == 0 && !in_string && !out.is_empty() {
                    Ok(out)
                } else {
                    Err(out)
                };
            };
            if !in_string && depth == 0 && !out.is_empty() && matches!(b, b',' | b']' | b'}') {
                return Ok(out);
            }
            if !in_string && depth == 0 && !out.is_empty() && b.is_ascii_whitespace() {
                return Ok(out);
            }
            self.input.consume(1);
            out.push(b);
            if out.len() > MAX_ORDER_BYTES {
                return Err(out);
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                    if depth == 0 {
                        return Ok(out);
                    }
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(out);
                    }
                }
                _ => {}
            }
        }
    }

    fn record(&mut self, bytes: Result<Vec<u8>, Vec<u8>>) -> Item {
        self.rows_read += 1;
        let number = self.rows_read;
        let (bytes, truncated) = match bytes {
            Ok(b) => (b, false),
            Err(b) => (b, true),
        };
        let raw = raw_text(&bytes);
        let reject = |p: Problem| {
            Item::Rejected(RejectedRow {
                row_number: number,
                column: p.column,
                reason_code: p.reason.to_string(),
                message: p.message,
                raw: raw.clone(),
            })
        };
        if truncated {
            self.state = State::Done;
            return reject(Problem::new(
                "",
                "bad_json",
                "the JSON ends inside this order (truncated file?) or the order is larger than 16 MB",
            ));
        }
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return reject(Problem::new("", "bad_json", format!("invalid JSON: {e}"))),
        };
        let Value::Object(obj) = value else {
            return reject(Problem::new(
                "",
                "bad_json",
                "expected an order object ({...}) in the array",
            ));
        };
        match order_from_json(&obj, &self.channel, self.zone) {
            Ok(mut order) => {
                order.source.rows = vec![number];
                order.source.path = Some(self.path.clone());
                Item::Order(Box::new(order))
            }
            Err(p) => {
                let key = s(obj.get("number")).or_else(|| s(obj.get("id")));
                let p = match key {
                    Some(k) => Problem {
                        message: format!("order {k}: {}", p.message),
                        ..p
                    },
                    None => p,
                };
                reject(p)
            }
        }
    }
}

fn raw_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= MAX_RAW {
        return text.into_owned();
    }
    let mut cut = MAX_RAW;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…(truncated)", &text[..cut])
}

impl OrderReader for WooJsonReader {
    fn next_item(&mut self) -> Option<Item> {
        loop {
            match self.state {
                State::Done => return None,
                State::Start => match self.peek()? {
                    b'[' => {
                        self.next_byte();
                        self.state = State::InArray;
                    }
                    _ => {
                        self.state = State::Done;
                        let v = self.read_value();
                        return Some(self.record(v));
                    }
                },
                State::InArray => match self.peek() {
                    None => {
                        // Array never closed: everything read so far was yielded; stop.
                        self.state = State::Done;
                        return None;
                    }
                    Some(b']') => {
                        self.state = State::Done;
                        return None;
                    }
                    Some(b',') => {
                        self.next_byte();
                    }
                    Some(_) => {
                        let v = self.read_value();
                        return Some(self.record(v));
                    }
                },
            }
        }
    }

    fn rows_read(&self) -> u64 {
        self.rows_read
    }
}

/// A JSON scalar as text: strings as is, numbers by their decimal text, else `None`.
fn s(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(t) => fields::text(t),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text_at(obj: &Map<String, Value>, key: &str) -> String {
    s(obj.get(key)).unwrap_or_default()
}

fn address(obj: &Map<String, Value>, key: &str) -> Option<Address> {
    let a = obj.get(key)?.as_object()?;
    let t = |k: &str| fields::text(&text_at(a, k));
    non_empty(Address {
        name: full_name(&text_at(a, "first_name"), &text_at(a, "last_name")),
        company: t("company"),
        line1: t("address_1"),
        line2: t("address_2"),
        city: t("city"),
        province: t("state"),
        postal_code: t("postcode"),
        country: t("country"),
        phone: t("phone"),
    })
}

fn money_at(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Decimal>, Problem> {
    fields::money_opt(path, &text_at(obj, key), false)
}

fn line(item: &Value, i: usize) -> Result<(LineDraft, Decimal), Problem> {
    let path = |k: &str| format!("line_items[{i}].{k}");
    let Some(item) = item.as_object() else {
        return Err(Problem::new(
            &format!("line_items[{i}]"),
            "bad_json",
            "expected a line item object",
        ));
    };
    let quantity = fields::quantity(&path("quantity"), &text_at(item, "quantity"))?;
    let subtotal = fields::unit_price(&path("subtotal"), &text_at(item, "subtotal"), false)?;
    let unit_price = fields::unit_from_extended(&path("subtotal"), subtotal, quantity)?;
    let total = money_at(item, "total", &path("total"))?.unwrap_or(subtotal);
    let tax = money_at(item, "total_tax", &path("total_tax"))?.unwrap_or_default();
    let (sku, name) = super::draft::sku_and_name(
        &path("sku"),
        &text_at(item, "sku"),
        &path("name"),
        &text_at(item, "name"),
    )?;
    Ok((
        LineDraft {
            sku,
            name,
            quantity,
            unit_price,
            discount: subtotal - total,
            tax,
        },
        total,
    ))
}

/// Convert one REST v3 order object.
pub(crate) fn order_from_json(
    obj: &Map<String, Value>,
    channel: &str,
    zone: Option<chrono_tz::Tz>,
) -> Result<Order, Problem> {
    let key = s(obj.get("number"))
        .or_else(|| s(obj.get("id")))
        .ok_or_else(|| Problem::missing("number"))?;
    let created = match s(obj.get("date_created_gmt")) {
        Some(gmt) => fields::timestamp("date_created_gmt", &gmt, None)?,
        None => fields::timestamp("date_created", &text_at(obj, "date_created"), zone)?,
    };
    let currency = fields::currency("currency", &text_at(obj, "currency"))?;
    let items = match obj.get("line_items") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(Problem::new(
                "line_items",
                "missing_value",
                "the order has no line_items",
            ))
        }
    };
    let mut lines = Vec::with_capacity(items.len());
    let mut items_total = Decimal::ZERO;
    for (i, item) in items.iter().enumerate() {
        let (l, total) = line(item, i)?;
        items_total += total;
        lines.push(l);
    }
    let billing = address(obj, "billing");
    let billing_obj = obj.get("billing").and_then(Value::as_object);
    let tax = money_at(obj, "total_tax", "total_tax")?;
    let head = OrderHead {
        created,
        currency,
        customer: Customer {
            email: billing_obj.and_then(|b| s(b.get("email"))),
            name: billing.as_ref().and_then(|a| a.name.clone()),
            phone: billing.as_ref().and_then(|a| a.phone.clone()),
        },
        billing,
        shipping: address(obj, "shipping"),
        subtotal: Some(items_total),
        shipping_amount: money_at(obj, "shipping_total", "shipping_total")?,
        tax,
        discount: money_at(obj, "discount_total", "discount_total")?,
        total: money_at(obj, "total", "total")?,
        taxes_included: obj
            .get("prices_include_tax")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        financial_status: s(obj.get("status")),
        notes: s(obj.get("customer_note")),
    };
    Ok(head.into_order(channel, &key, lines))
}

#[cfg(test)]
#[path = "woocommerce_json_tests.rs"]
mod tests;
